"""CMA-ES over controller parameters, with candidates evaluated by worker processes.

A task is one candidate with all its trials (the same episode seeds for every candidate of a
generation), played in lockstep by one worker. Workers are spawned once and load V and M once.
The ES (pycma, which minimises: it is told −return) is pickled after every generation, with the
numpy random state it draws from, so a re-run resumes exactly where the last generation ended.
"""
from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cma
import numpy as np
import torch

from pipeline.agent import Player, WorldModel
from pipeline.cli import UsageError, WorkerError, atomic_write_bytes

_player: Player | None = None


def _init_worker(run: str, env: str, state: str | None, max_steps: int) -> None:
    global _player
    torch.set_num_threads(1)
    _player = Player(WorldModel.load(Path(run), env, state), max_steps)


def _play(params: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, int]:
    return _player.play(params, seeds)


def episode_seeds(seed: int, purpose: int, index: int, n: int) -> list[int]:
    """n episode seeds for (purpose, index): purpose 0 = a generation's trials, 1 = a periodic
    evaluation, 2 = ``--evaluate``. Disjoint from 01's collection seeds (other entropy length)."""
    state = np.random.SeedSequence([seed, 10 + purpose, index]).generate_state(n)
    return [int(s >> 1) for s in state]


class Evaluator:
    """Plays (params, seeds) tasks: in this process for one worker, else in a process pool."""

    def __init__(self, run: Path, env: str, state: str | None, max_steps: int, workers: int):
        self.workers = workers
        args = (str(run), env, state, max_steps)
        if workers == 1:
            _init_worker(*args)
            self.pool = None
        else:
            import multiprocessing as mp
            self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                            initializer=_init_worker, initargs=args)

    def run(self, tasks: list[tuple[np.ndarray, list[int]]]) -> tuple[list[np.ndarray], int]:
        """Each task (params (N, P), seeds (N,)) → its returns (N,); plus the total env steps."""
        if self.pool is None:
            results = [_play(p, s) for p, s in tasks]
        else:
            try:
                results = list(self.pool.map(_play, *zip(*tasks)))
            except BrokenProcessPool:
                self.close(kill=True)
                raise WorkerError("an evaluation worker died; re-run the same command to resume after the "
                                  "last completed generation") from None
        return [r for r, _ in results], sum(n for _, n in results)

    def fitness(self, candidates: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, int]:
        """Mean return of each candidate (K, P) over the same episode seeds."""
        tasks = [(np.repeat(c[None], len(seeds), axis=0), seeds) for c in candidates]
        returns, steps = self.run(tasks)
        return np.array([r.mean() for r in returns]), steps

    def scores(self, params: np.ndarray, seeds: list[int], chunk: int) -> tuple[np.ndarray, int]:
        """Returns (len(seeds),) of one controller, played in tasks of ``chunk`` episodes."""
        tasks = [(np.repeat(params[None], len(seeds[s: s + chunk]), axis=0), seeds[s: s + chunk])
                 for s in range(0, len(seeds), chunk)]
        returns, steps = self.run(tasks)
        return np.concatenate(returns), steps

    def close(self, kill: bool = False) -> None:
        """Shut the pool down; ``kill`` also ends workers still busy (after one died, their work is lost)."""
        if self.pool is None:
            return
        if kill:
            # ProcessPoolExecutor has no public terminate before Python 3.14.
            for proc in list(getattr(self.pool, "_processes", {}).values()):
                proc.kill()
        self.pool.shutdown(wait=not kill, cancel_futures=True)
        self.pool = None


class ESState:
    """What a resumed run needs: the ES, numpy's global random state (pycma samples from it), the
    generation count, the best candidate seen so far and the best-scoring CMA mean."""

    def __init__(self, dim: int, sigma: float, pop: int, seed: int):
        np.random.seed(seed)
        # pycma treats seed 0 as "seed from the clock"; shift by one so --seed 0 is reproducible too.
        # Mirrored sampling (pycma's default below 6) would add injected candidates: keep exactly `pop`.
        self.es = cma.CMAEvolutionStrategy(
            np.zeros(dim), sigma, {"popsize": pop, "seed": seed + 1, "verbose": -9, "CMA_mirrors": 0})
        self.generation = 0
        self.best_fitness = -np.inf
        self.best_params = np.zeros(dim)
        self.best_eval, self.best_eval_std = -np.inf, np.nan
        self.best_eval_params = np.zeros(dim)
        self.best_eval_generation = 0  # 0: the CMA mean has not been scored yet
        self.numpy_rng = np.random.get_state()

    def save(self, path: Path) -> None:
        self.numpy_rng = np.random.get_state()
        atomic_write_bytes(path, pickle.dumps(self))

    @staticmethod
    def load(path: Path, dim: int) -> ESState:
        try:
            state = pickle.loads(path.read_bytes())
        except Exception:
            raise UsageError(f"{path} is corrupted: delete it to restart the evolution from scratch") from None
        if state.es.N != dim:
            raise UsageError(f"{path} evolves {state.es.N} parameters but this run's controller has {dim}: "
                             "pass the same --run as before, or delete it to start over")
        np.random.set_state(state.numpy_rng)
        return state
