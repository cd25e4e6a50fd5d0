"""``latents.h5``: every frame encoded once by V (mu, logvar), aligned with actions, rewards and dones,
and the sequence batches M trains on.

Layout: ``/episode_<id>/{mu, logvar}`` (T+1, Z) float32, ``actions`` (T, A), ``rewards`` (T,),
``terminations`` (T,); file attrs ``vae_fingerprint``, ``z_dim``, ``action_dim``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from data.store import episode_key, new_h5
from models.vae import sample_z


@dataclass
class LatentEpisode:
    id: int
    mu: np.ndarray  # (T+1, Z)
    logvar: np.ndarray  # (T+1, Z)
    actions: np.ndarray  # (T, A)
    rewards: np.ndarray  # (T,)
    terminations: np.ndarray  # (T,)

    @property
    def length(self) -> int:
        return len(self.actions)


def write(path: Path, episodes: Iterator[LatentEpisode], attrs: dict) -> None:
    """Write all episodes, atomically: the file appears under its name only when complete. It is built in memory
    (``new_h5``), no more than stage 03 then reads back into memory."""
    with new_h5(path) as f:
        f.attrs.update(attrs)
        for ep in episodes:
            g = f.create_group(episode_key(ep.id))
            for name in ("mu", "logvar", "actions", "rewards", "terminations"):
                g.create_dataset(name, data=getattr(ep, name))
            g.attrs["id"] = ep.id


def read_attrs(path: Path) -> dict:
    try:
        with h5py.File(path, "r") as f:
            return dict(f.attrs)
    except OSError:
        return {}


def read(path: Path) -> list[LatentEpisode]:
    with h5py.File(path, "r") as f:
        eps = [LatentEpisode(int(g.attrs["id"]), g["mu"][()], g["logvar"][()], g["actions"][()],
                             g["rewards"][()], g["terminations"][()]) for g in f.values()]
    return sorted(eps, key=lambda e: e.id)


def windows(episodes: list[LatentEpisode], seq_len: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(episode index, start) pairs of windows of length L, n = ceil(T/L − 0.1) per episode (one padded
    window where T ≤ L). Where n windows cover the episode they are evenly spaced; where they fall short
    (by under 10% of L) they are laid back to back from a random offset, so the few steps left out differ
    each epoch. This avoids paying for two almost identical windows when T is just over L (the paper's
    T = 1000, L = 999)."""
    out = []
    for i, ep in enumerate(episodes):
        n = max(1, math.ceil(ep.length / seq_len - 0.1))
        if ep.length <= seq_len:
            out.append((i, 0))
        elif n * seq_len >= ep.length:
            out.extend((i, int(s)) for s in np.linspace(0, ep.length - seq_len, n).round())
        else:
            offset = int(rng.integers(0, ep.length - n * seq_len + 1))
            out.extend((i, offset + k * seq_len) for k in range(n))
    return out


def pad_windows(episodes: list, picks: list[tuple[int, int]], seq_len: int,
                states: dict[str, type]) -> dict[str, np.ndarray]:
    """The windows ``picks`` of ``episodes`` zero-padded to ``seq_len``, as numpy arrays: each per-state array the
    episodes hold under a name in ``states`` (T+1 entries: V's mu and logvar, or frames) as (B, L+1, ...) of the
    given dtype; actions (B, L, A), rewards, dones and mask (B, L) float32. An episode needs ``length``,
    ``actions``, ``rewards`` and ``terminations``: ``LatentEpisode`` and joint training's frame episodes alike."""
    b, a_dim = len(picks), episodes[0].actions.shape[1]
    out = {name: np.zeros((b, seq_len + 1, *getattr(episodes[0], name).shape[1:]), dtype)
           for name, dtype in states.items()}
    actions = np.zeros((b, seq_len, a_dim), np.float32)
    rewards, dones, mask = (np.zeros((b, seq_len), np.float32) for _ in range(3))
    for j, (i, s) in enumerate(picks):
        ep = episodes[i]
        n = min(seq_len, ep.length - s)
        for name, array in out.items():
            array[j, : n + 1] = getattr(ep, name)[s: s + n + 1]
        actions[j, :n] = ep.actions[s: s + n]
        rewards[j, :n] = ep.rewards[s: s + n]
        dones[j, :n] = ep.terminations[s: s + n]
        mask[j, :n] = 1
    return {**out, "actions": actions, "rewards": rewards, "dones": dones, "mask": mask}


def batch(episodes: list[LatentEpisode], picks: list[tuple[int, int]], seq_len: int,
          rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Padded tensors for the windows ``picks``, with z re-sampled from N(mu, sigma) for this batch:
    z (B, L, Z) input, z_next (B, L, Z) target, actions (B, L, A), rewards, dones, mask (B, L)."""
    padded = pad_windows(episodes, picks, seq_len, {"mu": np.float32, "logvar": np.float32})
    mu, logvar = padded.pop("mu"), padded.pop("logvar")
    z = sample_z(mu, logvar, rng.standard_normal(mu.shape, dtype=np.float32))
    t = torch.from_numpy
    return {"z": t(z[:, :-1]), "z_next": t(z[:, 1:]), **{k: t(v) for k, v in padded.items()}}
