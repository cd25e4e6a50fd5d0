"""Where the time goes, for the figures bench.py's ratios cannot explain on their own.

    python bench/breakdown.py

1. One controller evaluation (12 FastCarRacing episodes × 300 steps in lockstep, untrained V and M, one CPU
   thread), timed by part per env step: the env's step and reset, the 64×64 preprocessing, V's encoder, M's
   step, C's action mapping; the rest is C's matrix product, z's noise and the loop itself.
2. V's encoder per frame at batch 12, fp32 against bf16 (not used by the pipeline: results would then depend
   on the CPU's bf16 support).
3. Two independent one-worker collections at the same time against one alone: what the machine itself
   allows two workers.
4. Building one M batch (100 × 999) against one training step on it.
5. Storing a collected episode (300 steps of Brownian FastCarRacing): staging it (one compressed file),
   then packing it into a shard.
6. One dream step at bench.py's batch (64 candidates × 16 starts = 1024 dreams, untrained M with LSTM 256,
   one CPU thread), timed by part: M's LSTM step, M's mixture head, the component draw (exponential draws and
   the argmax), C (its batched product and the action mapping); the rest is z's Gaussian noise, the gathers,
   the done and reward bookkeeping and the loop itself.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import envs  # noqa: E402
from bench import synthetic_latents  # noqa: E402  (bench/bench.py, beside this script)
from data import latents as latent_data  # noqa: E402
from data.store import Episode, RolloutStore, ShardInfo, read_episode  # noqa: E402
from models import MDNRNN, ConvVAE, mdnrnn  # noqa: E402
from models.controller import num_params  # noqa: E402
from pipeline import dream_env  # noqa: E402
from pipeline.collect import CollectJob, collect  # noqa: E402
from pipeline.real_eval import RealEvaluator  # noqa: E402
from pipeline.training import mdn_step  # noqa: E402
from pipeline.world_model import WorldModel  # noqa: E402


class Timers:
    """Seconds spent in wrapped callables, by part; ``restore`` puts every wrapped attribute back."""

    def __init__(self):
        self.spent: dict[str, float] = {}
        self._wrapped: list[tuple[object, str, object]] = []

    def wrap(self, obj, name: str, part: str) -> None:
        inner = getattr(obj, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            self.spent[part] = self.spent.get(part, 0.0) + time.perf_counter() - start
            return out

        self._wrapped.append((obj, name, inner))
        setattr(obj, name, wrapper)

    def restore(self) -> None:
        for obj, name, inner in reversed(self._wrapped):
            setattr(obj, name, inner)


def evaluation_parts(batch: int = 12, steps: int = 300) -> dict[str, float]:
    """Milliseconds per env step of each part of RealEvaluator.play (see 1. above)."""
    torch.set_num_threads(1)
    source = envs.get("carracing")
    world = WorldModel(source, ConvVAE().eval(), MDNRNN().eval())
    player = RealEvaluator(world, steps)
    params = np.random.default_rng(0).normal(0, 0.1, (batch, num_params(world.controller_in, 3)))
    player.play(params[:1], [batch])  # warm-up
    timers = Timers()
    timers.wrap(player.lockstep, "step", "env step")  # the cars of one FastCarRacingVector, stepped together
    timers.wrap(player.lockstep, "reset", "env reset")
    timers.wrap(source, "preprocess", "crop and resize")
    timers.wrap(world.vae, "encode", "V encoder")
    timers.wrap(world.mdnrnn, "step", "M step")
    timers.wrap(source, "controller_action", "C action mapping")
    start = time.perf_counter()
    _, n = player.play(params, list(range(batch)))
    total = time.perf_counter() - start
    timers.restore()
    parts = {k: 1e3 * v / n for k, v in timers.spent.items()}
    parts["the rest"] = 1e3 * total / n - sum(parts.values())
    parts["total"] = 1e3 * total / n
    return parts


def encoder_precision(batch: int = 12, repeat: int = 60) -> tuple[float, float]:
    """Milliseconds per frame of V's encoder, fp32 and bf16, one thread (see 2. above)."""
    torch.set_num_threads(1)
    vae = ConvVAE().eval()
    bf16 = ConvVAE().eval().to(torch.bfloat16)
    x = torch.rand(batch, 3, 64, 64)
    out = []
    with torch.inference_mode():
        for model, inp in ((vae, x), (bf16, x.to(torch.bfloat16))):
            model.encode(inp)
            start = time.perf_counter()
            for _ in range(repeat):
                model.encode(inp)
            out.append(1e3 * (time.perf_counter() - start) / (repeat * batch))
    return out[0], out[1]


