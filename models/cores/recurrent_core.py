"""The interface every recurrent core of M keeps, so heads, controller and dreams work with any core."""
from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, ...]


class RecurrentCore(nn.Module):
    """Reads x_t = [z_t, a_t] (B, Z + A) and carries a state; emits features (B, F) for M's heads.

    Built as ``Core(z_dim, action_dim, hidden, **options)``; the options (the core's hyper-parameters)
    are keyword arguments with defaults, saved in M's checkpoint as ``core_options``.

    Subclasses set ``feature_size`` (what the heads read), ``state_size`` (what C reads) and ``extras``
    (the names ``forward`` reports when training: ``loss_<name>`` terms are added to M's loss, the rest
    are metrics), and implement ``initial_state``, ``forward`` (a whole sequence), ``step`` (one step,
    for rollouts and dreams) and ``controller_features``. A state is a tuple of tensors; each core
    documents its layout. ``dream=True`` says z_t was not observed but sampled from M itself; only a
    core with a prior/posterior split (svsg) acts on it.
    """

    feature_size: int
    state_size: int
    extras: tuple[str, ...] = ()

    def initial_state(self, batch: int, device: torch.device) -> State:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State | None = None,
                dream: bool = False) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """x (B, T, Z + A) → features (B, T, F), final state, extras (name → scalar tensor)."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State, dream: bool = False) -> tuple[torch.Tensor, State]:
        """x (B, Z + A) → features (B, F), next state."""
        raise NotImplementedError

    def controller_features(self, state: State) -> torch.Tensor:
        """(B, state_size): the part of the state C reads next to z."""
        raise NotImplementedError
