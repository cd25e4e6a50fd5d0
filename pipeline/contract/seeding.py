"""Every random stream the pipeline derives from ``--seed``, by named purpose, in one place.

Episodes of a stage are seeded per episode, so a result never depends on which worker played what:
- collection (01): episode ``i`` of a dataset plays from ``episode_seed(seed, i)``;
- everything else draws episode seeds with ``episode_seeds(seed, purpose, index, n)``, one disjoint stream
  per ``Purpose`` (and per generation, where there are generations). Selection (which CMA mean is kept) and
  the reported score use different purposes, so a score is never on seeds a choice was made on.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

import numpy as np


class Purpose(IntEnum):
    TRIALS = 0  # 04: the episodes every candidate of a generation plays (its fitness)
    SELECTION = 1  # 04: the periodic scoring of the CMA mean, which picks the controller that is kept
    EVALUATE = 2  # 04 --evaluate: the reported score
    DREAMS = 3  # 05: the real frames the shown dreams start from (and each dream of --play)


def episode_seed(base_seed: int, episode_id: int) -> int:
    """A 31-bit seed for episode ``episode_id`` of the dataset collected with ``base_seed``."""
    return int(np.random.SeedSequence([base_seed, episode_id]).generate_state(1)[0] >> 1)


def episode_seeds(seed: int, purpose: Purpose, index: int, n: int) -> list[int]:
    """n episode seeds for (purpose, index), e.g. index = the generation. Disjoint from the collection seeds
    (another entropy length) and across purposes."""
    state = np.random.SeedSequence([seed, 10 + int(purpose), index]).generate_state(n)
    return [int(s >> 1) for s in state]


def batch_seed(seeds: Sequence[int], *extra: int) -> int:
    """One seed for a batch of episodes (a stochastic core's draws), from the batch's episode seeds: the same
    batch draws the same numbers whatever process plays it."""
    return int(np.random.SeedSequence([int(s) for s in seeds] + list(extra)).generate_state(1)[0])


def cma_normal(seed: int):
    """The standard-normal sampler CMA-ES draws its candidates from (pycma's ``randn`` option): its own
    generator, pickled with the ES state, not numpy's global one. ``seed + 1`` because pycma read seed 0 as
    "from the clock"; the stream is the one pycma drew from the global generator when seeded that way."""
    return np.random.RandomState(seed + 1).randn
