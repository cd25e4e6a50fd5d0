"""M: the MDN-RNN, p(z_{t+1}, r_t, done_t | z_t, a_t, h_t) with a pluggable recurrent core.

The mixture has ``mixtures`` Gaussian components *per latent dimension* (Ha's model; the popular PyTorch
port shared one set of weights across dimensions).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.cores import CORES, State
from models.mixture_sampler import components


@dataclass
class MDNRNNConfig:
    z_dim: int = 32
    action_dim: int = 3
    hidden: int = 256
    mixtures: int = 5
    core: str = "lstm"
    core_options: dict = field(default_factory=dict)  # the core's hyper-parameters (models.cores.core_options)


class MDNOutput(NamedTuple):
    """Per step: mixture over each latent dim (..., Z, K), reward (...), done logit (...)."""

    logit_pi: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor
    reward: torch.Tensor
    done_logit: torch.Tensor


class MDNRNN(nn.Module):
    def __init__(self, config: MDNRNNConfig = MDNRNNConfig()):
        super().__init__()
        if config.core not in CORES:
            raise ValueError(f"unknown core {config.core!r}: choose one of {', '.join(sorted(CORES))}")
        self.config = config
        self.core = CORES[config.core](config.z_dim, config.action_dim, config.hidden, **config.core_options)
        z, k = config.z_dim, config.mixtures
        self.head = nn.Linear(self.core.feature_size, 3 * z * k + 2)

    def _heads(self, features: torch.Tensor) -> MDNOutput:
        z, k = self.config.z_dim, self.config.mixtures
        out = self.head(features)
        mix = out[..., : 3 * z * k].unflatten(-1, (3, z, k))
        return MDNOutput(mix[..., 0, :, :], mix[..., 1, :, :], mix[..., 2, :, :], out[..., -2], out[..., -1])

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        return self.core.initial_state(batch, torch.device(device))

    def forward(self, z: torch.Tensor, a: torch.Tensor, state: State | None = None,
                dream: bool = False) -> tuple[MDNOutput, State, dict[str, torch.Tensor]]:
        """z (B, T, Z), a (B, T, A) → predictions for step t+1 at each t, final state, core extras
        (``loss_*`` terms to add to the loss, and metrics). ``dream``: z was sampled from M, not observed."""
        features, state, extras = self.core(torch.cat([z, a], dim=-1), state, dream)
        return self._heads(features), state, extras

    def step(self, z: torch.Tensor, a: torch.Tensor, state: State, dream: bool = False) -> tuple[MDNOutput, State]:
        """z (B, Z), a (B, A) → one step of predictions, next state. In a dream (z sampled from M's own
        prediction) pass ``dream=True``: svsg then runs on its prior."""
        features, state = self.core.step(torch.cat([z, a], dim=-1), state, dream)
        return self._heads(features), state

    def controller_features(self, state: State) -> torch.Tensor:
        return self.core.controller_features(state)

    @property
    def state_size(self) -> int:
        return self.core.state_size

    def state(self) -> dict:
        return {"config": asdict(self.config), "model": self.state_dict()}

    @classmethod
    def from_state(cls, state: dict) -> MDNRNN:
        m = cls(MDNRNNConfig(**state["config"]))
        m.load_state_dict(state["model"])
        return m


LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def mixture_nll(out: MDNOutput, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """−log p(target) under the per-dimension mixtures, averaged over batch × time × dim.

    target (..., Z); mask (...) marks real (1) versus padded (0) steps.
    """
    t = target.unsqueeze(-1)
    log_prob = -((t - out.mu) ** 2) / (2 * torch.exp(2 * out.log_sigma)) - out.log_sigma - LOG_SQRT_2PI
    nll = -torch.logsumexp(F.log_softmax(out.logit_pi, dim=-1) + log_prob, dim=-1)  # (..., Z)
    if mask is None:
        return nll.mean()
    return (nll * mask.unsqueeze(-1)).sum() / (mask.sum() * nll.shape[-1]).clamp(min=1)


def sample(out: MDNOutput, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw z_{t+1} (..., Z): mixture logits divided by τ, component noise scaled by √τ.

    Each dimension's component is the one ``torch.multinomial`` draws from the softmax of its logits (see
    ``components``), then its Gaussian noise comes from the same generator.
    """
    logits = out.logit_pi / temperature
    k = components(logits, generator).view(*logits.shape[:-1], 1)
    mu = out.mu.gather(-1, k).squeeze(-1)
    sigma = out.log_sigma.gather(-1, k).squeeze(-1).exp()
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + sigma * math.sqrt(temperature) * eps


def mixture_mean(out: MDNOutput) -> torch.Tensor:
    """M's mean prediction of the next z, (..., Z): each dimension's mixture mean, Σ_k π_k μ_k."""
    return (torch.softmax(out.logit_pi, dim=-1) * out.mu).sum(-1)


def loss(out: MDNOutput, z_next: torch.Tensor, reward: torch.Tensor, done: torch.Tensor,
         mask: torch.Tensor, done_weight: float = 1.0) -> dict:
    """M's training loss terms. z_next (B, T, Z); reward, done, mask (B, T)."""
    n = mask.sum().clamp(min=1)
    nll = mixture_nll(out, z_next, mask)
    reward_mse = ((out.reward - reward) ** 2 * mask).sum() / n
    pos_weight = torch.tensor(done_weight, device=done.device)
    bce = F.binary_cross_entropy_with_logits(out.done_logit, done.float(), pos_weight=pos_weight, reduction="none")
    done_bce = (bce * mask).sum() / n
    return {"loss": nll + reward_mse + done_bce, "nll": nll, "reward_mse": reward_mse, "done_bce": done_bce}
