"""One optimisation step and one validation pass for V and for M, shared by the stages and bench/."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data import latents as latent_data
from models import mdnrnn as mdn
from models.vae import ConvVAE, to_input
from pipeline.compute.device import autocast
from pipeline.contract import checkpoint
from pipeline.contract.errors import RunFailed


class Averages:
    """Running sums of scalar tensors, read out (and reset) as plain floats."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: dict[str, torch.Tensor], n: int = 1) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0) + v.detach().float() * n
        self.count += n

    def pop(self) -> dict[str, float]:
        out = {k: float(v) / max(self.count, 1) for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return out


def check_finite(terms: dict[str, torch.Tensor], where: str) -> None:
    """Stop, before anything is saved, when the loss is NaN or infinite."""
    if not torch.isfinite(terms["loss"]):
        raise RunFailed(f"loss became {float(terms['loss'])} at {where}; the last good checkpoint is kept. "
                         "Lower --lr or check the data")


def check_weights(module: torch.nn.Module, where: str) -> None:
    """Refuse to checkpoint NaN or infinite weights (an update can blow them up while its loss was finite)."""
    if not torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all():
        raise RunFailed(f"weights became NaN or infinite by {where}; the last good checkpoint is kept. "
                         "Lower --lr or check the data")


def vae_step(vae: ConvVAE, opt: torch.optim.Optimizer, frames: torch.Tensor, device: torch.device) -> dict:
    """frames (B, 64, 64, 3) uint8 → one Adam step; returns the loss terms (detached tensors)."""
    x = to_input(frames.to(device, non_blocking=True))
    with autocast(device):
        recon, mu, logvar = vae(x)
    terms = vae.loss(x, recon, mu, logvar)
    opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    opt.step()
    return {k: v.detach() for k, v in terms.items()}


@torch.no_grad()
def vae_validate(vae: ConvVAE, batches: Iterable[torch.Tensor], device: torch.device) -> dict[str, float]:
    avg = Averages()
    vae.eval()
    for frames in batches:
        x = to_input(frames.to(device))
        with autocast(device):
            recon, mu, logvar = vae(x)
        avg.add(vae.loss(x, recon, mu, logvar), len(frames))
    vae.train()
    return avg.pop()


def mdn_terms(model: mdn.MDNRNN, b: dict, device: torch.device, done_weight: float,
              reward_over_weight: float = 1.0) -> dict:
    """Teacher-forced loss terms on a batch already on ``device``, and the core's extras. ``loss`` is what
    is optimised: M's NLL, reward and done terms plus the core's ``loss_*`` extras."""
    with autocast(device):
        out, _, extras = model(b["z"], b["actions"])
    terms = mdn.loss(out.float(), b["z_next"], b["rewards"], b["dones"], b["mask"], done_weight, reward_over_weight)
    terms["loss"] = terms["loss"] + sum(v for k, v in extras.items() if k.startswith("loss_"))
    return {**extras, **terms}


def mdn_step(model: mdn.MDNRNN, opt: torch.optim.Optimizer, batch: dict, device: torch.device,
             grad_clip: float, done_weight: float, reward_over_weight: float = 1.0) -> dict:
    """One teacher-forced step on a batch from ``data.latents.batch``; gradient norm clipped."""
    terms = mdn_terms(model, {k: v.to(device, non_blocking=True) for k, v in batch.items()}, device, done_weight,
                      reward_over_weight)
    opt.zero_grad(set_to_none=True)
    terms["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return {k: v.detach() for k, v in terms.items()}


@torch.no_grad()
def mdn_validate(model: mdn.MDNRNN, episodes: list[latent_data.LatentEpisode], seq_len: int, batch: int,
                 device: torch.device, done_weight: float, seed: int, reward_over_weight: float = 1.0) -> dict[str, float]:
    """Validation losses over every window of ``episodes``. z is sampled with a fixed seed, and so is the
    noise of stochastic cores (vsg, svsg), on a forked generator that leaves training's stream untouched."""
    avg = Averages()
    rng = np.random.default_rng(seed)
    picks = latent_data.windows(episodes, seq_len, rng)
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for s in range(0, len(picks), batch):
            b = {k: v.to(device) for k, v in latent_data.batch(episodes, picks[s: s + batch], seq_len, rng).items()}
            avg.add(mdn_terms(model, b, device, done_weight, reward_over_weight), int(b["mask"].sum()))
    model.train()
    return avg.pop()


def resume(path: Path, made_by: str, model: nn.Module, opt: torch.optim.Optimizer, lr: float,
           check: Callable[[dict], None] = lambda state: None) -> dict | None:
    """Stages 02 and 03 resume the same way: if ``path`` holds a checkpoint (``check`` may refuse it), load the
    model and the optimiser from it, with the learning rate set to ``lr`` (the saved optimiser state would
    bring back the old one), and return its progress; None when there is nothing to resume."""
    if not path.exists():
        return None
    state = checkpoint.load(path, made_by)
    check(state)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    for group in opt.param_groups:
        group["lr"] = lr
    return state["progress"]


def epoch_plan(episodes: list, seq_len: int, batch: int, seed: int, epoch: int
               ) -> tuple[np.random.Generator, list[list[tuple[int, int]]]]:
    """An epoch of M's training: its batches of (episode, start) windows in shuffled order, and the generator its
    batches draw z from. Both come from (seed, epoch) alone, and so does torch's generator (the stochastic cores'
    noise): an epoch resumed after a kill repeats exactly."""
    rng = np.random.default_rng([seed, epoch])
    torch.manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    windows = latent_data.windows(episodes, seq_len, rng)
    order = rng.permutation(len(windows))
    return rng, [[windows[i] for i in order[s: s + batch]] for s in range(0, len(order), batch)]
