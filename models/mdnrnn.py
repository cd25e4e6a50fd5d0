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
from models.mixture_sampler import draw


@dataclass
class MDNRNNConfig:
    z_dim: int = 32
    action_dim: int = 3
    hidden: int = 256
    mixtures: int = 5
    core: str = "lstm"
    core_options: dict = field(default_factory=dict)  # the core's hyper-parameters (models.cores.core_options)
    reward_heads: int = 1  # E linear reward heads; with E > 1 their spread measures M's doubt about a reward


class MDNOutput(NamedTuple):
    """Per step: mixture over each latent dim (..., Z, K), reward (...), done logit (...); with several reward heads,
    each head's prediction (..., E), whose mean is ``reward``."""

    logit_pi: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor
    reward: torch.Tensor
    done_logit: torch.Tensor
    reward_heads: torch.Tensor | None = None

    def float(self) -> MDNOutput:
        """Every tensor in float32 (M may run in bf16)."""
        return MDNOutput(*(None if x is None else x.float() for x in self))

    def reward_spread(self) -> torch.Tensor:
        """The standard deviation of the reward heads' predictions (...): 0 with one head."""
        if self.reward_heads is None or self.reward_heads.shape[-1] < 2:
            return torch.zeros_like(self.reward)
        return self.reward_heads.std(dim=-1)


class MDNRNN(nn.Module):
    def __init__(self, config: MDNRNNConfig = MDNRNNConfig()):
        super().__init__()
        if config.core not in CORES:
            raise ValueError(f"unknown core {config.core!r}: choose one of {', '.join(sorted(CORES))}")
        self.config = config
        self.core = CORES[config.core](config.z_dim, config.action_dim, config.hidden, **config.core_options)
        z, k = config.z_dim, config.mixtures
        self.head = nn.Linear(self.core.feature_size, 3 * z * k + 2)
        # Reward heads 2 … E (the first is in ``head``), each initialised on its own draw: an ensemble whose
        # disagreement grows where M has seen little.
        self.more_rewards = nn.Linear(self.core.feature_size, config.reward_heads - 1) if config.reward_heads > 1 else None

    def _heads(self, features: torch.Tensor) -> MDNOutput:
        z, k = self.config.z_dim, self.config.mixtures
        out = self.head(features)
        mix = out[..., : 3 * z * k].unflatten(-1, (3, z, k))
        reward, heads = out[..., -2], None
        if self.more_rewards is not None:
            heads = torch.cat([reward.unsqueeze(-1), self.more_rewards(features)], dim=-1)
            reward = heads.mean(dim=-1)
        return MDNOutput(mix[..., 0, :, :], mix[..., 1, :, :], mix[..., 2, :, :], reward, out[..., -1], heads)

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

    def advance(self, z: torch.Tensor, a: torch.Tensor, state: State) -> State:
        """z (B, Z), a (B, A) → the next state alone: ``step`` without the heads, for a loop that reads M's state
        and not its predictions (C in the real env). The state is ``step``'s, bit for bit."""
        return self.core.step(torch.cat([z, a], dim=-1), state, False)[1]

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
    """Draw z_{t+1} (..., Z): mixture logits divided by τ, component noise scaled by √τ. Each dimension's component
    is picked by one uniform and its noise is one normal, both from ``generator`` (``mixture_sampler.draw``)."""
    return draw(out.logit_pi, out.mu, out.log_sigma, temperature, generator)


def mixture_mean(out: MDNOutput) -> torch.Tensor:
    """M's mean prediction of the next z, (..., Z): each dimension's mixture mean, Σ_k π_k μ_k."""
    return (torch.softmax(out.logit_pi, dim=-1) * out.mu).sum(-1)


def reward_loss(out: MDNOutput, reward: torch.Tensor, mask: torch.Tensor, over_weight: float = 1.0) -> torch.Tensor:
    """The reward heads' squared error, each error where a head predicts more than the real reward weighted by
    ``over_weight`` (> 1: a dream that over-promises costs more than one that under-promises). With E > 1 heads,
    each head learns on its own bootstrap half of the batch's sequences (drawn from torch's generator), so the
    heads disagree where the data is thin."""
    heads = out.reward.unsqueeze(-1) if out.reward_heads is None else out.reward_heads  # (B, T, E)
    err = heads - reward.unsqueeze(-1)
    sq = torch.where(err > 0, over_weight, 1.0) * err ** 2
    if heads.shape[-1] > 1:
        keep = (torch.rand(heads.shape[0], 1, heads.shape[-1], device=heads.device) < 0.5).to(sq.dtype)
        sq = sq * keep * 2.0
    return (sq.mean(dim=-1) * mask).sum() / mask.sum().clamp(min=1)


def loss(out: MDNOutput, z_next: torch.Tensor, reward: torch.Tensor, done: torch.Tensor,
         mask: torch.Tensor, done_weight: float = 1.0, reward_over_weight: float = 1.0) -> dict:
    """M's training loss terms. z_next (B, T, Z); reward, done, mask (B, T). ``reward_mse`` reports the mean
    prediction's plain squared error; what is optimised is ``reward_loss``'s (the same with one head and weight 1)."""
    n = mask.sum().clamp(min=1)
    nll = mixture_nll(out, z_next, mask)
    reward_mse = ((out.reward - reward) ** 2 * mask).sum() / n
    fitted = reward_mse if out.reward_heads is None and reward_over_weight == 1.0 else \
        reward_loss(out, reward, mask, reward_over_weight)
    pos_weight = torch.tensor(done_weight, device=done.device)
    bce = F.binary_cross_entropy_with_logits(out.done_logit, done.float(), pos_weight=pos_weight, reduction="none")
    done_bce = (bce * mask).sum() / n
    return {"loss": nll + fitted + done_bce, "nll": nll, "reward_mse": reward_mse, "done_bce": done_bce}
