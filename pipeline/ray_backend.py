"""``--backend ray``: stage 01's episodes and stage 04's candidate evaluations as Ray actors.

Ray is optional (``pip install 'ray>=2.9'``). Without ``--address`` a local Ray instance is started with one
CPU per worker; with it the stage joins that cluster (``ray start --head`` on one machine, ``ray start
--address=...`` on the others). Nothing assumes a shared file system: the project's code travels as Ray's
``working_dir`` (the repository, less what .gitignore and ``_EXCLUDES`` name), V and M travel through the
object store, and episodes come back to this process, the only writer of the dataset. Every node needs the
packages of requirements.txt.

Results are those of the local backend: an episode depends only on (``--seed``, its id), and an
evaluation task only on its parameters and episode seeds, so where a task runs changes nothing. An actor
that dies, or a batch in which nothing finishes within the task timeout (a hung actor), is replaced by a
fresh actor and its unfinished work is done again.
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import envs
from pipeline.agent import Player, WorldModel
from pipeline.cli import UsageError, WorkerError
from pipeline.collect import episode_seed, play_episode
from pipeline.evolution import Scoring

ROOT = Path(__file__).resolve().parent.parent
# Run outputs and anything large stay behind; .gitignore (which Ray also honours) already names data/ and results/.
_EXCLUDES = [".git/", ".venv/", "docs/", "bench/out/", "*.h5", "*.pt", "*.pkl", "*.gif", "*.png"]
_ENV_VARS = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "SDL_VIDEODRIVER")
INSTALL = "pip install 'ray>=2.9'"


def start(address: str | None, workers: int):
    """Import Ray and connect to ``address`` (or start a local instance with ``workers`` CPUs); returns ray.
    A missing Ray, an unreachable cluster or a cluster smaller than ``workers`` is a UsageError."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--backend ray needs Ray, which is not installed: {INSTALL} (or use --backend local)") from None
    if address:
        check_reachable(address)
    if not ray.is_initialized():
        env_vars = {k: os.environ[k] for k in _ENV_VARS if k in os.environ}  # headless rendering, as here
        options = dict(runtime_env={"working_dir": str(ROOT), "excludes": _EXCLUDES, "env_vars": env_vars},
                       include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=workers, **options)
        except ConnectionError as e:
            raise UsageError(f"--address {address}: no Ray cluster answered ({e}); start one with "
                             "'ray start --head' or drop --address for a local one") from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if workers > cpus:
        raise UsageError(f"--workers {workers} but the Ray cluster has {cpus} CPUs: pass --workers {cpus} or fewer")
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT address must accept a connection within ``timeout`` s (ray.init would wait on it for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # 'auto', 'ray://...': Ray resolves these itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UsageError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); start one with "
                         "'ray start --head' on that machine, or drop --address for a local Ray instance") from None


def stop() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


