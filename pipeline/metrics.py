"""Metrics as CSV, one row per step/epoch/generation; resuming drops rows past the checkpoint."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from data.atomic import DiskFull, no_space, write_bytes


class CsvLog:
    """Append-only CSV under ``<run>/metrics/``. ``resume_after`` keeps only rows whose ``key`` is at most
    that value, so a resumed run continues without a gap or a duplicate row. A row cut short (a write
    that ran out of space) ends what is kept."""

    def __init__(self, path: Path, fields: list[str], key: str, resume_after: float | None = None):
        self.path, self.fields, self.key = path, fields, key
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_after is not None and path.exists():
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    if None in row or None in row.values() or float(row[key]) > resume_after:
                        break
                    kept.append(row)
        text = io.StringIO()
        writer = csv.DictWriter(text, fields)
        writer.writeheader()
        writer.writerows(kept)
        # Rewritten atomically: a kill here must not lose the rows of earlier runs.
        write_bytes(path, text.getvalue().encode())

    def write(self, **row) -> None:
        try:
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, self.fields).writerow(row)
        except OSError as e:
            reason = no_space(e)
            if reason:
                raise DiskFull(self.path, reason) from e
            raise


def read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in csv.DictReader(fh)]
