"""Where the time goes, for the figures bench.py's ratios cannot explain on their own.

    python bench/breakdown.py [PART ...]     # e.g. 1 2: only those parts

1. One controller evaluation (12 FastCarRacing episodes × 300 steps in lockstep, untrained V and M, one CPU
   thread), timed by part per env step, for each precision of V's encoder (``--v-precision``): the env's step and
   reset, the 64×64 preprocessing, V's encoder (from uint8 frames), M's step, C's action mapping; the rest is
   C's matrix product, z's noise and the loop itself.
2. V's encoder per frame at batch 1 and 12 at each precision (pipeline/encoder_precision.py), and two ways not
   taken: bf16 through torch.autocast around the fp32 encoder, and int8 through torch.ao's FX static quantisation
   (x86 backend, calibrated on the same frames as ONNX Runtime's); then M's step per env step at batch 12 in fp32,
   with bf16 weights and dynamically quantised to int8 (torch.ao): whether M's step would gain from a lower
   precision too.
3. Two independent one-worker collections at the same time against one alone: what the machine itself
   allows two workers.
4. Building one M batch (100 × 999) against one training step on it.
5. Storing a collected episode (300 steps of Brownian FastCarRacing): staging it (one compressed file),
   then packing it into a shard.
6. One dream step at bench.py's batch (64 candidates × 16 starts = 1024 dreams, untrained M with LSTM 256,
   one CPU thread), timed by part: M's LSTM step, M's mixture head, z's draw (the uniforms and normals, the
   component pick and the gathers: models/mixture_sampler.py), C (its batched product and the action mapping);
   the rest is the done and reward bookkeeping and the loop itself.
"""
from __future__ import annotations

import copy
import multiprocessing as mp
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import envs  # noqa: E402
from bench import alternating, bench_precision, synthetic_latents  # noqa: E402  (bench/bench.py, beside this script)
from data import latents as latent_data  # noqa: E402
from data.store import Episode, RolloutStore, ShardInfo, read_episode  # noqa: E402
from models import MDNRNN, ConvVAE, mdnrnn  # noqa: E402
from models.controller import num_params  # noqa: E402
from models.vae import to_input  # noqa: E402
from pipeline import dream_env  # noqa: E402
from pipeline.collect import CollectJob, collect  # noqa: E402
from pipeline.encoder_precision import PRECISIONS, EncoderLayers, played_frames  # noqa: E402
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


def evaluation_parts(precision: str = "fp32", batch: int = 12, steps: int = 300) -> dict[str, float]:
    """Milliseconds per env step of each part of RealEvaluator.play, V's encoder at ``precision`` (see 1. above)."""
    torch.set_num_threads(1)
    source = envs.get("carracing")
    world = WorldModel(source, ConvVAE().eval(), MDNRNN().eval())
    player = RealEvaluator(world, steps, bench_precision(precision, world.vae, source))
    params = np.random.default_rng(0).normal(0, 0.1, (batch, num_params(world.controller_in, 3)))
    player.play(params[:1], [batch])  # warm-up
    timers = Timers()
    timers.wrap(player.lockstep, "step", "env step")  # the cars of one FastCarRacingVector, stepped together
    timers.wrap(player.lockstep, "reset", "env reset")
    timers.wrap(source, "preprocess", "crop and resize")
    timers.wrap(player, "encode", "V encoder")
    timers.wrap(world.mdnrnn, "advance", "M step")
    timers.wrap(source, "controller_action", "C action mapping")
    start = time.perf_counter()
    _, n = player.play(params, list(range(batch)))
    total = time.perf_counter() - start
    timers.restore()
    parts = {k: 1e3 * v / n for k, v in timers.spent.items()}
    parts["the rest"] = 1e3 * total / n - sum(parts.values())
    parts["total"] = 1e3 * total / n
    return parts


