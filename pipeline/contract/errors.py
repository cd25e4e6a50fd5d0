"""The errors a stage ends with, each one line on stderr; a leaf module (it imports nothing of the project).

Exit codes (``pipeline.contract.cli.run_main``): 2 for bad input or flags (the message says how to fix the
command), 1 for a run that failed on its own (diverged loss, non-finite fitness, workers that keep dying),
130 for an interrupt (Ctrl-C, or SIGTERM from a scheduler).
"""
from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: the message names the file or flag and says what to do. Exit code 2."""


class RunFailed(Exception):
    """The run failed on its own (a diverged loss, non-finite fitness, workers that keep dying); the last good
    state is kept and the message says so. Exit code 1."""


class WorkerError(RunFailed):
    """A worker process died, hung or failed too often; the message says how to resume."""
