"""Metrics as CSV, one row per step/epoch/generation; resuming drops rows past the checkpoint."""
from __future__ import annotations

import csv
from pathlib import Path


class CsvLog:
    """Append-only CSV under ``<run>/metrics/``. ``resume_after`` keeps only rows whose ``key`` is at most
    that value, so a resumed run continues without a gap or a duplicate row."""

    def __init__(self, path: Path, fields: list[str], key: str, resume_after: float | None = None):
        self.path, self.fields, self.key = path, fields, key
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_after is not None and path.exists():
            with open(path, newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if float(r[key]) <= resume_after]
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fields)
            writer.writeheader()
            writer.writerows(kept)

    def write(self, **row) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.fields).writerow(row)


def read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in csv.DictReader(fh)]
