"""CMA-ES over controller parameters, with candidates evaluated by a worker pool (``pipeline.compute.pool``).

A task is one candidate with all its trials (the same episode seeds for every candidate of a
generation), played in lockstep by one worker. Workers are started once and load V and M once (and
again only when one died or hung). The ES (pycma, which minimises: it is told −return) draws its
samples from its own generator and is pickled after every generation with it, so a re-run resumes
exactly where the last generation ended.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from data.atomic import write_bytes
from pipeline.compute import pool
from pipeline.contract.errors import UsageError
from pipeline.contract.seeding import cma_normal
from pipeline.encoder_precision import FP32, Precision
from pipeline.real_eval import RealEvaluator
from pipeline.world_model import WorldModel

WORLD_FILES = ("vae.pt", "mdnrnn.pt")


class EvaluatorWorker:
    """A worker of the pool: a RealEvaluator on V and M received as checkpoint bytes, so a worker on another machine
    (a Ray actor) needs no shared file system; V's encoder at ``precision`` (``pipeline.encoder_precision``)."""

    def __init__(self, files: dict[str, bytes], env: str, state: str | None, max_steps: int,
                 precision: Precision = FP32):
        torch.set_num_threads(1)
        with WorldModel.from_bytes(files, env, state) as (world, _):
            self.evaluator = RealEvaluator(world, max_steps, precision)

    def play(self, params: np.ndarray, seeds: list[int], patience: int = 0) -> tuple[np.ndarray, int]:
        return self.evaluator.play(params, seeds, patience)


class Scoring:
    """What the evaluators share (the real env's and the dream's): ``fitness`` and ``scores`` cut their work
    into tasks for ``run``."""

    def run(self, tasks: list[tuple]) -> tuple[list[np.ndarray], int]:
        raise NotImplementedError

    def fitness(self, candidates: np.ndarray, seeds: list[int], patience: int = 0) -> tuple[np.ndarray, int]:
        """Mean return of each candidate (K, P) over the same episode seeds (``patience``: see ``RealEvaluator.play``)."""
        tasks = [(np.repeat(c[None], len(seeds), axis=0), seeds, patience) for c in candidates]
        returns, steps = self.run(tasks)
        return np.array([r.mean() for r in returns]), steps

    def scores(self, params: np.ndarray, seeds: list[int], chunk: int) -> tuple[np.ndarray, int]:
        """Returns (len(seeds),) of one controller, played in tasks of ``chunk`` episodes."""
        tasks = [(np.repeat(params[None], len(seeds[s: s + chunk]), axis=0), seeds[s: s + chunk])
                 for s in range(0, len(seeds), chunk)]
        returns, steps = self.run(tasks)
        return np.concatenate(returns), steps


class Evaluator(Scoring):
    """Plays (params (N, P), seeds (N,)[, patience]) tasks on a pool of ``EvaluatorWorker``: in this process for one
    worker, else in local processes or on Ray actors (``backend``); a worker that dies or hangs is replaced and
    its task played again, with the same outcome."""

    def __init__(self, run: Path, env: str, state: str | None, max_steps: int, workers: int,
                 task_timeout: float = 600.0, backend: str = "local", address: str | None = None, retries: int = 3,
                 tasks: int | None = None, precision: Precision = FP32):
        """``tasks``: the most tasks one call will play at once (no more workers are started than that);
        ``precision``: V's encoder's in the workers (``pipeline.encoder_precision.prepare`` makes it)."""
        files = {name: (run / name).read_bytes() for name in WORLD_FILES}
        self.pool = pool.make(backend, EvaluatorWorker, (files, env, state, max_steps, precision), workers,
                              task_timeout, "evaluation", address, retries, calls=tasks)

    def run(self, tasks: list[tuple]) -> tuple[list[np.ndarray], int]:
        """Each task → its returns (N,); plus the total env steps."""
        results = self.pool.run([("play", task) for task in tasks])
        return [r for r, _ in results], sum(n for _, n in results)

    def close(self, abort: bool = False) -> None:
        self.pool.close(abort)

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(abort=kind is not None)  # an exception (Ctrl-C, SIGTERM) ends the workers at once


MIN_POP = 3  # pycma's smallest population: with 2 or fewer it fails after the first generation's evaluation


class ESState:
    """What a resumed run needs: the ES (with its own random generator), the generation count, the best
    candidate seen so far and the best-scoring CMA mean."""

    def __init__(self, dim: int, sigma: float, pop: int, seed: int, world: str | None = None,
                 x0: np.ndarray | None = None):
        """``world``: the fingerprint of the V and M the controllers are evolved on (``WorldModel.fingerprint``);
        ``x0``: the first CMA mean (zeros by default)."""
        import cma  # here, not at the top: pycma imports SciPy and pyplot, a second of a stage's start that
        # scoring, PPO and a refusal never need (an ES read back from es_state.pkl imports it itself)

        # Mirrored sampling (pycma's default below 6) would add injected candidates: keep exactly `pop`.
        self.es = cma.CMAEvolutionStrategy(
            np.zeros(dim) if x0 is None else np.asarray(x0, dtype=np.float64), sigma,
            {"popsize": pop, "randn": cma_normal(seed), "seed": np.nan, "verbose": -9, "CMA_mirrors": 0})
        self.world = world
        self.generation = 0
        self.best_fitness = -np.inf
        self.best_params = np.zeros(dim)
        self.best_eval, self.best_eval_std = -np.inf, np.nan
        self.best_eval_params = np.zeros(dim)
        self.best_eval_generation = 0  # 0: the CMA mean has not been scored yet
        self.archive: list[tuple[float, int, np.ndarray]] = []  # the best-scoring means: (score, generation, params)
        self.reselected = ""  # how the kept mean was last chosen again (04 --reselect), if it was

    ARCHIVE = 4

    def scored(self, score: float, std: float, generation: int, params: np.ndarray) -> None:
        """A scoring of the CMA mean of ``generation``: kept if it is the best so far, archived if among the
        ``ARCHIVE`` best (``04 --reselect`` scores those again)."""
        if score > self.best_eval:
            self.best_eval, self.best_eval_std = float(score), float(std)
            self.best_eval_params, self.best_eval_generation = params.copy(), generation
            self.reselected = ""
        archive = getattr(self, "archive", [])  # states saved before the archive existed have none
        archive.append((float(score), generation, params.copy()))
        self.archive = sorted(archive, key=lambda entry: -entry[0])[: self.ARCHIVE]

    def save(self, path: Path) -> None:
        write_bytes(path, pickle.dumps(self))

    @staticmethod
    def load(path: Path, dim: int, world: str | None = None) -> ESState:
        try:
            state = pickle.loads(path.read_bytes())
        except Exception:
            raise UsageError(f"{path} is corrupted: delete it to restart the evolution from scratch") from None
        if not isinstance(state, ESState):
            raise UsageError(f"{path} holds a {type(state).__name__}, not an ES state: delete it to restart the "
                             "evolution from scratch") from None
        if state.es.N != dim:
            raise UsageError(f"{path} evolves {state.es.N} parameters but this run's controller has {dim}: "
                             "pass the same --run as before, or delete it to start over")
        if world is not None and getattr(state, "world", world) != world:
            raise UsageError(f"{path} was evolved on another V and M than this run's (retrained since?): delete it to "
                             "evolve C on the current ones, or restore the vae.pt and mdnrnn.pt it was evolved on")
        return state
