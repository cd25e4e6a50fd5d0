"""Registry of M's recurrent cores (the ``--core`` flag)."""
from __future__ import annotations

import inspect

from models.cores.attention import AttentionCore
from models.cores.lstm import LSTMCore
from models.cores.recurrent_core import RecurrentCore, State
from models.cores.svsg import SVSGCore
from models.cores.vsg import VSGCore

CORES: dict[str, type[RecurrentCore]] = {"lstm": LSTMCore, "attention": AttentionCore, "vsg": VSGCore,
                                         "svsg": SVSGCore}


def core_options(name: str) -> dict:
    """The hyper-parameters of core ``name`` (its keyword arguments after z_dim, action_dim, hidden) and their
    defaults, read from its constructor so that the defaults live in one place."""
    params = list(inspect.signature(CORES[name]).parameters.values())[3:]
    return {p.name: p.default for p in params}


__all__ = ["CORES", "RecurrentCore", "State", "core_options"]
