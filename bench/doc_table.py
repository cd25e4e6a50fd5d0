"""The bench's figures as a markdown table and one line per speed target, written into a documentation page
between two marker comments.

A page holds one pair of lines ``<!-- bench:begin -->`` and ``<!-- bench:end -->``; ``write_between_markers``
replaces what lies between them and leaves every other byte of the page as it was, so the published table
is always the one the bench last printed. Nothing here imports the project or torch: the unit test stays fast.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
HEADER = ("figure", "rate", "ratio")


class MarkerError(ValueError):
    """A page without exactly one well-ordered pair of bench markers; the message names the page."""


def _cell(value: object) -> str:
    """One table cell: pipes escaped and line breaks flattened, so a value can never break the table."""
    return " ".join(str(value).split()).replace("|", "\\|")


def render_table(rows: Sequence[Sequence[object]], header: Sequence[str] = HEADER) -> str:
    """A markdown table (no trailing newline): the header, the separator, then one line per row."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {tuple(row)!r} has {len(row)} cells, the header {len(header)}")
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Target(NamedTuple):
    """A speed target: ``name`` (a ratio, "A / B"), the least ``target`` it should reach, the ``ratio`` measured
    (None when it could not be measured) and a ``note`` (why not, or what stands in for it)."""

    name: str
    target: float
    ratio: float | None
    note: str = ""


def target_line(t: Target) -> str:
    """``- name: 1.23× (target ≥ 1.0×: met)``, ``… (target ≥ 100×: not met)``, or ``- name: not measured, note
    (target ≥ 1.0×)``; a note of a measured ratio follows it after a semicolon."""
    goal = f"target ≥ {t.target:g}×"
    if t.ratio is None:
        return f"- {t.name}: not measured, {t.note} ({goal})"
    digits = 0 if t.ratio >= 10 else 2
    # enough digits that the printed ratio reads as the verdict does (0.698 is not met; "0.70" would look met)
    while digits < 4 and (round(t.ratio, digits) >= t.target) != (t.ratio >= t.target):
        digits += 1
    note = f"; {t.note}" if t.note else ""
    return f"- {t.name}: {t.ratio:.{digits}f}× ({goal}: {'met' if t.ratio >= t.target else 'not met'}){note}"


def render_targets(targets: Sequence[Target]) -> str:
    """The lines under the table: a heading, then one ``target_line`` per target (no trailing newline)."""
    return "\n".join(["Targets:", "", *(target_line(t) for t in targets)])


def replace_between_markers(page: str, block: str, name: str = "the page") -> str:
    """``page`` with everything between its marker lines replaced by ``block``; the markers stay."""
    begin, end = page.count(BEGIN), page.count(END)
    if begin != 1 or end != 1:
        raise MarkerError(f"{name} must hold exactly one {BEGIN} and one {END} line (found {begin} and {end}): "
                          "add them around the place the bench table belongs")
    start, stop = page.index(BEGIN) + len(BEGIN), page.index(END)
    if stop < start:
        raise MarkerError(f"{name}: {END} comes before {BEGIN}; put the begin marker first")
    return page[:start] + "\n" + block.strip("\n") + "\n" + page[stop:]


def write_between_markers(path: str | os.PathLike, block: str) -> None:
    """Replace the marked part of the page at ``path`` with ``block``. The page is written to a temporary file
    and renamed, so an interrupted write never leaves it half-written; a page without markers is left alone."""
    path = Path(path)
    new = replace_between_markers(path.read_text(encoding="utf-8"), block, str(path))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
