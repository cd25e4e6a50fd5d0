"""V: Ha & Schmidhuber's convolutional VAE, 64×64×3 frame ↔ z ("World Models", 2018, arXiv:1803.10122).

Architecture, loss and parameter count against the paper: docs/reference.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class VAEConfig:
    z_dim: int = 32
    kl_tolerance: float = 0.5  # free bits per latent dimension: KL below z_dim·tolerance is not penalised


class ConvVAE(nn.Module):
    def __init__(self, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.config = config
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),
            nn.Flatten(),  # 2×2×256
        )
        self.mu = nn.Linear(1024, config.z_dim)
        self.logvar = nn.Linear(1024, config.z_dim)
        self.decoder_in = nn.Linear(config.z_dim, 1024)  # no activation, as in the original
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),
        )

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, 64, 64) in [0, 1] → mu, logvar (B, Z)."""
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, Z) → frames (B, 3, 64, 64) in [0, 1]."""
        return self.decoder(self.decoder_in(z).view(-1, 1024, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = sample_z(mu, logvar, torch.randn_like(mu))
        return self.decode(z), mu, logvar

    def loss(self, x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> dict:
        """Summed squared error per image + max(KL, tolerance·Z), both averaged over the batch."""
        rec = (recon.float() - x.float()).pow(2).sum(dim=(1, 2, 3)).mean()
        mu, logvar = mu.float(), logvar.float()  # in full precision under bf16 autocast too
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
        kl_floored = torch.clamp(kl, min=self.config.kl_tolerance * self.z_dim)
        return {"loss": rec + kl_floored, "recon": rec, "kl": kl}

    def state(self) -> dict:
        return {"config": asdict(self.config), "model": self.state_dict()}

    @classmethod
    def from_state(cls, state: dict) -> ConvVAE:
        vae = cls(VAEConfig(**state["config"]))
        vae.load_state_dict(state["model"])
        return vae


def to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames (B, 64, 64, 3) → float (B, 3, 64, 64) in [0, 1], on the frames' device."""
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """float (B, 3, 64, 64) in [0, 1] → uint8 (B, 64, 64, 3) on the CPU."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def sample_z(mu, logvar, eps):
    """z = mu + eps · exp(logvar / 2): V's sample of z ~ N(mu, exp(logvar)) for the standard-normal noise ``eps``
    (torch tensors or numpy arrays alike, so that each caller keeps its own noise source)."""
    std = torch.exp(0.5 * logvar) if isinstance(logvar, torch.Tensor) else np.exp(0.5 * logvar)
    return mu + eps * std


__all__ = ["ConvVAE", "VAEConfig", "sample_z", "to_frames", "to_input"]
