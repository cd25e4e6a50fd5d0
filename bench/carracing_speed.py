"""Stock CarRacing-v3 vs envs.carracing.FastCarRacing vs EnvPool: steps/s side by side, in one process, on one core.

    python bench/carracing_speed.py [--episodes 2] [--steps 600] [--block 50] [--cpu 0] [--no-envpool]
                                    [--num-envs 8] [--vector-only]

Stock and fast play the same episodes (same seeds, same Brownian actions from the pipeline's exploration
policy), so they are in the same state at every step; their frames are checked equal as they go (outside the
timers). EnvPool's C++ CarRacing-v3 (1 env, 1 thread; ``requirements-bench.txt``, skipped when not installed)
plays the same actions from resets at the same steps, on its own tracks. To keep a noisy shared machine from
favouring any of them, the episode is cut into blocks of ``--block`` steps and the envs take turns on each block,
in an order that rotates from block to block. Each env is reset once before any timing (FastCarRacing's first
reset loads its compiled kernels). Reported: steps/s of each and the ratios, from wall time and from
process CPU time (which counts EnvPool's worker thread too), for the first second of each episode (the zoom-in,
50 steps), the rest, and whole episodes (resets included); then FastCarRacing/EnvPool against the 1.0× target.

Then the same for ``--num-envs`` (8; 0 skips it) envs stepped as one batch: ``FastCarRacingVector``
(``envs/fast_carracing_vector.py``), Gymnasium's ``SyncVectorEnv`` over as many FastCarRacing envs (the two
checked equal as they go) and EnvPool's batched mode (``num_envs = batch_size``, 1 thread), each car with its own
Brownian actions; rates are env-steps/s, and the verdict is vector/EnvPool against the 1.0× target.
``--vector-only`` skips the single-env comparison.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium.envs.box2d.car_racing import CarRacing as StockCarRacing  # noqa: E402

from envs.fast_carracing import FAST_ID, FastCarRacing  # noqa: E402
from envs.fast_carracing_vector import FastCarRacingVector  # noqa: E402
from envs.policies import BrownianPolicy  # noqa: E402

ZOOM_STEPS = 50  # the first second (t < 1) zooms in: far more, smaller polygons on screen
TARGET = 1.0  # FastCarRacing / EnvPool, 1 env, 1 thread; and FastCarRacingVector / EnvPool, N envs, 1 thread
# the printed rows: (label, the clock keys they add up)
ROWS = [("zoom-in (first 50)", ["zoom-in"]), ("driving (after 50)", ["driving"]),
        ("whole episodes+reset", ["reset", "zoom-in", "driving"])]


class Clock:
    def __init__(self):
        self.wall = {}
        self.cpu = {}
        self.steps = {}

    def add(self, key, wall, cpu, steps):
        self.wall[key] = self.wall.get(key, 0.0) + wall
        self.cpu[key] = self.cpu.get(key, 0.0) + cpu
        self.steps[key] = self.steps.get(key, 0) + steps


def timed(fn, *args, **kwargs):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def play(env, actions):
    return [env.step(a) for a in actions]


class EnvPoolOne:
    """EnvPool's CarRacing-v3 with 1 env and 1 thread, behind the single-env reset/step calls used here."""

    def __init__(self, envpool, seed: int):
        self.env = envpool.make("CarRacing-v3", env_type="gymnasium", num_envs=1, batch_size=1, num_threads=1, seed=seed)

    def reset(self, seed=None):
        obs, info = self.env.reset()
        return obs[0], info

    def step(self, action):
        return self.env.step(np.asarray(action, np.float32)[None])


class EnvPoolBatch:
    """EnvPool's CarRacing-v3 with ``n`` envs stepped as one batch on 1 thread, behind the vector reset/step calls."""

    def __init__(self, envpool, n: int, seed: int):
        self.env = envpool.make("CarRacing-v3", env_type="gymnasium", num_envs=n, batch_size=n, num_threads=1, seed=seed)

    def reset(self, seed=None):
        return self.env.reset()

    def step(self, actions):
        return self.env.step(actions)


def import_envpool(use_envpool: bool):
    """The envpool module, or None (not wanted, or not installed: then its rows are skipped, with a note)."""
    if not use_envpool:
        return None
    try:
        import envpool
    except ImportError:
        print("envpool is not installed (requirements-bench.txt): EnvPool rows skipped")
        return None
    return envpool


