"""Attentive core: an LSTM plus causal dot-product attention (Vaswani et al. 2017, arXiv:1706.03762)
over its own last K outputs, forming a context vector that joins the LSTM output before M's heads.

At step t, with o_t the LSTM output and W_t = (o_{t-K+1}, …, o_t) the window (the current step included):

    q_t = W_q o_t,   k_j = W_k o_j,   v_j = W_v o_j             (j in W_t, only steps already seen)
    α_tj = softmax_j(q_t · k_j / √H)                            (over the window's time axis, per batch row)
    c_t = Σ_j α_tj v_j,   features_t = [o_t, c_t]               (B, 2H)

A common attentive MDN-RNN implementation normalised its weights over the batch axis and never formed c_t; here
the softmax runs over time within each sequence (docs/cores.md). The window is part of the state, so stepping
(rollouts, dreams) gives the same features as a whole sequence, and no step ever sees a later one. C reads
[h_t, c_t], the features of the last step.

State: (h (B, H), c (B, H)) of the LSTM, window (B, K, H) of the last K LSTM outputs (oldest first) and
valid (B, K) bool, False for slots not filled yet.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.cores.recurrent_core import RecurrentCore, State


class AttentionCore(RecurrentCore):
    def __init__(self, z_dim: int, action_dim: int, hidden: int, window: int = 16):
        super().__init__()
        if window < 1:
            raise ValueError(f"attention window must be at least 1 step, not {window}")
        self.lstm = nn.LSTM(z_dim + action_dim, hidden, batch_first=True)
        self.query = nn.Linear(hidden, hidden, bias=False)
        self.key = nn.Linear(hidden, hidden, bias=False)
        self.value = nn.Linear(hidden, hidden, bias=False)
        self.window = window
        self.feature_size = self.state_size = 2 * hidden

    def initial_state(self, batch: int, device: torch.device) -> State:
        h = self.lstm.hidden_size
        zeros = torch.zeros(batch, h, device=device)
        return (zeros, zeros.clone(), torch.zeros(batch, self.window, h, device=device),
                torch.zeros(batch, self.window, dtype=torch.bool, device=device))

    def _attend(self, out: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Queries from ``out`` (B, T, H) over ``memory`` (B, S, H) where ``mask`` (B, T, S) → context (B, T, H)."""
        return F.scaled_dot_product_attention(self.query(out), self.key(memory), self.value(memory), attn_mask=mask)

    def forward(self, x: torch.Tensor, state: State | None = None,
                dream: bool = False) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        b, t, _ = x.shape
        k = self.window
        h, c, window, valid = state if state is not None else self.initial_state(b, x.device)
        out, (h, c) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
        # The carried window, then this sequence: query i sits at position k + i and sees (i, k + i].
        memory = torch.cat([window.to(out.dtype), out], dim=1)  # (B, K + T, H)
        seen = torch.cat([valid, valid.new_ones(b, t)], dim=1)  # (B, K + T)
        pos = torch.arange(k + t, device=x.device)
        at = pos[k:, None]
        band = (pos[None, :] <= at) & (pos[None, :] > at - k)  # (T, K + T)
        context = self._attend(out, memory, band & seen[:, None, :])
        return torch.cat([out, context], dim=-1), (h[0], c[0], memory[:, -k:], seen[:, -k:]), {}

    def step(self, x: torch.Tensor, state: State, dream: bool = False) -> tuple[torch.Tensor, State]:
        h, c, window, valid = state
        out, (h, c) = self.lstm(x.unsqueeze(1), (h.unsqueeze(0), c.unsqueeze(0)))  # out (B, 1, H)
        window = torch.cat([window[:, 1:].to(out.dtype), out], dim=1)
        valid = torch.cat([valid[:, 1:], valid.new_ones(len(valid), 1)], dim=1)
        context = self._attend(out, window, valid[:, None, :])
        return torch.cat([out, context], dim=-1)[:, 0], (h[0], c[0], window, valid)

    def controller_features(self, state: State) -> torch.Tensor:
        h, _, window, valid = state
        context = self._attend(h.unsqueeze(1), window, valid[:, None, :])[:, 0]
        # Before the first step nothing is in the window: attention over no step is undefined, read it as 0.
        return torch.cat([h, torch.where(valid.any(1, keepdim=True), context, 0.0)], dim=-1)
