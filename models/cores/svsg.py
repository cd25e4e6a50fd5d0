"""Simple Variational Sparse Gating: one stochastic state s, no deterministic path (Jain et al., "Learning Robust
Dynamics through Variational Sparse Gating", NeurIPS 2022, arXiv:2210.11698, §4). The VSG cell proposes a
candidate; a prior (without z_t) and a posterior (with z_t) are Gaussians read from it; the same Bernoulli gate
writes the sample into the updated dimensions and copies the rest.

    i_t = ELU(W_i [s_{t-1}, a_t] + b_i)                    (the action enters here; z_t does not)
    r, c, u = split(W [i_t, s_{t-1}] + b)
    s̃_t = tanh(σ(r) ⊙ c),   p_t = σ(u − 1),   g_t ~ Bernoulli(p_t)     (straight-through)
    prior      N(μ̂_t, σ̂_t):  [μ̂, ŝ] = MLP_prior(s̃_t)
    posterior  N(μ_t, σ_t):  [μ, ŝ'] = MLP_post([s̃_t, z_t])          (MLP: dense H, ELU, dense 2H)
    σ = 2·sigmoid(ŝ / 2) + 0.1
    ζ_t ~ posterior, or the prior with ``dream=True`` (z_t was sampled by M itself, not observed)
    s_t = g_t ⊙ ζ_t + (1 − g_t) ⊙ s_{t-1}
    kl = mean_{b,t} Σ_d g_{t,d} · KL(N(μ_d, σ_d) ‖ N(μ̂_d, σ̂_d))      (masked: only updated dims pay)
    loss_kl = β · max(kl, free nats),   loss_sparsity as in VSG

As in the reference code (github.com/arnavkj1995/VSG), the mask is the straight-through gate: its value is exactly
0/1, and the KL of an updated dimension also pushes on that dimension's gate probability. No KL balancing (the paper
takes it from DreamerV2; this core keeps the plain masked KL). docs/cores.md gives the equations and their sources.
M's heads and C read the sampled state s_t. Gate and state are sampled in evaluation too, from
torch's global generator (see models/cores/vsg.py). Extras average over every step, padded ones included;
a dream has no posterior, so it reports no KL terms. State: (s (B, H),).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.cores.recurrent_core import RecurrentCore, State
from models.cores.vsg import (
    KAPPA,
    SPARSITY_FLOOR,
    SPARSITY_SCALE,
    SparseGatedCell,
    check_gate_options,
    gate_extras,
)

MIN_STD = 0.1


def gaussian_stats(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """raw (..., 2H) → mean, std (..., H) with std = 2·sigmoid(s/2) + 0.1, in float32."""
    mean, s = raw.float().chunk(2, dim=-1)
    return mean, 2 * torch.sigmoid(s / 2) + MIN_STD


def masked_gaussian_kl(post_mean: torch.Tensor, post_std: torch.Tensor, prior_mean: torch.Tensor,
                       prior_std: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Σ_d g_d · KL(N(post) ‖ N(prior)) over the last axis: (..., H) each → (...)."""
    kl = (torch.log(prior_std / post_std) + (post_std ** 2 + (post_mean - prior_mean) ** 2) / (2 * prior_std ** 2)
          - 0.5)
    return (gate * kl).sum(-1)


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ELU(), nn.Linear(hidden, outputs))


class SVSGCore(RecurrentCore):
    extras = ("loss_sparsity", "loss_kl", "kl", "update_fraction")

    def __init__(self, z_dim: int, action_dim: int, hidden: int, kappa: float = KAPPA,
                 sparsity_scale: float = SPARSITY_SCALE, sparsity_floor: float = SPARSITY_FLOOR, kl_scale: float = 1.0,
                 kl_free: float = 0.0):
        super().__init__()
        check_gate_options(kappa, sparsity_scale, sparsity_floor)
        if kl_scale < 0 or kl_free < 0:
            raise ValueError(f"KL scale and free nats must be non-negative, not {kl_scale} and {kl_free}")
        self.z_dim = z_dim
        self.embed = nn.Linear(hidden + action_dim, hidden)
        self.cell = SparseGatedCell(hidden, hidden)
        self.prior = mlp(hidden, hidden, 2 * hidden)
        self.posterior = mlp(hidden + z_dim, hidden, 2 * hidden)
        self.hidden = self.feature_size = self.state_size = hidden
        self.kappa, self.sparsity_scale, self.sparsity_floor = kappa, sparsity_scale, sparsity_floor
        self.kl_scale, self.kl_free = kl_scale, kl_free

    def initial_state(self, batch: int, device: torch.device) -> State:
        return (torch.zeros(batch, self.hidden, device=device),)

    def _update(self, x: torch.Tensor, s: torch.Tensor,
                dream: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x (B, Z + A), s (B, H) → s_t, gate logit, gate (B, H), masked KL (B) (None in a dream)."""
        z, a = x[:, : self.z_dim], x[:, self.z_dim:]
        candidate, logit, gate = self.cell(F.elu(self.embed(torch.cat([s, a], dim=-1))), s)
        prior_mean, prior_std = gaussian_stats(self.prior(candidate))
        if dream:
            mean, std, kl = prior_mean, prior_std, None
        else:
            mean, std = gaussian_stats(self.posterior(torch.cat([candidate, z], dim=-1)))
            kl = masked_gaussian_kl(mean, std, prior_mean, prior_std, gate)
        sample = mean + std * torch.randn_like(std)
        return gate * sample + (1 - gate) * s, logit, gate, kl

    def forward(self, x: torch.Tensor, state: State | None = None,
                dream: bool = False) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        (s,) = state if state is not None else self.initial_state(len(x), x.device)
        ss, logits, gates, kls = [], [], [], []
        for t in range(x.shape[1]):
            s, logit, gate, kl = self._update(x[:, t], s, dream)
            ss.append(s)
            logits.append(logit)
            gates.append(gate)
            kls.append(kl)
        extras = gate_extras(torch.stack(logits, 1), torch.stack(gates, 1), self.kappa, self.sparsity_scale,
                             self.sparsity_floor)
        if not dream:
            kl = torch.stack(kls, 1).mean()
            extras.update(loss_kl=self.kl_scale * kl.clamp(min=self.kl_free), kl=kl.detach())
        return torch.stack(ss, 1), (s,), extras

    def step(self, x: torch.Tensor, state: State, dream: bool = False) -> tuple[torch.Tensor, State]:
        s, _, _, _ = self._update(x, state[0], dream)
        return s, (s,)

    def controller_features(self, state: State) -> torch.Tensor:
        return state[0]
