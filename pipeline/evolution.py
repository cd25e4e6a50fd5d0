"""CMA-ES over controller parameters, with candidates evaluated by worker processes.

A task is one candidate with all its trials (the same episode seeds for every candidate of a
generation), played in lockstep by one worker. Workers are spawned once and load V and M once (and
again only when a worker died or hung: see ``Evaluator``). The ES (pycma, which minimises: it is told
−return) is pickled after every generation, with the numpy random state it draws from, so a re-run
resumes exactly where the last generation ended.
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cma
import numpy as np
import torch

from data.atomic import write_bytes
from pipeline.agent import Player, WorldModel
from pipeline.cli import UsageError, WorkerError

_player: Player | None = None


def _init_worker(run: str, env: str, state: str | None, max_steps: int) -> None:
    global _player
    torch.set_num_threads(1)
    _player = Player(WorldModel.load(Path(run), env, state), max_steps)


def _play(params: np.ndarray, seeds: list[int], patience: int = 0) -> tuple[np.ndarray, int]:
    return _player.play(params, seeds, patience)


def episode_seeds(seed: int, purpose: int, index: int, n: int) -> list[int]:
    """n episode seeds for (purpose, index): purpose 0 = a generation's trials, 1 = a periodic
    evaluation, 2 = ``--evaluate``. Disjoint from 01's collection seeds (other entropy length)."""
    state = np.random.SeedSequence([seed, 10 + purpose, index]).generate_state(n)
    return [int(s >> 1) for s in state]


class Scoring:
    """What the evaluators share: ``fitness`` and ``scores`` cut their work into tasks for ``run``."""

    def run(self, tasks: list[tuple[np.ndarray, list[int]]]) -> tuple[list[np.ndarray], int]:
        raise NotImplementedError

    def fitness(self, candidates: np.ndarray, seeds: list[int], patience: int = 0) -> tuple[np.ndarray, int]:
        """Mean return of each candidate (K, P) over the same episode seeds (``patience``: see ``Player.play``)."""
        tasks = [(np.repeat(c[None], len(seeds), axis=0), seeds, patience) for c in candidates]
        returns, steps = self.run(tasks)
        return np.array([r.mean() for r in returns]), steps

    def scores(self, params: np.ndarray, seeds: list[int], chunk: int) -> tuple[np.ndarray, int]:
        """Returns (len(seeds),) of one controller, played in tasks of ``chunk`` episodes."""
        tasks = [(np.repeat(params[None], len(seeds[s: s + chunk]), axis=0), seeds[s: s + chunk])
                 for s in range(0, len(seeds), chunk)]
        returns, steps = self.run(tasks)
        return np.concatenate(returns), steps


def make_evaluator(run: Path, env: str, state: str | None, max_steps: int, workers: int, task_timeout: float,
                   backend: str = "local", address: str | None = None) -> Scoring:
    """The evaluator of ``--backend``: local processes, or Ray actors (pipeline/ray_backend.py)."""
    if backend == "ray":
        from pipeline.ray_backend import RayEvaluator
        return RayEvaluator(run, env, state, max_steps, workers, task_timeout, address)
    return Evaluator(run, env, state, max_steps, workers, task_timeout)


class Evaluator(Scoring):
    """Plays (params, seeds) tasks: in this process for one worker, else in a process pool that survives
    its workers. A worker that dies, or a pool where no task finishes for ``task_timeout`` seconds (so
    every task running has run that long: a hung worker), is replaced by a fresh pool that plays again only
    the tasks without a result; a task's result depends only on its inputs, so the outcome is the same as
    if nothing had happened. After ``retries`` replacements within one call it gives up with WorkerError."""

    def __init__(self, run: Path, env: str, state: str | None, max_steps: int, workers: int,
                 task_timeout: float = 600.0, retries: int = 3):
        self.workers, self.task_timeout, self.retries = workers, task_timeout, retries
        self.init_args = (str(run), env, state, max_steps)
        self.pool = None
        if workers == 1:
            _init_worker(*self.init_args)
        else:
            self._start()

    def _start(self) -> None:
        self.pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                        initializer=_init_worker, initargs=self.init_args)

    def run(self, tasks: list[tuple[np.ndarray, list[int]]]) -> tuple[list[np.ndarray], int]:
        """Each task (params (N, P), seeds (N,)) → its returns (N,); plus the total env steps."""
        if self.pool is None:
            results = [_play(*task) for task in tasks]
        else:
            done: dict[int, tuple[np.ndarray, int]] = {}
            for attempt in range(self.retries + 1):
                problem = self._play_missing(tasks, done)
                if problem is None:
                    break
                self.close(kill=True)
                if attempt == self.retries:
                    raise WorkerError(f"{problem}, {self.retries + 1} times in one batch of evaluations; check the "
                                      "env and free memory, then re-run the same command to resume after the last "
                                      "completed generation")
                print(f"warning: {problem}; starting fresh workers to play the {len(tasks) - len(done)} unfinished "
                      "tasks again", file=sys.stderr, flush=True)
                self._start()
            results = [done[i] for i in range(len(tasks))]
        return [r for r, _ in results], sum(n for _, n in results)

    def _play_missing(self, tasks: list, done: dict) -> str | None:
        """Play the tasks that have no entry in ``done`` yet, filling it in; what went wrong, or None."""
        try:
            futures = {self.pool.submit(_play, *tasks[i]): i for i in range(len(tasks)) if i not in done}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=self.task_timeout, return_when=FIRST_COMPLETED)
                if not finished:
                    return f"no evaluation finished within --task-timeout {self.task_timeout:g} s (a worker hung)"
                for future in finished:
                    done[futures[future]] = future.result()
        except BrokenProcessPool:
            return "an evaluation worker died"
        return None

    def close(self, kill: bool = False) -> None:
        """Shut the pool down. Idle workers exit by themselves; one that does not within a few seconds (or at
        once with ``kill``: busy, hung or stopped) is killed, so closing never waits on a stuck worker."""
        if self.pool is None:
            return
        # ProcessPoolExecutor has no public terminate before Python 3.14.
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.join(timeout=0 if kill else 5)
            if proc.exitcode is None:
                proc.kill()  # SIGKILL ends a stopped process too
                proc.join()
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
        write_bytes(path, pickle.dumps(self))

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