def fx_int8_encoder(vae: ConvVAE, frames: np.ndarray):
    """V's encoder statically quantised by torch.ao's FX workflow (x86 backend, default qconfig), calibrated on
    ``frames``: the int8 path not taken (see 2. above)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    x = to_input(torch.from_numpy(frames))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.ao's deprecation note
        prepared = prepare_fx(EncoderLayers(copy.deepcopy(vae)).eval(), get_default_qconfig_mapping("x86"), (x[:1],))
        prepared(x)
        model = convert_fx(prepared)
    return lambda f: model(to_input(torch.from_numpy(f)))


def model_precisions(batches: tuple[int, ...] = (1, 12), repeat: int = 60) -> tuple[dict, dict[str, float]]:
    """Milliseconds per frame of V's encoder at each precision and each batch size ({name: [ms per batch size]}),
    and per env step of M's step (LSTM 256) at batch 12 in fp32, bf16 and dynamic int8; one thread, each timed in
    turns (see 2. above)."""
    torch.set_num_threads(1)
    source = envs.get("carracing")
    vae, m = ConvVAE().eval(), MDNRNN().eval()
    frames = played_frames(source, 0, 1000)
    encoders = {name: bench_precision(name, vae, source).encoder(vae) for name in PRECISIONS}
    fp32 = encoders["fp32"]

    def autocast(x: np.ndarray):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fp32(x)

    encoders["bf16 (torch.autocast)"] = autocast
    encoders["int8 (torch.ao FX)"] = fx_int8_encoder(vae, frames)
    v = {name: [] for name in encoders}
    with torch.inference_mode():
        for batch in batches:
            seconds = alternating([lambda e=e, batch=batch: e(frames[:batch]) for e in encoders.values()], rounds=4,
                                  calls=max(1, repeat // 4 * 12 // batch))
            for name, t in zip(encoders, seconds):
                v[name].append(1e3 * t / batch)
    batch = 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation note
        m_int8 = torch.ao.quantization.quantize_dynamic(m, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)
    m_bf16 = MDNRNN().eval().to(torch.bfloat16)
    z, a = torch.randn(batch, 32), torch.rand(batch, 3)
    state = m.initial_state(batch)
    state_bf16 = tuple(t.to(torch.bfloat16) for t in state)
    steps = {"fp32": lambda: m.advance(z, a, state), "bf16": lambda: m_bf16.advance(z.bfloat16(), a.bfloat16(), state_bf16),
             "int8 (dynamic)": lambda: m_int8.advance(z, a, state)}
    with torch.inference_mode():
        m_times = alternating(list(steps.values()), rounds=4, calls=repeat)
    return v, {name: 1e3 * t / batch for name, t in zip(steps, m_times)}


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
        timers.wrap(mdnrnn, "draw", "z's draw")
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
    parts = {int(arg) for arg in sys.argv[1:]} or set(range(1, 7))
    if 1 in parts:
        print("1. controller evaluation, ms per env step (12 FastCarRacing episodes × 300 steps, 1 thread), by the "
              "precision of V's encoder:")
        by_precision = {name: evaluation_parts(name) for name in PRECISIONS}
        print(f"   {'':>18}  " + "  ".join(f"{name:>6}" for name in PRECISIONS))
        for part in by_precision["fp32"]:
            print(f"   {part:>18}: " + "  ".join(f"{by_precision[name].get(part, 0.0):6.3f}" for name in PRECISIONS))
    if 2 in parts:
        v, m = model_precisions()
        print("2. V's encoder, ms per frame at batch 1 / 12, 1 thread:")
        for name, ms in v.items():
            print(f"   {name:>21}: " + " / ".join(f"{t:.3f}" for t in ms) + " ("
                  + " / ".join(f"{f / t:.2f}" for f, t in zip(v["fp32"], ms)) + "× fp32)")
        print("   M's step, ms per env step at batch 12, 1 thread: "
              + ", ".join(f"{name} {ms:.4f} ({m['fp32'] / ms:.2f}×)" for name, ms in m.items()))
    if 3 in parts:
        alone, both = independent_collections()
        print(f"3. one-worker collection alone {alone:,.0f} frames/s; two at once {both:,.0f} frames/s "
              f"({both / (2 * alone):.2f} of 2 × alone)")
    if 4 in parts:
        build, step = m_batch_cost()
        print(f"4. M batch 100 × 999: building {build:.0f} ms, training step {step:.0f} ms ({100 * build / step:.1f}%)")
    if 5 in parts:
        stage, pack = storing()
        print(f"5. storing a 300-step episode: staging {stage:.1f} ms, packing {pack:.1f} ms")
    if 6 in parts:
        print("6. one dream step of 64 × 16 dreams, ms (1 thread):")
        for part, ms in dream_parts().items():
            print(f"   {part:>20}: {ms:.2f}")


if __name__ == "__main__":
    main()
