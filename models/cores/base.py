"""The interface every recurrent core of M keeps, so heads, controller and dreams work with any core."""
from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, ...]


class RecurrentCore(nn.Module):
    """Reads x_t = [z_t, a_t] (B, I) and carries a state; emits features (B, F) for M's heads.

    Subclasses set ``feature_size`` (what the heads read) and ``state_size`` (what C reads), and
    implement ``initial_state``, ``forward`` (a whole sequence) and ``step`` (one step, for rollouts).
    """

    feature_size: int
    state_size: int

    def initial_state(self, batch: int, device: torch.device) -> State:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State, dict]:
        """x (B, T, I) → features (B, T, F), final state, extra losses/metrics (name → scalar tensor)."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x (B, I) → features (B, F), next state."""
        raise NotImplementedError

    def controller_features(self, state: State) -> torch.Tensor:
        """(B, state_size): the part of the state C reads next to z."""
        raise NotImplementedError