def make_envs(envpool, seed: int) -> dict:
    envs = {"stock": StockCarRacing(), "fast": FastCarRacing()}
    if envpool is not None:
        envs["envpool"] = EnvPoolOne(envpool, seed)
    return envs


def make_vector_envs(envpool, n: int, seed: int) -> dict:
    envs = {"vector": FastCarRacingVector(n), "sync": gym.make_vec(FAST_ID, num_envs=n, vectorization_mode="sync")}
    if envpool is not None:
        envs["envpool"] = EnvPoolBatch(envpool, n, seed)
    return envs


def print_table(clocks: dict, names: list, subject: str, baseline: str, target_name: str, widths: tuple) -> None:
    """Steps/s of every env per phase (wall and CPU time), ``subject`` against ``baseline`` and against EnvPool
    when it ran, then the line saying whether ``subject`` / EnvPool over whole episodes (CPU time) meets TARGET.
    ``widths``: the rate column, the two ratio headers and the two ratio cells."""
    rate_w, base_head, base_cell, pool_head, pool_cell = widths
    cols = "".join(f"{n + '/s':>{rate_w}}" for n in names) + f"{subject + '/' + baseline:>{base_head}}" + (
        f"{subject + '/envpool':>{pool_head}}" if "envpool" in names else "")
    print(f"{'phase':<22}{'steps':>7}  {'clock':<6}{cols}")
    summary = None
    for label, keys in ROWS:
        steps = sum(clocks[subject].steps.get(k, 0) for k in keys if k != "reset")
        if steps == 0:
            continue
        for kind in ("wall", "cpu"):
            rate = {n: steps / sum(getattr(clocks[n], kind).get(k, 0.0) for k in keys) for n in names}
            line = f"{label if kind == 'wall' else '':<22}{steps if kind == 'wall' else '':>7}  {kind:<6}"
            line += "".join(f"{rate[n]:>{rate_w}.0f}" for n in names)
            line += f"{rate[subject] / rate[baseline]:>{base_cell}.2f}×"
            if "envpool" in names:
                line += f"{rate[subject] / rate['envpool']:>{pool_cell}.2f}×"
                if label.startswith("whole") and kind == "cpu":
                    summary = rate[subject] / rate["envpool"]
            print(line)
    if summary is not None:
        verdict = "met" if summary >= TARGET else "not met"
        print(f"{target_name}, whole episodes, CPU time: {summary:.2f}× (target ≥ {TARGET:.1f}×: {verdict})")


def whole_episode_rates(clocks: dict) -> dict:
    """Each env's steps/s over whole episodes (resets included), in process CPU time."""
    keys = dict(ROWS)["whole episodes+reset"]
    return {name: sum(c.steps.get(k, 0) for k in keys if k != "reset") / sum(c.cpu.get(k, 0.0) for k in keys)
            for name, c in clocks.items()}


def race(envs: dict, clocks: dict, actions, args, seed: int, episode: int, turn: int, per_step: int,
         checked: tuple[str, str], same_steps) -> int:
    """One episode of ``actions`` played by every env of ``envs``, timed into ``clocks``: all reset with ``seed``
    (the ``checked`` pair's first frames compared), then blocks of ``args.block`` steps (cut at the zoom-in's
    end) that the envs take in turns, in an order that rotates with ``turn``. ``same_steps(outs)`` checks each
    block's results and says whether the episode ended; ``per_step`` env-steps count per step (the batch's size).
    Returns the next turn."""
    names = list(envs)
    obs = {}
    for k in range(len(names)):
        name = names[(episode + k) % len(names)]
        (obs[name], _), w, c = timed(envs[name].reset, seed=seed)
        clocks[name].add("reset", w, c, 1)
    assert np.array_equal(obs[checked[0]], obs[checked[1]]), f"episode {episode}: reset frames differ"
    cuts = sorted({*range(0, args.steps, args.block), min(ZOOM_STEPS, args.steps), args.steps})
    for lo, hi in zip(cuts, cuts[1:]):
        phase = "zoom-in" if lo < ZOOM_STEPS else "driving"
        outs = {}
        for k in range(len(names)):
            name = names[(turn + k) % len(names)]
            outs[name], w, c = timed(play, envs[name], actions[lo:hi])
            clocks[name].add(phase, w, c, (hi - lo) * per_step)
        turn += 1
        if same_steps(outs):
            break
    return turn


