"""f_inv, the inverse dynamics model: which action took z_t to z_{t+1}.

After Zhang et al., "Decoupling Dynamics and Reward for Transfer Learning" (arXiv:1804.10689): one hidden
layer of 64 ReLU units on [z_t, z_{t+1}], then, for a discrete action set, a softmax over the actions
(cross-entropy loss). For continuous actions the output is the action itself, trained by squared error
(a Gaussian of fixed variance).

Trained jointly with V and M (``03_train_mdnrnn.py --joint``), it pushes V to keep in z what the action
changed, the part of a frame a controller can act on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class InverseConfig:
    z_dim: int = 32
    action_dim: int = 3
    discrete: bool = False
    hidden: int = 64


class InverseModel(nn.Module):
    def __init__(self, config: InverseConfig = InverseConfig()):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(2 * config.z_dim, config.hidden), nn.ReLU(),
                                 nn.Linear(config.hidden, config.action_dim))

    def forward(self, z: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        """(..., Z), (..., Z) → (..., A): action logits (discrete) or the predicted action (continuous)."""
        return self.net(torch.cat([z, z_next], dim=-1))

    def loss(self, z: torch.Tensor, z_next: torch.Tensor, actions: torch.Tensor,
             mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Mean loss over the steps ``mask`` keeps (all by default), and the fit as numbers: ``accuracy``
        (discrete; the share of steps whose most likely action is the one taken) or ``r2`` (continuous;
        1 − squared error / the actions' variance, over all dimensions).

        ``actions``: (..., A) as M reads them (one-hot for discrete actions) or (...) action indices."""
        out = self(z, z_next)
        mask = torch.ones(out.shape[:-1], dtype=torch.bool, device=out.device) if mask is None else mask.bool()
        out = out[mask]
        if self.config.discrete:
            target = actions[mask]
            target = target.argmax(-1) if target.dim() == 2 else target.long()
            loss = F.cross_entropy(out, target)
            fit = {"accuracy": (out.argmax(-1) == target).float().mean().item()}
        else:
            target = actions[mask].float()
            loss = F.mse_loss(out, target)
            variance = target.var(dim=0, unbiased=False).sum().clamp_min(1e-8)
            fit = {"r2": 1.0 - ((out - target) ** 2).mean(0).sum().item() / variance.item()}
        return loss, fit

    def state(self) -> dict:
        return {"config": asdict(self.config), "state_dict": self.state_dict()}

    @classmethod
    def from_state(cls, state: dict) -> InverseModel:
        model = cls(InverseConfig(**state["config"]))
        model.load_state_dict(state["state_dict"])
        return model
