"""Atomic file writes, used by every file the stages write, and the one error for running out of space.

A file is written under ``<name>.tmp``, flushed to disk and renamed, so the file under its final name is
always complete: the old version or the new one, never half of either. A write that fails removes its
temporary file (a kill leaves it behind; the next write of the same file replaces it, and nothing reads it).
A folder written by another library (a Minari dataset, a package) is built the same way: under a staging name
beside it, then renamed (``staged_folder``).
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
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


NAME_MAX = 255  # bytes in one path component, on every file system the stages write to


def _beside(path: Path, suffix: str) -> Path:
    """A hidden-from-readers name next to ``path`` ending in ``suffix``: ``<name><suffix>`` when that fits in a
    path component, else a digest of the name (a name near the limit must still have a temporary twin)."""
    path = Path(path)
    if len((path.name + suffix).encode()) <= NAME_MAX:
        return path.with_name(path.name + suffix)
    return path.with_name(hashlib.sha256(path.name.encode()).hexdigest()[:32] + suffix)


def temporary(path: Path) -> Path:
    return _beside(path, ".tmp")


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


def copy_file(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` atomically: ``path`` is never a partial copy, even when the disk fills up."""
    with atomic(Path(path)) as tmp:
        shutil.copyfile(source, tmp)


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` to disk (before the folder is renamed into place)."""
    for file in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink()):
        with open(file, "rb") as fh:
            os.fsync(fh.fileno())


def staging(path: Path) -> Path:
    """Where ``staged_folder`` builds ``path``."""
    return _beside(Path(path), ".partial")


@contextmanager
def staged_folder(path: Path) -> Iterator[Path]:
    """Yields an empty staging folder beside ``path`` (a killed earlier attempt's is removed first); when the block
    ends without error every file in it is fsynced and the folder renamed to ``path``, which must not exist. On
    any error the staging folder is removed; running out of space raises ``DiskFull`` naming ``path``."""
    path = Path(path)
    tmp = staging(path)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        fsync_tree(tmp)
        os.rename(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = no_space(e)
        if reason:
            raise DiskFull(path, reason) from e
        raise