class ActorPool:
    """``workers`` actors of class ``actor`` (made by ``make()``), each playing one task at a time.

    ``run(calls)`` returns each call's result in order, where a call is (method name, args). An actor that
    dies is replaced and its call made again; if no call finishes within ``timeout`` seconds every busy actor
    counts as hung and is replaced likewise. More than ``retries`` replacements in one ``run`` → WorkerError."""

    def __init__(self, ray, make, workers: int, timeout: float, retries: int, what: str):
        self.ray, self.make, self.timeout, self.retries, self.what = ray, make, timeout, retries, what
        self.actors = [make() for _ in range(workers)]

    def run(self, calls: list[tuple[str, tuple]], on_result=lambda index, result: None) -> list:
        ray = self.ray
        results: dict[int, object] = {}
        todo = list(range(len(calls)))[::-1]  # popped from the end: calls start in order
        running: dict = {}  # ObjectRef → (actor index, call index)
        idle = list(range(len(self.actors)))
        replaced = 0

        def submit(a: int, i: int) -> None:
            method, args = calls[i]
            running[getattr(self.actors[a], method).remote(*args)] = (a, i)

        def replace(a: int, i: int, why: str) -> None:
            nonlocal replaced
            if replaced == self.retries:
                raise WorkerError(f"{why}, {self.retries + 1} times in one batch; check the cluster's nodes and free "
                                  "memory, then re-run the same command to resume")
            replaced += 1
            print(f"warning: {why}; a fresh Ray actor does its work again", file=sys.stderr, flush=True)
            ray.kill(self.actors[a], no_restart=True)
            self.actors[a] = self.make()
            todo.append(i)
            idle.append(a)

        while todo or running:
            while todo and idle:
                submit(idle.pop(), todo.pop())
            ready, _ = ray.wait(list(running), num_returns=1, timeout=self.timeout)
            if not ready:
                for ref, (a, i) in list(running.items()):
                    del running[ref]
                    replace(a, i, f"no {self.what} finished within {self.timeout:g} s (an actor hung)")
                continue
            ref = ready[0]
            a, i = running.pop(ref)
            try:
                results[i] = ray.get(ref)
            except ray.exceptions.RayActorError:
                replace(a, i, f"a Ray {self.what} actor died")
                continue
            except ray.exceptions.RayTaskError as e:
                raise WorkerError(f"a Ray {self.what} actor failed ({str(e).strip().splitlines()[-1]}); re-run the "
                                  "same command to resume") from None
            idle.append(a)
            on_result(i, results[i])
        return [results[i] for i in range(len(calls))]

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors = []


# --- 01: collection -------------------------------------------------------------------------------------


class _Collector:
    """One env, kept between episodes (retro allows one emulator per process: an actor is a process)."""

    def __init__(self, job):
        self.job, self.source = job, envs.get(job.env, job.state)
        self.env = self.source.make(job.max_steps)

    def play(self, episode_id: int):
        job = self.job
        return play_episode(self.source, self.env, episode_id, episode_seed(job.seed, episode_id), job.policy)


def collect(ray, job, missing: list[int], workers: int, store, info, bar) -> None:
    """Play ``missing`` on Ray actors (``ray`` as ``start`` returned it); stage each episode here as it arrives,
    pack every ``job.shard_size``."""
    actor = ray.remote(num_cpus=1)(_Collector)
    pool = ActorPool(ray, lambda: actor.remote(job), workers, timeout=600.0, retries=3, what="collection")
    staged = []

    def keep(_, episode) -> None:
        staged.append(store.stage(episode, info))
        bar.update()
        if len(staged) == job.shard_size:
            store.pack(staged, info)
            staged.clear()

    try:
        pool.run([("play", (i,)) for i in missing], on_result=keep)
        store.pack(staged, info)
    finally:
        pool.close()


# --- 04: candidate evaluation ---------------------------------------------------------------------------


class _Player:
    """A Player on V and M sent as checkpoint bytes (no shared file system needed)."""

    def __init__(self, files: dict[str, bytes], env: str, state: str | None, max_steps: int):
        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as tmp:
            for name, blob in files.items():
                Path(tmp, name).write_bytes(blob)
            self.player = Player(WorldModel.load(Path(tmp), env, state), max_steps)

    def play(self, params: np.ndarray, seeds: list[int], patience: int = 0):
        return self.player.play(params, seeds, patience)


class RayEvaluator(Scoring):
    """The Evaluator interface (``run``, ``fitness``, ``scores``, ``close``) on Ray actors, one per worker."""

    def __init__(self, run: Path, env: str, state: str | None, max_steps: int, workers: int, task_timeout: float,
                 address: str | None, retries: int = 3):
        ray = start(address, workers)
        files = ray.put({name: (run / name).read_bytes() for name in ("vae.pt", "mdnrnn.pt")})
        actor = ray.remote(num_cpus=1)(_Player)
        self.pool = ActorPool(ray, lambda: actor.remote(files, env, state, max_steps), workers, task_timeout, retries,
                              what="evaluation")

    def run(self, tasks: list[tuple[np.ndarray, list[int]]]) -> tuple[list[np.ndarray], int]:
        results = self.pool.run([("play", task) for task in tasks])
        return [r for r, _ in results], sum(n for _, n in results)

    def close(self, kill: bool = False) -> None:
        self.pool.close()
        stop()

