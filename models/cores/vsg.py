"""Variational Sparse Gating (Jain et al., "Learning Robust Dynamics through Variational Sparse Gating", NeurIPS 2022,
arXiv:2210.11698; equations and sources in docs/cores.md): a GRU whose update gate is a Bernoulli sample, so each
step rewrites only some state dimensions and copies the others; a KL towards a prior κ keeps updates sparse.

    e_t = ELU(W_e [z_t, a_t] + b_e)                       (the paper's i_t from [z_{t-1}, a_{t-1}]: our step input)
    r, c, u = split(W [e_t, h_{t-1}] + b)                 (one dense layer, no LayerNorm)
    h̃_t = tanh(σ(r) ⊙ c),   p_t = σ(u − 1),   g_t ~ Bernoulli(p_t)
    h_t = g_t ⊙ h̃_t + (1 − g_t) ⊙ h_{t-1}
    loss_sparsity = α · max(mean_{b,t} Σ_d KL(Bernoulli(p) ‖ Bernoulli(κ)), floor)

The gate is sampled in training *and* evaluation (the reference code does the same): the model was trained
with binary samples, and thresholding p > 0.5 would freeze nearly every dimension once p settles near
κ = 0.4. Samples come from torch's global generator, so ``torch.manual_seed`` makes a run repeatable and
``forward`` equals stepping under the same seed (both draw in the same order).

The core sees no padding mask: its extras average over every step of the batch, padded steps included.
Heads and C read h_t. State: (h (B, H),).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.cores.recurrent_core import RecurrentCore, State

# Gate prior κ (the paper's 0.4), sparsity-loss scale α and floor (0.1 and 0.1, as in the paper's reference code,
# github.com/arnavkj1995/VSG); shared by vsg and svsg.
KAPPA, SPARSITY_SCALE, SPARSITY_FLOOR = 0.4, 0.1, 0.1


def straight_through_bernoulli(p: torch.Tensor) -> torch.Tensor:
    """A 0/1 sample of Bernoulli(p) whose gradient is that of p (straight-through: g + p − stopgrad(p)).
    The bracket is exactly 0 in value, so the sample stays exactly 0 or 1."""
    return torch.bernoulli(p.detach()) + (p - p.detach())


def gate_kl(logit: torch.Tensor, kappa: float) -> torch.Tensor:
    """KL(Bernoulli(σ(logit)) ‖ Bernoulli(κ)) per element, from the logit so that p near 0 or 1 stays finite."""
    p = torch.sigmoid(logit)
    return p * (F.logsigmoid(logit) - math.log(kappa)) + (1 - p) * (F.logsigmoid(-logit) - math.log1p(-kappa))


def sparsity_loss(logit: torch.Tensor, kappa: float, scale: float, floor: float) -> torch.Tensor:
    """α · max(KL summed over the state dims (last axis) and averaged over the rest, floor); logit (..., H).

    Below the floor the loss is constant (no gradient): gates already that close to the prior are left alone.
    """
    return scale * gate_kl(logit.float(), kappa).sum(-1).mean().clamp(min=floor)


def gate_extras(logits: torch.Tensor, gates: torch.Tensor, kappa: float, scale: float,
                floor: float) -> dict[str, torch.Tensor]:
    """The sparsity loss and the fraction of state dims updated per step; logits, gates (B, T, H)."""
    return {"loss_sparsity": sparsity_loss(logits, kappa, scale, floor), "update_fraction": gates.detach().mean()}


class SparseGatedCell(nn.Module):
    """The VSG cell up to the gate: x (B, I), h (B, H) → candidate h̃ (B, H), gate logit u − 1 and the
    straight-through gate sample g (both (B, H), float32)."""

    def __init__(self, input_size: int, size: int):
        super().__init__()
        self.layer = nn.Linear(input_size + size, 3 * size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        reset, cand, update = self.layer(torch.cat([x, h], dim=-1)).chunk(3, dim=-1)
        candidate = torch.tanh(torch.sigmoid(reset) * cand)
        # The −1 bias starts the gates mostly closed (p ≈ 0.27), as in the reference GRU; float32 for the KL.
        logit = update.float() - 1
        return candidate, logit, straight_through_bernoulli(torch.sigmoid(logit))


def check_gate_options(kappa: float, sparsity_scale: float, sparsity_floor: float) -> None:
    if not 0 < kappa < 1:
        raise ValueError(f"gate prior kappa must lie in (0, 1), not {kappa}")
    if sparsity_scale < 0 or sparsity_floor < 0:
        raise ValueError(f"sparsity scale and floor must be non-negative, not {sparsity_scale} and {sparsity_floor}")


class VSGCore(RecurrentCore):
    extras = ("loss_sparsity", "update_fraction")

    def __init__(self, z_dim: int, action_dim: int, hidden: int, kappa: float = KAPPA,
                 sparsity_scale: float = SPARSITY_SCALE, sparsity_floor: float = SPARSITY_FLOOR):
        super().__init__()
        check_gate_options(kappa, sparsity_scale, sparsity_floor)
        self.embed = nn.Linear(z_dim + action_dim, hidden)
        self.cell = SparseGatedCell(hidden, hidden)
        self.hidden = self.feature_size = self.state_size = hidden
        self.kappa, self.sparsity_scale, self.sparsity_floor = kappa, sparsity_scale, sparsity_floor

    def initial_state(self, batch: int, device: torch.device) -> State:
        return (torch.zeros(batch, self.hidden, device=device),)

    def _update(self, e: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """e (B, H) encoded input, h (B, H) → h_t, gate logit, gate."""
        candidate, logit, gate = self.cell(e, h)
        return gate * candidate + (1 - gate) * h, logit, gate

    def forward(self, x: torch.Tensor, state: State | None = None,
                dream: bool = False) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        (h,) = state if state is not None else self.initial_state(len(x), x.device)
        e = F.elu(self.embed(x))  # (B, T, H): the input side needs no recurrence, so it is encoded at once
        hs, logits, gates = [], [], []
        for t in range(x.shape[1]):
            h, logit, gate = self._update(e[:, t], h)
            hs.append(h)
            logits.append(logit)
            gates.append(gate)
        extras = gate_extras(torch.stack(logits, 1), torch.stack(gates, 1), self.kappa, self.sparsity_scale,
                             self.sparsity_floor)
        return torch.stack(hs, 1), (h,), extras

    def step(self, x: torch.Tensor, state: State, dream: bool = False) -> tuple[torch.Tensor, State]:
        h, _, _ = self._update(F.elu(self.embed(x)), state[0])
        return h, (h,)

    def controller_features(self, state: State) -> torch.Tensor:
        return state[0]
