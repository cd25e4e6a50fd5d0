"""Metrics as CSV, one row per step/epoch/generation; resuming drops rows past the checkpoint."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from data.atomic import DiskFull, no_space, write_bytes
from pipeline.contract.errors import UsageError


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check(path: Path, fields: list[str] | None = None, key: str | None = None) -> tuple[list[str], list[list[str]]]:
    """The header and complete rows of the metrics file ``path`` (none if there is no file), checked: every row has
    one value per column, each a number or empty (``key``'s never empty), and (given ``fields``) no column the stage
    does not write. A last line without its line end is a row cut short (a write that ran out of space) and is left
    out; anything else malformed is one line naming the file, since a resumed run would keep building on it."""
    if not path.exists():
        return [], []
    with open(path, newline="") as fh:
        try:
            text = fh.read()
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not a text file: delete it (it holds only metrics) or restore it") from None
    text = text[: text.rfind("\n") + 1]  # without the row cut short, if any
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise UsageError(f"{path} is not a CSV file ({e}): delete it (it holds only metrics) or restore it") from None
    if not lines:
        return [], []
    header, rows = lines[0], lines[1:]

    def refuse(line: int, what: str):
        return UsageError(f"{path}, line {line}: {what}; this is not a metrics file the stage wrote: fix or delete "
                          "the line (or the file), then re-run")

    unknown = [c for c in header if fields is not None and c not in fields]
    if unknown or len(set(header)) != len(header) or not header:
        what = f"columns {', '.join(unknown)} are not this stage's" if unknown else "the header repeats or lacks columns"
        raise refuse(1, what)
    if key is not None and key not in header:
        raise refuse(1, f"there is no {key} column")
    for n, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise refuse(n, f"{len(row)} values for {len(header)} columns")
        for column, value in zip(header, row):
            if (value != "" or column == key) and not _number(value):
                raise refuse(n, f"{column} is {value!r}, not a number")
    return header, rows


class CsvLog:
    """Append-only CSV under ``<run>/metrics/``. ``resume_after`` keeps only rows whose ``key`` is at most
    that value, so a resumed run continues without a gap or a duplicate row. A row cut short (a write
    that ran out of space) ends what is kept; a malformed row is one line naming the file (``check``), and
    nothing is rewritten."""

    def __init__(self, path: Path, fields: list[str], key: str, resume_after: float | None = None, live=None):
        """``live``: a ``pipeline.reporting.live.Live`` that gets every row too."""
        self.path, self.fields, self.key, self.live = path, fields, key, live
        kept = []
        if resume_after is not None:
            header, rows = check(path, fields, key)
            for row in rows:
                entry = dict(zip(header, row))
                if not float(entry[key]) <= resume_after:  # NaN included
                    break
                kept.append(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
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
        if self.live is not None:
            self.live.scalars(row[self.key], row)


def read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()} for r in csv.DictReader(fh)]
