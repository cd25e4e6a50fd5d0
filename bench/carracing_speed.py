"""Stock CarRacing-v3 vs envs.carracing.FastCarRacing: steps/s side by side, in one process, on one core.

    python bench/carracing_speed.py [--episodes 2] [--steps 600] [--block 50] [--cpu 0]

Both envs play the same episodes (same seeds, same Brownian actions from the pipeline's exploration policy), so
they are in the same state at every step; the frames are checked equal as they go (outside the timers). To keep
a noisy shared machine from favouring either, the episode is cut into blocks of ``--block`` steps and the two envs
take turns (stock-fast, then fast-stock, ...) on each block. Reported: steps/s of each and their ratio, from wall
time and from process CPU time, for the first second of each episode (the zoom-in, 50 steps), the rest, and
whole episodes (resets included).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--steps", type=int, default=600, help="steps per episode")
    p.add_argument("--block", type=int, default=50, help="steps per timed turn")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="pin the process to this core")
    args = p.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    envs = {"stock": StockCarRacing(), "fast": FastCarRacing()}
    clocks = {name: Clock() for name in envs}
    turn = 0
    for episode in range(args.episodes):
        seed = args.seed + episode
        policy = BrownianPolicy(envs["stock"].action_space, np.random.default_rng(seed))
        actions = [policy.act() for _ in range(args.steps)]
        obs = {}
        for name in (("stock", "fast") if episode % 2 == 0 else ("fast", "stock")):
            (obs[name], _), w, c = timed(envs[name].reset, seed=seed)
            clocks[name].add("reset", w, c, 1)
        assert np.array_equal(obs["stock"], obs["fast"]), f"episode {episode}: reset frames differ"
        cuts = sorted({*range(0, args.steps, args.block), min(ZOOM_STEPS, args.steps), args.steps})
        for lo, hi in zip(cuts, cuts[1:]):
            phase = "zoom-in" if lo < ZOOM_STEPS else "driving"
            outs = {}
            for name in ("stock", "fast") if turn % 2 == 0 else ("fast", "stock"):
                outs[name], w, c = timed(play, envs[name], actions[lo:hi])
                clocks[name].add(phase, w, c, hi - lo)
            turn += 1
            for a, b in zip(outs["stock"], outs["fast"]):
                assert np.array_equal(a[0], b[0]) and a[1:] == b[1:], f"episode {episode}: frames differ"
            if any(out[2] or out[3] for out in outs["stock"]):
                break

    print(f"CarRacing-v3 steps/s, {args.episodes} episode(s) × ≤{args.steps} steps, turns of {args.block} steps,"
          f" pid {os.getpid()}, affinity {sorted(os.sched_getaffinity(0))}")
    print(f"{'phase':<22}{'steps':>7}  {'stock/s':>9}{'fast/s':>9}{'ratio':>7}   {'stock/s':>9}{'fast/s':>9}{'ratio':>7}")
    print(f"{'':<22}{'':>7}  {'--- wall time ---':>25}   {'--- CPU time ---':>25}")
    rows = [("zoom-in (first 50)", ["zoom-in"]), ("driving (after 50)", ["driving"]),
            ("whole episodes+reset", ["reset", "zoom-in", "driving"])]
    for label, keys in rows:
        steps = sum(clocks["stock"].steps.get(k, 0) for k in keys if k != "reset")
        if steps == 0:
            continue
        line = f"{label:<22}{steps:>7}  "
        for kind in ("wall", "cpu"):
            rate = {n: steps / sum(getattr(clocks[n], kind).get(k, 0.0) for k in keys) for n in clocks}
            line += f"{rate['stock']:>9.0f}{rate['fast']:>9.0f}{rate['fast'] / rate['stock']:>6.2f}×   "
        print(line.rstrip())


if __name__ == "__main__":
    main()