def single(args, envpool, quiet: bool = False) -> dict:
    """Stock, fast and EnvPool with 1 env each; prints the table (unless ``quiet``) and returns the clocks."""
    envs = make_envs(envpool, args.seed)
    names = list(envs)
    for name, env in envs.items():  # untimed: loads FastCarRacing's compiled kernels (numba's on-disk cache)
        _, wall, _ = timed(env.reset, seed=args.seed)
        if name == "fast" and not quiet:
            print(f"FastCarRacing's first reset (kernels loaded or compiled): {wall:.2f} s")
    clocks = {name: Clock() for name in names}
    turn = 0
    for episode in range(args.episodes):
        seed = args.seed + episode
        policy = BrownianPolicy(envs["stock"].action_space, np.random.default_rng(seed))
        actions = [policy.act() for _ in range(args.steps)]

        def same_steps(outs: dict, episode: int = episode) -> bool:
            for a, b in zip(outs["stock"], outs["fast"]):
                assert np.array_equal(a[0], b[0]) and a[1:] == b[1:], f"episode {episode}: frames differ"
            return any(out[2] or out[3] for out in outs["stock"])  # the episode ended in this block

        turn = race(envs, clocks, actions, args, seed, episode, turn, 1, ("stock", "fast"), same_steps)

    if not quiet:
        print(f"CarRacing-v3 steps/s, {args.episodes} episode(s) × ≤{args.steps} steps, turns of {args.block} steps,"
              f" pid {os.getpid()}, affinity {sorted(os.sched_getaffinity(0))}")
        print_table(clocks, names, "fast", "stock", "FastCarRacing / EnvPool (1 env, 1 thread)", (10, 11, 10, 13, 12))
    return clocks


def vector(args, envpool, quiet: bool = False) -> dict:
    """FastCarRacingVector, SyncVectorEnv over FastCarRacing and EnvPool, ``args.num_envs`` envs in one batch;
    prints the table (unless ``quiet``) and returns the clocks."""
    n = args.num_envs
    envs = make_vector_envs(envpool, n, args.seed)
    names = list(envs)
    for env in envs.values():  # untimed, as above
        env.reset(seed=args.seed)
    clocks = {name: Clock() for name in names}
    turn = 0
    for episode in range(args.episodes):
        seed = args.seed + episode * n
        policies = [BrownianPolicy(envs["vector"].single_action_space, np.random.default_rng(seed + i)) for i in range(n)]
        actions = np.array([[policy.act() for policy in policies] for _ in range(args.steps)])

        def same_steps(outs: dict, episode: int = episode) -> bool:
            for a, b in zip(outs["vector"], outs["sync"]):
                assert all(np.array_equal(x, y) for x, y in zip(a[:4], b[:4])), f"episode {episode}: steps differ"
            return False  # the batch autoresets: it plays all the steps

        turn = race(envs, clocks, actions, args, seed, episode, turn, n, ("vector", "sync"), same_steps)

    if not quiet:
        print(f"\nCarRacing-v3 env-steps/s, {n} envs in one batch, {args.episodes} episode(s) × {args.steps} steps,"
              f" turns of {args.block} steps")
        print_table(clocks, names, "vector", "sync", f"FastCarRacingVector / EnvPool ({n} envs, 1 thread)",
                    (10, 12, 11, 15, 14))
    for env in envs.values():
        if hasattr(env, "close"):
            env.close()
    return clocks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--steps", type=int, default=600, help="steps per episode")
    p.add_argument("--block", type=int, default=50, help="steps per timed turn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    p.add_argument("--no-envpool", action="store_true", help="skip the EnvPool rows")
    p.add_argument("--num-envs", type=int, default=8, help="envs in the batched comparison (0: skip it)")
    p.add_argument("--vector-only", action="store_true", help="skip the single-env comparison")
    args = p.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    envpool = import_envpool(not args.no_envpool)
    if not args.vector_only:
        single(args, envpool)
    if args.num_envs > 0:
        vector(args, envpool)


if __name__ == "__main__":
    main()