def one_collection(episodes: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        job = CollectJob(env="carracing", state=None, data=tmp, seed=0, policy="brownian", max_steps=steps,
                         shard_size=100)
        start = time.perf_counter()
        collect(job, episodes, 1, progress=False)
        return episodes * steps / (time.perf_counter() - start)


def independent_collections(episodes: int = 16, steps: int = 300) -> tuple[float, float]:
    """frames/s of one one-worker collection alone, and the sum of two run at once (see 3. above)."""
    alone = one_collection(episodes, steps)
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        both = [f.result() for f in [pool.submit(one_collection, episodes, steps) for _ in range(2)]]
    return alone, sum(both)


def m_batch_cost(batch: int = 100, seq_len: int = 999, repeat: int = 3) -> tuple[float, float]:
    """Milliseconds to build one M batch, and for one training step on it (see 4. above)."""
    torch.set_num_threads(os.cpu_count())
    rng = np.random.default_rng(0)
    eps = synthetic_latents(batch, seq_len, rng)
    picks = [(i, 0) for i in range(batch)]
    model = MDNRNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    build = step = 0.0
    for _ in range(repeat + 1):  # the first round warms up
        start = time.perf_counter()
        b = latent_data.batch(eps, picks, seq_len, rng)
        built = time.perf_counter()
        mdn_step(model, opt, b, torch.device("cpu"), 1.0, 10.0)
        if _:
            build, step = build + built - start, step + time.perf_counter() - built
    return 1e3 * build / repeat, 1e3 * step / repeat


def storing(episodes: int = 10, steps: int = 300) -> tuple[float, float]:
    """Milliseconds per episode to stage and to pack (see 5. above)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "played"
        job = CollectJob(env="carracing", state=None, data=str(data), seed=0, policy="brownian", max_steps=steps,
                         shard_size=100)
        collect(job, 1, 1, progress=False)
        played = read_episode(RolloutStore(data).index()[0])
        store, info = RolloutStore(Path(tmp) / "timed"), ShardInfo(env="carracing", spaces={}, preprocessing="")
        start = time.perf_counter()
        staged = [store.stage(Episode(**{**vars(played), "id": i}), info) for i in range(episodes)]
        staging = time.perf_counter()
        store.pack(staged, info)
        return 1e3 * (staging - start) / episodes, 1e3 * (time.perf_counter() - staging) / episodes


def dream_parts(pop: int = 64, trials: int = 16, steps: int = 100) -> dict[str, float]:
    """Milliseconds per dream step (all pop × trials dreams advancing one step) of each part (see 6. above)."""
    torch.set_num_threads(1)
    world = WorldModel(envs.get("carracing"), ConvVAE().eval(), MDNRNN().eval())
    with torch.no_grad():
        world.mdnrnn.head.bias[-1] = -10.0  # no dream ends early
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latents.h5"
        latent_data.write(path, iter(synthetic_latents(4, steps, rng)), {"z_dim": 32})
        player = dream_env.DreamEvaluator(world, path, steps, 1.15, torch.device("cpu"))
        params = rng.normal(0, 0.1, (pop, world.num_params))
        player.fitness(params[:1], [0])  # warm-up
        timers = Timers()
        timers.wrap(player.m.core, "step", "M's LSTM step")
        timers.wrap(player.m.head, "forward", "M's mixture head")
        timers.wrap(mdnrnn, "components", "component draw")
        timers.wrap(dream_env, "batched", "C's batched product")
        timers.wrap(dream_env, "controller_actions", "C's action mapping")
        start = time.perf_counter()
        _, n = player.fitness(params, list(range(trials)))
        total = time.perf_counter() - start
        timers.restore()
    batch_steps = n / (pop * trials)
    parts = {k: 1e3 * v / batch_steps for k, v in timers.spent.items()}
    parts["the rest"] = 1e3 * total / batch_steps - sum(parts.values())
    parts["total"] = 1e3 * total / batch_steps
    return parts


def main() -> None:
    print("1. controller evaluation, ms per env step (12 FastCarRacing episodes × 300 steps, 1 thread):")
    for part, ms in evaluation_parts().items():
        print(f"   {part:>18}: {ms:.3f}")
    fp32, bf16 = encoder_precision()
    print(f"2. V's encoder, ms per frame at batch 12, 1 thread: fp32 {fp32:.3f}, bf16 {bf16:.3f} ({fp32 / bf16:.2f}×)")
    alone, both = independent_collections()
    print(f"3. one-worker collection alone {alone:,.0f} frames/s; two at once {both:,.0f} frames/s "
          f"({both / (2 * alone):.2f} of 2 × alone)")
    build, step = m_batch_cost()
    print(f"4. M batch 100 × 999: building {build:.0f} ms, training step {step:.0f} ms ({100 * build / step:.1f}%)")
    stage, pack = storing()
    print(f"5. storing a 300-step episode: staging {stage:.1f} ms, packing {pack:.1f} ms")
    print("6. one dream step of 64 × 16 dreams, ms (1 thread):")
    for part, ms in dream_parts().items():
        print(f"   {part:>20}: {ms:.2f}")


if __name__ == "__main__":
    main()
