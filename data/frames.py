"""Frames for V, streamed from the shards: memory is bounded by one block, never the dataset.

An epoch visits the episodes in a random order fixed by (seed, epoch), grouped into blocks of
``block_episodes`` episodes; each block's frames are shuffled together and cut into batches. Blocks are
numbered, so training can record which ones it has finished and a resumed epoch skips them.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from data.store import FRAME_SHAPE, EpisodeRef, read_observations


def split(refs: list[EpisodeRef], val_fraction: float) -> tuple[list[EpisodeRef], list[EpisodeRef]]:
    """Deterministic train/validation split by episode id: every round(1/f)-th id is validation.

    With at least two episodes and f > 0, at least one episode goes to validation.
    """
    if val_fraction <= 0 or len(refs) < 2:
        return list(refs), []
    period = max(2, round(1 / val_fraction))
    val = [r for r in refs if r.id % period == period - 1] or [refs[-1]]
    val_ids = {r.id for r in val}
    return [r for r in refs if r.id not in val_ids], val


def blocks(refs: list[EpisodeRef], block_episodes: int, seed: int, epoch: int) -> list[list[EpisodeRef]]:
    order = np.random.default_rng([seed, epoch]).permutation(len(refs))
    return [[refs[i] for i in order[s: s + block_episodes]] for s in range(0, len(refs), block_episodes)]


def frames_bytes(refs: list[EpisodeRef]) -> int:
    """What the frames of ``refs`` take decoded: (T + 1) uint8 frames per episode."""
    return sum((r.length + 1) * int(np.prod(FRAME_SHAPE)) for r in refs)


def load_frames(refs: Iterable[EpisodeRef], device: torch.device) -> dict[int, torch.Tensor]:
    """Every episode's frames, decoded once, as uint8 tensors on ``device`` (GPU memory on CUDA): epochs then
    read no HDF5 and, on a GPU, copy nothing from the host. ``refs`` may be wrapped in a progress bar."""
    return {r.id: torch.from_numpy(read_observations(r)).to(device) for r in refs}


class FrameBlocks(IterableDataset):
    """Yields (block index, last batch of the block?, frames (B, 64, 64, 3) uint8). With ``frames`` (from
    ``load_frames``) the blocks are cut from those tensors, on their device, in the very same order."""

    def __init__(self, refs: list[EpisodeRef], batch: int, block_episodes: int, seed: int, epoch: int,
                 skip_blocks: set[int] = frozenset(), frames: dict[int, torch.Tensor] | None = None):
        self.blocks = blocks(refs, block_episodes, seed, epoch)
        self.batch, self.seed, self.epoch, self.skip = batch, seed, epoch, set(skip_blocks)
        self.frames = frames

    def __len__(self) -> int:
        """Number of batches this iterator yields."""
        return sum(-(-sum(r.length + 1 for r in blk) // self.batch)
                   for b, blk in enumerate(self.blocks) if b not in self.skip)

    def __iter__(self) -> Iterator[tuple[int, bool, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for b in range(worker, len(self.blocks), workers):
            if b in self.skip:
                continue
            if self.frames is None:
                frames = torch.from_numpy(np.concatenate([read_observations(r) for r in self.blocks[b]]))
            else:
                frames = torch.cat([self.frames[r.id] for r in self.blocks[b]])
            order = np.random.default_rng([self.seed, self.epoch, b]).permutation(len(frames))
            frames = frames[torch.from_numpy(order).to(frames.device)]
            starts = range(0, len(frames), self.batch)
            for i, s in enumerate(starts):
                yield b, i == len(starts) - 1, frames[s: s + self.batch]


def sample_frames(refs: list[EpisodeRef], n: int, seed: int) -> np.ndarray:
    """n frames (n, 64, 64, 3) spread over ``refs``: a fixed set for reconstruction grids."""
    rng = np.random.default_rng(seed)
    picks = []
    for i in range(n):
        ref = refs[i % len(refs)]
        obs = read_observations(ref)
        picks.append(obs[rng.integers(len(obs))])
    return np.stack(picks)
