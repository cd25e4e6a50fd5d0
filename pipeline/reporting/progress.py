"""Progress bars that suit where the output goes.

On a terminal: tqdm's live bar. Anywhere else (``nohup``, Slurm, CI, a pipe): plain lines, no carriage returns,
at most one line every ``LOG_EVERY`` seconds per bar, plus the bar's last state when it closes, so a log file
reads as a log. ``TQDM_DISABLE=1`` still turns bars off altogether.
"""
from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

LOG_EVERY = 30.0  # seconds between two progress lines in a log file


class LineWriter:
    """A file wrapper that turns tqdm's redraws (``\\r`` + text) into whole lines, dropping repeats and blanks."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.last = None

    def write(self, text: str) -> None:
        for part in text.replace("\n", "\r").split("\r"):
            part = part.strip()
            if part and part != self.last:
                self.stream.write(part + "\n")
                self.last = part

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal behind it
        return False


def bar(iterable=None, *, file: TextIO | None = None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on a terminal; a line-per-``LOG_EVERY``-seconds bar elsewhere."""
    stream = file if file is not None else sys.stderr
    if not is_terminal(stream):
        stream = LineWriter(stream)
        kwargs = {"mininterval": LOG_EVERY, "maxinterval": LOG_EVERY, "ncols": 80, **kwargs}
    return tqdm(iterable, file=stream, **kwargs)


def write(line: str) -> None:
    """A summary line (an epoch's, a generation's) that does not break a live bar."""
    tqdm.write(line, file=sys.stdout)
