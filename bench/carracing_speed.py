"""Stock CarRacing-v3 vs envs.carracing.FastCarRacing vs EnvPool: steps/s side by side, in one process, on one core.

    python bench/carracing_speed.py [--episodes 2] [--steps 600] [--block 50] [--cpu 0] [--no-envpool]

Stock and fast play the same episodes (same seeds, same Brownian actions from the pipeline's exploration
policy), so they are in the same state at every step; their frames are checked equal as they go (outside the
timers). EnvPool's C++ CarRacing-v3 (1 env, 1 thread; ``requirements-bench.txt``, skipped when not installed)
plays the same actions from resets at the same steps, on its own tracks. To keep a noisy shared machine from
favouring any of them, the episode is cut into blocks of ``--block`` steps and the envs take turns on each block,
in an order that rotates from block to block. Each env is reset once before any timing (FastCarRacing's first
reset loads its compiled kernels). Reported: steps/s of each and the ratios, from wall time and from
process CPU time (which counts EnvPool's worker thread too), for the first second of each episode (the zoom-in,
50 steps), the rest, and whole episodes (resets included); then FastCarRacing/EnvPool against the 1.0× target.
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

import numpy as np  # noqa: E402
from gymnasium.envs.box2d.car_racing import CarRacing as StockCarRacing  # noqa: E402

from envs.fast_carracing import FastCarRacing  # noqa: E402
from envs.policies import BrownianPolicy  # noqa: E402

ZOOM_STEPS = 50  # the first second (t < 1) zooms in: far more, smaller polygons on screen
TARGET = 1.0  # FastCarRacing / EnvPool, 1 env, 1 thread


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


def make_envs(use_envpool: bool, seed: int) -> dict:
    envs = {"stock": StockCarRacing(), "fast": FastCarRacing()}
    if use_envpool:
        try:
            import envpool
        except ImportError:
            print("envpool is not installed (requirements-bench.txt): EnvPool rows skipped")
        else:
            envs["envpool"] = EnvPoolOne(envpool, seed)
    return envs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--steps", type=int, default=600, help="steps per episode")
    p.add_argument("--block", type=int, default=50, help="steps per timed turn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    p.add_argument("--no-envpool", action="store_true", help="time stock and fast only")
    args = p.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    envs = make_envs(not args.no_envpool, args.seed)
    names = list(envs)
    for name, env in envs.items():  # untimed: loads FastCarRacing's compiled kernels (numba's on-disk cache)
        _, wall, _ = timed(env.reset, seed=args.seed)
        if name == "fast":
            print(f"FastCarRacing's first reset (kernels loaded or compiled): {wall:.2f} s")
    clocks = {name: Clock() for name in names}
    turn = 0
    for episode in range(args.episodes):
        seed = args.seed + episode
        policy = BrownianPolicy(envs["stock"].action_space, np.random.default_rng(seed))
        actions = [policy.act() for _ in range(args.steps)]
        obs = {}
        for k in range(len(names)):
            name = names[(episode + k) % len(names)]
            (obs[name], _), w, c = timed(envs[name].reset, seed=seed)
            clocks[name].add("reset", w, c, 1)
        assert np.array_equal(obs["stock"], obs["fast"]), f"episode {episode}: reset frames differ"
        cuts = sorted({*range(0, args.steps, args.block), min(ZOOM_STEPS, args.steps), args.steps})
        for lo, hi in zip(cuts, cuts[1:]):
            phase = "zoom-in" if lo < ZOOM_STEPS else "driving"
            outs = {}
            for k in range(len(names)):
                name = names[(turn + k) % len(names)]
                outs[name], w, c = timed(play, envs[name], actions[lo:hi])
                clocks[name].add(phase, w, c, hi - lo)
            turn += 1
            for a, b in zip(outs["stock"], outs["fast"]):
                assert np.array_equal(a[0], b[0]) and a[1:] == b[1:], f"episode {episode}: frames differ"
            if any(out[2] or out[3] for out in outs["stock"]):
                break

    print(f"CarRacing-v3 steps/s, {args.episodes} episode(s) × ≤{args.steps} steps, turns of {args.block} steps,"
          f" pid {os.getpid()}, affinity {sorted(os.sched_getaffinity(0))}")
    cols = "".join(f"{n + '/s':>10}" for n in names) + f"{'fast/stock':>11}" + (
        f"{'fast/envpool':>13}" if "envpool" in names else "")
    print(f"{'phase':<22}{'steps':>7}  {'clock':<6}{cols}")
    rows = [("zoom-in (first 50)", ["zoom-in"]), ("driving (after 50)", ["driving"]),
            ("whole episodes+reset", ["reset", "zoom-in", "driving"])]
    summary = None
    for label, keys in rows:
        steps = sum(clocks["stock"].steps.get(k, 0) for k in keys if k != "reset")
        if steps == 0:
            continue
        for kind in ("wall", "cpu"):
            rate = {n: steps / sum(getattr(clocks[n], kind).get(k, 0.0) for k in keys) for n in names}
            line = f"{label if kind == 'wall' else '':<22}{steps if kind == 'wall' else '':>7}  {kind:<6}"
            line += "".join(f"{rate[n]:>10.0f}" for n in names) + f"{rate['fast'] / rate['stock']:>10.2f}×"
            if "envpool" in names:
                line += f"{rate['fast'] / rate['envpool']:>12.2f}×"
                if label.startswith("whole") and kind == "cpu":
                    summary = rate["fast"] / rate["envpool"]
            print(line)
    if summary is not None:
        verdict = "met" if summary >= TARGET else "not met"
        print(f"FastCarRacing / EnvPool (1 env, 1 thread), whole episodes, CPU time: {summary:.2f}× "
              f"(target ≥ {TARGET:.1f}×: {verdict})")


if __name__ == "__main__":
    main()
