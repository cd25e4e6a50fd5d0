"""Registry of M's recurrent cores (the ``--core`` flag)."""
from __future__ import annotations

from models.cores.base import RecurrentCore, State
from models.cores.lstm import LSTMCore

CORES: dict[str, type[RecurrentCore]] = {"lstm": LSTMCore}

__all__ = ["CORES", "RecurrentCore", "State"]
