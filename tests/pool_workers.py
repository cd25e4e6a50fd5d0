"""A worker for the pool tests, importable by forked or spawned processes and Ray actors alike."""
from __future__ import annotations

import os
import time


class Flaky:
    """Dies on the first call of ``die``, hangs on the first call of ``hang``, raises in ``fail``; marker files
    in ``folder`` remember what already happened, across the fresh workers that replace it."""

    def __init__(self, folder: str):
        self.folder = folder

    def niceness(self) -> int:
        return os.nice(0)

    def _first(self, name: str) -> bool:
        marker = os.path.join(self.folder, name)
        if os.path.exists(marker):
            return False
        open(marker, "w").close()
        return True

    def die(self, x):
        if self._first("died"):
            os._exit(1)
        return x * 10

    def hang(self, x):
        if self._first("hung"):
            time.sleep(3600)
        return x * 10

    def ok(self, x):
        return x * 10

    def fail(self, x):
        raise ValueError(f"no good: {x}")


class Unbuildable:
    def __init__(self):
        raise RuntimeError("cannot start")
