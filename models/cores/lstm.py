"""Ha & Schmidhuber's core: one LSTM layer; C reads its hidden state h.

State: (h, c), each (1, B, H) as ``nn.LSTM`` keeps them.
"""
from __future__ import annotations

import torch
from torch import nn

from models.cores.recurrent_core import RecurrentCore, State


class LSTMCore(RecurrentCore):
    def __init__(self, z_dim: int, action_dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        self.feature_size = self.state_size = hidden

    def initial_state(self, batch: int, device: torch.device) -> State:
        zeros = torch.zeros(1, batch, self.lstm.hidden_size, device=device)
        return zeros, zeros.clone()

    def forward(self, x: torch.Tensor, state: State | None = None,
                dream: bool = False) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        out, (h, c) = self.lstm(x, state)
        return out, (h, c), {}

    def step(self, x: torch.Tensor, state: State, dream: bool = False) -> tuple[torch.Tensor, State]:
        out, (h, c) = self.lstm(x.unsqueeze(1), state)
        return out[:, 0], (h, c)

    def controller_features(self, state: State) -> torch.Tensor:
        return state[0][0]
