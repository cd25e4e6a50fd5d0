"""One writer per folder: a stage holds an exclusive lock on the folder it writes for as long as it runs.

The lock is ``flock`` on ``<folder>/.lock``, a file holding the owner's PID and command. A second process that
asks for it while the owner lives is refused at once, with one line naming the folder and the owner, before it
has written anything. The kernel releases the lock when the owner's process ends, however it ends (SIGKILL, the
OOM killer), so a lock left by a killed run never blocks the next one; the file is removed when a stage ends
normally, so only a killed run leaves it behind (harmless: the next run takes it over).

Only the stage's own process holds the lock: the file is opened close-on-exec (the pool's fork server is a fresh
interpreter that never sees it, nor do the workers forked from it) and
a forked child (a DataLoader worker) closes its copy at once, so no worker outlives the stage holding it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import pwd
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.contract.errors import UsageError

NAME = ".lock"
_held: dict[str, list] = {}  # resolved folder → [fd, depth]: re-entrant within a process


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _forget_in_child() -> None:
    for fd, _ in _held.values():
        try:
            os.close(fd)  # the parent's lock stays: it goes with the last descriptor of the open file
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def check_writable(folder: Path, flag: str) -> None:
    """``folder`` is (or can be made as) a folder this process may write into; else one line naming ``flag``."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == folder else f"is inside {probe}, which is a file"
        raise UsageError(f"{flag} {folder} {where}, not a folder: pass a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == folder else f" (it would be made in {probe})"
        raise UsageError(f"{flag} {folder} cannot be written by user {_user()}{where}: pass a folder you can write to, "
                         "or change its permissions")


def _make(folder: Path, flag: str) -> list[Path]:
    """Make ``folder`` and any missing parents; returns the folders made, outermost first."""
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    made = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise UsageError(f"{flag} {folder}: {path} is a file, not a folder: pass a folder") from None
            continue  # made meanwhile by another process: not ours to remove
        except PermissionError:
            _remove(made)
            check_writable(folder, flag)
            raise
        except OSError:
            _remove(made)
            raise
        made.append(path)
    return made


def _remove(made: list[Path]) -> None:
    for path in reversed(made):
        try:
            path.rmdir()
        except OSError:
            return


def _owner(fd: int) -> str:
    text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    pid, _, command = text.partition(" ")
    if not pid.isdigit():
        return "another process"
    return f"process {pid} ({command})" if command else f"process {pid}"


def _acquire(folder: Path, flag: str) -> int:
    path = folder / NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:
            check_writable(folder, flag)
            raise UsageError(f"{path} cannot be opened by user {_user()}: delete it (a killed run's lock), or pass "
                             f"another {flag}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = _owner(fd) if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
            os.close(fd)
            if owner is None:
                raise
            raise UsageError(f"{folder} is in use by {owner}: two processes writing one folder would mix their "
                             f"files; wait for it to end (or stop it), or pass another {flag}") from None
        # The owner before may have removed the file between our open and our flock: then lock the new one.
        try:
            now = os.stat(path)
            same = (now.st_dev, now.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {_command()}\n".encode(), 0)
    return fd


def _command(limit: int = 300) -> str:
    """This process's command line, on one line (control characters escaped) and at most ``limit`` characters."""
    text = shlex.join(getattr(sys, "orig_argv", sys.argv))
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def writer(folder: Path) -> str | None:
    """Who is writing ``folder`` now (as ``_owner`` names it), if another process holds its lock; None when nobody
    does, or this process does. Takes no lock and writes nothing, so it works on a folder this process may only
    read."""
    folder = Path(folder)
    try:
        if str(folder.resolve()) in _held:
            return None
        fd = os.open(folder / NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file: no writer has run here, or the last one ended normally
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return _owner(fd)
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_idle(folder: Path, flag: str, use: str = "reading it now would see only the part written so far") -> None:
    """Refuse, in one line naming the writer, to read ``folder`` while another process writes it (holds its
    lock): a reader sees a folder whole, or not at all."""
    owner = writer(folder)
    if owner is not None:
        raise UsageError(f"{flag} {folder} is being written by {owner}; {use}: wait for it to end (or stop it), "
                         "then re-run")


@contextmanager
def hold(folder: Path, flag: str = "--run") -> Iterator[Path]:
    """Hold the folder ``flag`` names (made if missing) for the block: refused with one line naming the owner
    while another process holds it, or when it cannot be written. Folders it made that are still empty when the
    block ends are removed again, so a command refused later changes nothing."""
    folder = Path(folder)
    check_writable(folder, flag)
    made = _make(folder, flag)
    key = str(folder.resolve())
    if key in _held:
        _held[key][1] += 1
        try:
            yield folder
        finally:
            _held[key][1] -= 1
        return
    try:
        fd = _acquire(folder, flag)
    except BaseException:
        _remove(made)
        raise
    _held[key] = [fd, 1]
    try:
        yield folder
    finally:
        del _held[key]
        try:
            os.unlink(folder / NAME)  # while still holding it; a process that opened it meanwhile sees it gone
        except OSError:
            pass
        os.close(fd)
        _remove(made)
