"""Atomic file writes, used by every file the stages write, and the one error for running out of space.

A file is written under ``<name>.tmp``, flushed to disk and renamed, so the file under its final name is
always complete: the old version or the new one, never half of either. A write that fails removes its
temporary file (a kill leaves it behind; the next write of the same file replaces it, and nothing reads it).
"""
from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_NO_SPACE = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit reached"}
# h5py names the system error only in its message.
_NO_SPACE_TEXT = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                  "File too large": errno.EFBIG}


class DiskFull(Exception):
    """Writing ``path`` ran out of space; what was already written is intact."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(str(path), reason)  # plain args, so it crosses a process boundary
        self.path, self.reason = Path(path), reason

    def __str__(self) -> str:
        return (f"{self.reason} while writing {self.path}: free space and re-run the same command; "
                "nothing already written was damaged")


def no_space(error: BaseException) -> str | None:
    """Why ``error`` means "out of space" ("disk full", …), or None if it does not."""
    if not isinstance(error, OSError):
        return None
    if error.errno in _NO_SPACE:
        return _NO_SPACE[error.errno]
    return next((_NO_SPACE[code] for text, code in _NO_SPACE_TEXT.items() if text in str(error)), None)


def temporary(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yields the temporary path to write; when the block ends without error the file is fsynced and
    renamed to ``path``. On any error the temporary file is removed; running out of space raises
    ``DiskFull`` naming ``path``."""
    tmp = temporary(path)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        reason = no_space(e)
        if reason:
            raise DiskFull(path, reason) from e
        raise


def write_bytes(path: Path, data: bytes) -> None:
    with atomic(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
