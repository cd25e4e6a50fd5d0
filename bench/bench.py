"""Throughput of every stage and data source, measured side by side in one run; prints a markdown table.

    python bench/bench.py [--workers N] [--quick] [--doc PAGE ... | --no-doc]
    python bench/bench.py --only precision      # only the rows of V's encoder at each precision; writes no page
    python bench/bench.py --only pool           # only the rows of a worker pool's start, spawned or forked; no page

The table also replaces the one between the bench markers of docs/benchmarks.md (``--doc`` names other pages,
once per page; ``--no-doc`` only prints; a ``--quick`` run writes no page unless ``--doc`` is given), so the
published figures are always those of the last full run, with the command that measured them. README.md quotes
the headline ratios from that page (tests/test_bench_table.py checks they agree).

Figures: stock CarRacing-v3 against FastCarRacing, FastCarRacingVector (8 cars in one batch) and EnvPool's C++
CarRacing-v3 (1 env, and 8 envs batched; skipped when envpool, a bench-only requirement in
requirements-bench.txt, is not installed) on the same actions; controller-evaluation env-steps/s (V, M and C
in the loop) against the bare env, and dream-steps/s (C evolved inside M) against both; collection frames/s
with 1 and N workers (scaling efficiency = rate_N / (N · rate_1)); the env-steps/s of every other data
source; V training images/s; M training steps/s at the paper's batch (100 × 999); V's encoder images/s at
batch 1, 2, 4 and 8 and controller evaluation against the bare env with N processes, for each of V's encoder
precisions (``--v-precision``, pipeline/encoder_precision.py). Under the table, one line per speed target:
FastCarRacing against EnvPool with 1 env, FastCarRacingVector against EnvPool with 8, dreams against real-env
evaluation, and evaluation against the bare env at the fastest precision.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import multiprocessing as mp
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOCS = (ROOT / "docs" / "benchmarks.md",)
NO_ENVPOOL = "envpool not installed (pip install -r requirements-bench.txt)"
os.environ.setdefault("TQDM_DISABLE", "1")

import carracing_speed  # noqa: E402  (bench/carracing_speed.py, beside this script)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from doc_table import Target, render_table, render_targets, replace_between_markers, write_between_markers  # noqa: E402  (bench/doc_table.py, beside this script)
from torch.utils.data import DataLoader  # noqa: E402

import envs  # noqa: E402
from data import latents as latent_data  # noqa: E402
from data.frames import FrameBlocks, load_frames  # noqa: E402
from data.store import Episode, RolloutStore, ShardInfo  # noqa: E402
from envs.lockstep import Lockstep  # noqa: E402
from envs.policies import BrownianPolicy  # noqa: E402
from models import MDNRNN, ConvVAE, MDNRNNConfig  # noqa: E402
from models.controller import num_params  # noqa: E402
from models.mdnrnn import MDNOutput, mixture_nll  # noqa: E402
from pipeline.collect import CollectJob, collect  # noqa: E402
from pipeline.contract.errors import UsageError  # noqa: E402
from pipeline.dream_env import DreamEvaluator  # noqa: E402
from pipeline.encoder_precision import PRECISIONS, Fp32Encoder, Precision, calibrate_int8, played_frames  # noqa: E402
from pipeline.real_eval import RealEvaluator  # noqa: E402
from pipeline.training import mdn_step, vae_step  # noqa: E402
from pipeline.world_model import WorldModel  # noqa: E402


def synthetic_latents(n: int, steps: int, rng: np.random.Generator) -> list[latent_data.LatentEpisode]:
    """``n`` CarRacing-shaped latent episodes of ``steps`` steps: random μ, log σ² = −2, uniform actions."""
    return [latent_data.LatentEpisode(i, rng.standard_normal((steps + 1, 32), dtype=np.float32),
                                      np.full((steps + 1, 32), -2.0, np.float32),
                                      rng.uniform(-1, 1, (steps, 3)).astype(np.float32),
                                      np.zeros(steps, np.float32), np.zeros(steps, bool)) for i in range(n)]


def alternating(fns: list, rounds: int, calls: int = 1) -> list[float]:
    """Seconds per call of each function, timed in turns (``calls`` calls of each per round, after one warm-up
    call each), so that a machine slowing down or speeding up during the run affects all of them alike."""
    for fn in fns:
        fn()
    total = [0.0] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            total[i] += time.perf_counter() - start
    return [t / (rounds * calls) for t in total]


def bench_collection(workers: int, episodes: int, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        job = CollectJob(env="carracing", state=None, data=tmp, seed=0, policy="brownian", max_steps=steps, shard_size=100)
        start = time.perf_counter()
        collect(job, episodes, workers)
        return episodes * steps / (time.perf_counter() - start)


def bench_episode_loop(vector: bool, episodes: int, steps: int) -> float:
    """frames/s of a collection-like loop in this process (Brownian actions, frames preprocessed to 64×64, nothing
    stored): ``episodes`` FastCarRacing episodes of ``steps`` steps played 8 side by side on FastCarRacingVector
    (``vector``), or one at a time on a single env, as stage 01's workers play them."""
    source = envs.get("carracing")
    source.vector = vector
    size = 8 if vector else 1
    lockstep = Lockstep(source, steps)
    lockstep.reset([0] * size)  # the envs made (and their kernels loaded) before the clock starts
    start = time.perf_counter()
    for first in range(0, episodes, size):
        seeds = list(range(first, min(first + size, episodes)))
        policies = [BrownianPolicy(source.action_space, np.random.default_rng(seed)) for seed in seeds]
        for obs in lockstep.reset(seeds):
            source.preprocess(obs)
        running = list(range(len(seeds)))
        while running:
            results = lockstep.step(running, [policies[k].act() for k in running])
            for obs, _, _, _ in results:
                source.preprocess(obs)
            running = [k for k, (_, _, terminated, truncated) in zip(running, results) if not (terminated or truncated)]
    rate = episodes * steps / (time.perf_counter() - start)
    lockstep.close()
    return rate


def bench_carracing_envs(episodes: int, steps: int) -> tuple[dict, dict]:
    """Whole-episode steps/s (process CPU time) of the CarRacing envs, measured as ``bench/carracing_speed.py``
    measures them: interleaved in turns of 50 steps on the same Brownian actions, frames checked equal. Returns
    ({stock, fast, envpool}: 1 env each, {vector, sync, envpool}: 8 envs in one batch); no ``envpool`` key when
    envpool is not installed."""
    speed = argparse.Namespace(episodes=episodes, steps=steps, block=50, seed=0, num_envs=8)
    with contextlib.redirect_stdout(io.StringIO()):  # its note when envpool is missing: the table says it
        envpool = carracing_speed.import_envpool(True)
    one = carracing_speed.whole_episode_rates(carracing_speed.single(speed, envpool, quiet=True))
    batch = carracing_speed.whole_episode_rates(carracing_speed.vector(speed, envpool, quiet=True))
    return one, batch


def bench_dream(pop: int, trials: int, steps: int, device: str, threads: int = 1) -> float:
    """dream-steps/s: pop × trials controllers rolled out as one batch through an untrained M (LSTM 256) and C, on
    ``threads`` CPU threads (stage 04 gives a dream the cores of its idle real-env workers)."""
    world = WorldModel(envs.get("carracing"), ConvVAE().eval(), MDNRNN().eval())
    with torch.no_grad():
        world.mdnrnn.head.bias[-1] = -10.0  # done logit: no dream ends early, every row runs all its steps
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latents.h5"
        latent_data.write(path, iter(synthetic_latents(4, steps, rng)), {"z_dim": 32})
        player = DreamEvaluator(world, path, steps, 1.15, torch.device(device), threads=threads)
        params = rng.normal(0, 0.1, (pop, world.num_params))
        player.fitness(params[:1], [0])  # warm-up
        start = time.perf_counter()
        _, n = player.fitness(params, list(range(trials)))
        return n / (time.perf_counter() - start)


def bench_source(name: str, steps: int) -> float:
    """env-steps/s of one source in one process: reset when an episode ends, frames preprocessed to 64×64."""
    source = envs.get(name)
    env = source.make(source.default_max_steps)
    policy = source.exploration_policy("random", np.random.default_rng(0))
    env.reset(seed=0)
    start = time.perf_counter()
    for i in range(steps):
        obs, _, terminated, truncated, _ = env.step(policy.act())
        source.preprocess(obs)
        if terminated or truncated:
            env.reset(seed=i)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def _eval_worker(fast: bool, models: bool, batch: int, steps: int, seeds_from: int,
                 vector: bool = True, precision: str = "fp32") -> tuple[int, float]:
    """One process's share of a side-by-side evaluation: ``batch`` episodes of at most ``steps`` steps played in
    lockstep, with V, M and C choosing the actions (``models``; FastCarRacing's episodes on its vector env, or
    with ``vector`` False on single envs; V's encoder at ``precision``, int8 calibrated before the clock starts),
    or the bare env (resets included) on Brownian actions. Returns (env steps, seconds)."""
    torch.set_num_threads(1)
    source = envs.get("carracing")
    source.vector = vector
    if not fast:
        source.env_id = "CarRacing-v3"
    seeds = list(range(seeds_from, seeds_from + batch))
    if models:
        world = WorldModel(source, ConvVAE().eval(), MDNRNN().eval())
        player = RealEvaluator(world, steps, bench_precision(precision, world.vae, source))
        params = np.random.default_rng(0).normal(0, 0.1, (batch, num_params(world.controller_in, 3)))
        player.play(params[:1], [seeds_from + batch])  # warm-up, and the envs made
        start = time.perf_counter()
        _, n = player.play(params, seeds)
        return n, time.perf_counter() - start
    made = [source.make(steps) for _ in seeds]
    policy = BrownianPolicy(made[0].action_space, np.random.default_rng(0))
    n, start = 0, time.perf_counter()
    for env, seed in zip(made, seeds):
        env.reset(seed=seed)
        policy.reset()
        while True:
            n += 1
            _, _, terminated, truncated, _ = env.step(policy.act())
            if terminated or truncated:
                break
    return n, time.perf_counter() - start


def bench_precision(name: str, vae: ConvVAE, source: envs.EnvSource) -> Precision:
    """V's encoder at precision ``name``; int8 calibrated on 256 frames of Brownian episodes of ``source``."""
    return Precision(name, calibrate_int8(vae, played_frames(source, 0, 1000)) if name == "int8" else None)


def bench_evaluation(workers: int, fast: bool, models: bool, batch: int, steps: int, vector: bool = True,
                     precision: str = "fp32") -> float:
    """env-steps/s of ``workers`` processes at once, each playing ``batch`` episodes (see _eval_worker)."""
    if workers == 1:
        n, seconds = _eval_worker(fast, models, batch, steps, 0, vector, precision)
        return n / seconds
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        jobs = [pool.submit(_eval_worker, fast, models, batch, steps, w * batch, vector, precision)
                for w in range(workers)]
        results = [j.result() for j in jobs]
    return sum(n for n, _ in results) / max(seconds for _, seconds in results)


def bench_backends(workers: int, pop: int, trials: int, steps: int) -> tuple[float, float, bool]:
    """One CMA-ES generation's evaluation (pop × trials FastCarRacing episodes, untrained V and M) with the local
    process pool and with Ray actors: (local env-steps/s, Ray env-steps/s, same fitness values). Worker start-up
    (loading V and M) is left out of both: each backend plays one generation to warm up first."""
    from pipeline.contract import checkpoint
    from pipeline.evolution import Evaluator

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        checkpoint.save(run / "vae.pt", ConvVAE().state())
        checkpoint.save(run / "mdnrnn.pt", MDNRNN().state())
        candidates = np.random.default_rng(0).normal(0, 0.1, (pop, num_params(32 + 256, 3)))
        rates, fitness = [], []
        for backend in ("local", "ray"):
            evaluator = Evaluator(run, "carracing", None, steps, workers, 600.0, backend)
            try:
                evaluator.fitness(candidates, list(range(100, 100 + trials)))
                start = time.perf_counter()
                f, n = evaluator.fitness(candidates, list(range(trials)))
                rates.append(n / (time.perf_counter() - start))
                fitness.append(f)
            finally:
                evaluator.close()
    return rates[0], rates[1], bool(np.array_equal(fitness[0], fitness[1]))


def bench_encoder(batches: tuple[int, ...], rounds: int) -> dict[str, list[float]]:
    """V's encoder images/s (uint8 frames → mu, logvar, as a step of evaluation calls it; one thread) at each batch
    size, for each precision, and for bf16 through ``torch.autocast`` around fp32's encoder (the alternative to
    bf16 weights), timed in turns on real FastCarRacing frames (an untrained V: the cost is the same)."""
    torch.set_num_threads(1)
    source = envs.get("carracing")
    vae = ConvVAE().eval()
    frames = played_frames(source, 0, 1000)
    encoders = {name: bench_precision(name, vae, source).encoder(vae) for name in PRECISIONS}
    fp32 = Fp32Encoder(vae)

    def autocast(x: np.ndarray):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fp32(x)

    encoders["bf16 through torch.autocast"] = autocast
    rates = {name: [] for name in encoders}
    with torch.inference_mode():
        for batch in batches:
            x = frames[:batch]
            calls = max(1, 64 // batch)
            seconds = alternating([lambda e=e, x=x: e(x) for e in encoders.values()], rounds=rounds, calls=calls)
            for name, t in zip(encoders, seconds):
                rates[name].append(batch / t)
    return rates


def bench_crop_resize(rounds: int) -> tuple[float, float]:
    """CarRacing's preprocessing, frames/s on one thread, timed in turns on real FastCarRacing frames: Pillow's
    bilinear resize (as ``crop_resize`` called it before) against ``envs.resample`` (what it calls now; the same
    bytes)."""
    from PIL import Image

    from envs.carracing import CROP_ROWS, FRAME, crop_resize

    env = envs.get("carracing").make(200)
    obs, _ = env.reset(seed=0)
    frames = [env.step(np.array([0.0, 0.3, 0.0], np.float32))[0] for _ in range(64)]
    env.close()

    def pillow():
        return [np.asarray(Image.fromarray(f[:CROP_ROWS]).resize((FRAME, FRAME), Image.BILINEAR)) for f in frames]

    def compiled():
        return [crop_resize(f) for f in frames]

    assert all(np.array_equal(a, b) for a, b in zip(pillow(), compiled()))
    seconds = alternating([pillow, compiled], rounds=rounds)
    return len(frames) / seconds[0], len(frames) / seconds[1]


def precision_rows(n: int, scale: int) -> tuple[list[tuple], Target]:
    """The rows of V's encoder at each precision (images/s at batch 1, 2, 4 and 8; controller evaluation on
    FastCarRacing with ``n`` processes against the bare env, each measured ``scale`` times in turns), and the
    target for the fastest."""
    batches = (1, 2, 4, 8)
    encoder = bench_encoder(batches, rounds=4 * scale)
    fp32 = encoder["fp32"]
    sizes = " / ".join(map(str, batches))
    rows = []
    for name, rates in encoder.items():
        ratio = "1.00 (baseline)" if name == "fp32" else " / ".join(f"{r / f:.2f}" for r, f in zip(rates, fp32)) + " × fp32"
        rows.append((f"V's encoder in {name}, 1 thread, batch {sizes}", " / ".join(f"{r:,.0f}" for r in rates) + " images/s",
                     ratio))
    pillow, compiled = bench_crop_resize(rounds=8 * scale)
    rows.append(("CarRacing's crop and resize to 64×64, 1 thread: Pillow's bilinear resize, one frame a call",
                 f"{pillow:,.0f} frames/s", "1.00 (baseline)"))
    rows.append(("the same bytes from envs.resample (crop_resize now)", f"{compiled:,.0f} frames/s",
                 f"{compiled / pillow:.2f} × Pillow"))
    batch, steps = 4 * scale, 100 * scale
    kinds = ["bare", *PRECISIONS]
    rates = {kind: [] for kind in kinds}
    for turn in range(scale):  # in turns, each starting with another kind: a machine's drift hits them all alike
        for kind in kinds[turn % len(kinds):] + kinds[:turn % len(kinds)]:
            models = kind != "bare"
            rates[kind].append(bench_evaluation(n, True, models, batch, steps, precision=kind if models else "fp32"))
    mean = {kind: float(np.mean(r)) for kind, r in rates.items()}
    turns = f"{scale} turn{'s' if scale > 1 else ''}"
    rows.append((f"bare FastCarRacing, {n} process(es), {batch} episodes each, resets included (mean of {turns})",
                 f"{mean['bare']:,.0f} env-steps/s", "1.00 (baseline)"))
    for name in PRECISIONS:
        rows.append((f"controller evaluation on FastCarRacing, {n} process(es), V's encoder in {name}",
                     f"{mean[name]:,.0f} env-steps/s", f"{mean[name] / mean['bare']:.2f} of bare env"))
    fastest = max(PRECISIONS, key=mean.get)
    target = Target(f"evaluation / bare env ({n} processes), V's encoder in {fastest} (the fastest precision)", 0.7,
                    mean[fastest] / mean["bare"])
    return rows, target


def pool_rows(n: int, scale: int) -> list[tuple]:
    """A local worker pool's start, in a fresh stage-like process each time (bench/pool_start.py): wall seconds
    from its creation to the first answer of each of its ``n`` workers, and the CPU seconds that cost (the
    process's, its workers' and the fork server's), with spawned workers (each imports torch, gymnasium and the
    project itself) and with workers forked from the fork server (which imported them once); medians of
    ``4 * scale`` starts of each, in turns."""
    def start(method: str) -> tuple[float, float]:
        out = subprocess.run([sys.executable, str(ROOT / "bench" / "pool_start.py"), method, str(n)], check=True,
                             capture_output=True, text=True).stdout
        wall, cpu = map(float, out.split()[-2:])
        return wall, cpu

    times = {"spawn": [], "forkserver": []}
    for turn in range(4 * scale):
        for method in (["spawn", "forkserver"] if turn % 2 == 0 else ["forkserver", "spawn"]):
            times[method].append(start(method))
    (spawn_wall, spawn_cpu), (fork_wall, fork_cpu) = (np.median(times[m], axis=0) for m in ("spawn", "forkserver"))
    what = f"a pool of {n} local workers started: to each worker's first answer (median of {4 * scale})"
    return [(f"{what}, spawned workers", f"{spawn_wall:.2f} s wall, {spawn_cpu:.2f} CPU-s", "1.00 (baseline)"),
            (f"{what}, forked from the fork server (the default)", f"{fork_wall:.2f} s wall, {fork_cpu:.2f} CPU-s",
             f"{spawn_wall / fork_wall:.2f} × less wall, {spawn_cpu / fork_cpu:.2f} × less CPU")]


def bench_vae(batch: int, batches: int) -> tuple[float, float, float]:
    """V training images/s: (stage 02's path with frames streamed from HDF5 shards through its DataLoader,
    stage 02's path with --frames-in-memory, a plain PyTorch loop over the same frames already in memory as a
    float tensor), timed in turns."""
    torch.set_num_threads(os.cpu_count())
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (batch * batches, 64, 64, 3), dtype=np.uint8)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        store = RolloutStore(tmp)
        info = ShardInfo(env="bench", spaces={}, preprocessing="synthetic")
        per_episode = len(frames) // 4
        episodes = [Episode(i, frames[i * per_episode:(i + 1) * per_episode], np.zeros((per_episode - 1, 3), np.float32),
                            np.zeros(per_episode - 1, np.float32), np.zeros(per_episode - 1, bool),
                            np.zeros(per_episode - 1, bool), i, "bench") for i in range(4)]
        store.pack([store.stage(ep, info) for ep in episodes], info)
        refs = store.index()

        vae, plain_vae = ConvVAE(), ConvVAE()
        plain_vae.load_state_dict(vae.state_dict())
        opt, plain_opt = (torch.optim.Adam(m.parameters(), lr=1e-4) for m in (vae, plain_vae))
        loader = DataLoader(FrameBlocks(refs, batch, 4, 0, 0), batch_size=None, num_workers=1, persistent_workers=True)
        data = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)  # the plain loop's tensor, ready

        def forever():
            while True:
                yield from loader

        stream, cursor = forever(), [0]
        decoded = load_frames(refs, device)
        in_memory_vae = ConvVAE()
        in_memory_vae.load_state_dict(vae.state_dict())
        in_memory_opt = torch.optim.Adam(in_memory_vae.parameters(), lr=1e-4)

        def from_memory():
            while True:
                yield from FrameBlocks(refs, batch, 4, 0, 0, frames=decoded)

        memory_stream = from_memory()

        def pipeline_step() -> None:
            vae_step(vae, opt, next(stream)[2], device)

        def in_memory_step() -> None:
            vae_step(in_memory_vae, in_memory_opt, next(memory_stream)[2], device)

        def plain_step() -> None:
            x = data[cursor[0]: cursor[0] + batch]
            cursor[0] = (cursor[0] + batch) % len(data)
            recon, mu, logvar = plain_vae(x)
            loss = (recon - x).pow(2).sum((1, 2, 3)).mean() + (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
            plain_opt.zero_grad()
            loss.backward()
            plain_opt.step()

        seconds = alternating([pipeline_step, in_memory_step, plain_step], rounds=max(1, batches // 4), calls=4)
        return tuple(batch / t for t in seconds)


def bench_mdnrnn(batch: int, seq_len: int, repeat: int) -> tuple[float, float]:
    """M training steps/s: (stage 03's mdn_step on a data.latents batch, a plain loop: nn.LSTM + linear head +
    the same mixture loss on tensors already in memory)."""
    torch.set_num_threads(os.cpu_count())
    model = MDNRNN(MDNRNNConfig())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    eps = synthetic_latents(batch, seq_len, rng)
    picks = [(i, 0) for i in range(batch)]

    def pipeline_step() -> None:
        mdn_step(model, opt, latent_data.batch(eps, picks, seq_len, rng), torch.device("cpu"), 1.0, 10.0)

    lstm, head = torch.nn.LSTM(35, 256, batch_first=True), torch.nn.Linear(256, 3 * 32 * 5 + 2)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3)
    b = latent_data.batch(eps, picks, seq_len, rng)
    x = torch.cat([b["z"], b["actions"]], -1)

    def plain_step() -> None:
        out = head(lstm(x)[0])
        mix = out[..., :480].unflatten(-1, (3, 32, 5))
        nll = mixture_nll(MDNOutput(mix[..., 0, :, :], mix[..., 1, :, :], mix[..., 2, :, :], out[..., -2], out[..., -1]),
                          b["z_next"])
        loss = nll + (out[..., -2] - b["rewards"]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*lstm.parameters(), *head.parameters()], 1.0)
        opt.step()

    pipeline, plain = alternating([pipeline_step, plain_step], rounds=repeat)
    return 1.0 / pipeline, 1.0 / plain


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="N for the multi-worker figures")
    p.add_argument("--quick", action="store_true", help="smaller samples (noisier), for a smoke run")
    p.add_argument("--doc", type=Path, action="append", help="markdown page whose bench markers receive the table; "
                                                              "repeat for more (default: docs/benchmarks.md; "
                                                              "none for a --quick run)")
    p.add_argument("--no-doc", action="store_true", help="only print the table")
    p.add_argument("--only", choices=["precision", "pool"],
                   help="measure only these rows (precision: V's encoder at each precision; pool: a worker pool's "
                        "start) and print them; writes no page")
    args = p.parse_args()
    if args.doc and args.no_doc:
        p.error("--doc and --no-doc contradict each other: pass one")
    if args.doc and args.only:
        p.error("--doc and --only contradict each other: a page's table is the full run's")
    docs = [] if args.no_doc or args.only else args.doc or ([] if args.quick else list(DOCS))
    started = time.perf_counter()
    n = args.workers
    scale = 1 if args.quick else 3
    steps = 100 * scale

    if args.only == "pool":
        rows = pool_rows(n, scale)
        print(f"{measured_by(time.perf_counter() - started, args.quick)}\n\n{render_table(rows)}")
        return
    if args.only == "precision":
        rows, target = precision_rows(n, scale)
        print(f"{measured_by(time.perf_counter() - started, args.quick)}\n\n{render_table(rows)}\n\n"
              f"{render_targets([target])}")
        return
    rows = []
    one, eight = bench_carracing_envs(1 if args.quick else 3, steps * 2)
    stock, fast, pool_1 = one["stock"], one["fast"], one.get("envpool")
    vector, pool_8 = eight["vector"], eight.get("envpool")
    how = "whole episodes, CPU time, in turns"
    rows.append((f"stock CarRacing-v3 (Gymnasium), 1 env ({how})", f"{stock:,.0f} env-steps/s", "1.00 (baseline)"))
    rows.append(("FastCarRacing (pixel-identical), 1 env, the same turns", f"{fast:,.0f} env-steps/s",
                 f"{fast / stock:.2f} × stock"))
    if pool_1 is None:
        rows.append(("EnvPool CarRacing-v3", "skipped", NO_ENVPOOL))
    else:
        rows.append(("EnvPool CarRacing-v3 (C++), 1 env, 1 thread, the same turns", f"{pool_1:,.0f} env-steps/s",
                     f"{pool_1 / stock:.2f} × stock"))
    rows.append((f"SyncVectorEnv over 8 FastCarRacing envs ({how})", f"{eight['sync']:,.0f} env-steps/s",
                 "1.00 (baseline)"))
    against_pool = "" if pool_8 is None else f", {vector / pool_8:.2f} × EnvPool 8 envs"
    rows.append(("FastCarRacingVector (pixel-identical), 8 cars batched, the same turns", f"{vector:,.0f} env-steps/s",
                 f"{vector / eight['sync']:.2f} × SyncVectorEnv{against_pool}"))
    if pool_8 is not None:
        rows.append(("EnvPool CarRacing-v3 (C++), 8 envs batched, 1 thread, the same turns", f"{pool_8:,.0f} env-steps/s",
                     f"{pool_8 / eight['sync']:.2f} × SyncVectorEnv"))
    batch = 4 * scale
    for fast_env, label in ((False, "stock CarRacing-v3"), (True, "FastCarRacing")):
        for workers in sorted({1, n}):
            bare = bench_evaluation(workers, fast_env, False, batch, steps)
            ctrl = bench_evaluation(workers, fast_env, True, batch, steps)
            rows.append((f"bare {label}, {workers} process(es), {batch} episodes each, resets included",
                         f"{bare:,.0f} env-steps/s", "1.00 (baseline)"))
            rows.append((f"controller evaluation (V+M+C in lockstep) on {label}, {workers} process(es)",
                         f"{ctrl:,.0f} env-steps/s", f"{ctrl / bare:.2f} of bare env"))
    single = bench_evaluation(1, True, True, 8 * scale // 3, steps, vector=False)
    vectored = bench_evaluation(1, True, True, 8 * scale // 3, steps)
    rows.append(("controller evaluation on FastCarRacing, 1 process, 8 episodes on single envs",
                 f"{single:,.0f} env-steps/s", "1.00 (baseline)"))
    rows.append(("the same on FastCarRacingVector (stage 04's lockstep)", f"{vectored:,.0f} env-steps/s",
                 f"{vectored / single:.2f} × single envs"))
    more, precision_target = precision_rows(n, scale)
    rows += more
    trials = 16 if not args.quick else 2
    dream_1 = bench_dream(pop=64, trials=trials, steps=steps, device="cpu")
    dream = bench_dream(pop=64, trials=trials, steps=steps, device="cpu", threads=n)
    rows.append(("controller evaluation in M's dream (64 × 16 batch), 1 CPU thread", f"{dream_1:,.0f} dream-steps/s",
                 f"{dream_1 / ctrl:.0f} × real-env evaluation ({n} processes)"))
    rows.append((f"the same dream on {n} CPU threads (the cores of the {n} processes)", f"{dream:,.0f} dream-steps/s",
                 f"{dream / ctrl:.0f} × real-env evaluation ({n} processes)"))
    if torch.cuda.is_available():
        gpu = bench_dream(pop=64, trials=16, steps=steps, device="cuda")
        rows.append(("controller evaluation in M's dream, CUDA", f"{gpu:,.0f} dream-steps/s", f"{gpu / ctrl:.0f} × real env"))
    # Long enough (24 episodes per worker) that starting the worker processes is a small part of the time.
    c1 = bench_collection(1, 8 * scale, steps)
    cn = bench_collection(n, 8 * scale * n, steps)
    one_by_one, side_by_side = bench_episode_loop(False, 8 * scale, steps), bench_episode_loop(True, 8 * scale, steps)
    rows.append(("collection-like loop, 1 process, one FastCarRacing episode at a time (as stage 01 plays)",
                 f"{one_by_one:,.0f} frames/s", "1.00 (baseline)"))
    rows.append(("the same loop, 8 episodes side by side on FastCarRacingVector", f"{side_by_side:,.0f} frames/s",
                 f"{side_by_side / one_by_one:.2f} × one at a time"))
    rows.append(("collection (FastCarRacing), 1 worker", f"{c1:,.0f} frames/s", "1.00 (baseline)"))
    rows.append((f"collection (FastCarRacing), {n} workers", f"{cn:,.0f} frames/s", f"{cn / (n * c1):.2f} of {n} × 1-worker"))
    try:
        local, on_ray, same = bench_backends(n, pop=4 * n, trials=2, steps=steps)
        rows.append((f"one CMA-ES generation ({4 * n} × 2 episodes), local backend, {n} workers", f"{local:,.0f} env-steps/s",
                     "1.00 (baseline)"))
        rows.append((f"the same generation, --backend ray (local Ray, {n} CPUs)", f"{on_ray:,.0f} env-steps/s",
                     f"{on_ray / local:.2f} × local; fitness {'identical' if same else 'DIFFERENT'}"))
    except UsageError as e:  # Ray not installed
        rows.append(("--backend ray", "unavailable", str(e)[:60]))
    for name, n_steps in (("shapeherd", 3000), ("airstriker", 2000), ("dmc:walker-walk", 300)):
        try:
            rate = bench_source(name, n_steps * scale // 3)
        except envs.EnvUnavailable as e:
            rows.append((f"{name} env (random actions), 1 process", "unavailable", str(e)[:60]))
            continue
        rows.append((f"{name} env (random actions, 64×64 frames), 1 process", f"{rate:,.0f} env-steps/s",
                     f"{rate / fast:.1f} × FastCarRacing"))
    vae, vae_memory, vae_plain = bench_vae(100, 12 * scale)
    rows.append(("V training, batch 100, plain PyTorch loop (frames in memory), CPU", f"{vae_plain:,.0f} images/s",
                 "1.00 (baseline)"))
    rows.append(("V training, batch 100, stage 02 (streamed from HDF5), CPU", f"{vae:,.0f} images/s",
                 f"{vae / vae_plain:.2f} × plain loop"))
    rows.append(("V training, batch 100, stage 02 with --frames-in-memory, CPU", f"{vae_memory:,.0f} images/s",
                 f"{vae_memory / vae_plain:.2f} × plain loop"))
    shape = (100, 999) if not args.quick else (20, 200)
    mdn, mdn_plain = bench_mdnrnn(*shape, scale)
    rows.append((f"M training (LSTM 256), batch {shape[0]} × {shape[1]}, plain PyTorch loop, CPU", f"{mdn_plain:.3f} steps/s",
                 "1.00 (baseline)"))
    rows.append((f"M training (LSTM 256), batch {shape[0]} × {shape[1]}, stage 03's step, CPU", f"{mdn:.3f} steps/s",
                 f"{mdn / mdn_plain:.2f} × plain loop"))

    targets = [
        Target("FastCarRacing / EnvPool CarRacing-v3, 1 env", 1.0, None if pool_1 is None else fast / pool_1,
               NO_ENVPOOL if pool_1 is None else ""),
        Target("FastCarRacingVector / EnvPool CarRacing-v3, 8 envs batched", 1.0,
               None if pool_8 is None else vector / pool_8, NO_ENVPOOL if pool_8 is None else ""),
        Target(f"dream on {n} threads / real-env evaluation (FastCarRacing, {n} processes)", 100.0, dream / ctrl),
        precision_target,
    ]
    report = (f"{measured_by(time.perf_counter() - started, args.quick)}\n\n{render_table(rows)}\n\n"
              f"{render_targets(targets)}")
    print(report)
    for doc in docs:  # every page checked before any is written: all or none receive the table
        replace_between_markers(doc.read_text(encoding="utf-8"), report, str(doc))
    for doc in docs:
        write_between_markers(doc, report)
        print(f"written between the bench markers of {doc}")


def measured_by(seconds: float, quick: bool) -> str:
    """The line above the table: the command that measured it, how long it took, and on what."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    minutes, secs = divmod(round(seconds), 60)
    command = " ".join(["python bench/bench.py", *map(shlex.quote, sys.argv[1:])])
    return (f"Measured by `{command}` in {minutes} min {secs} s{' (--quick: small, noisy samples)' if quick else ''}. "
            f"Machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {gpu}, "
            f"{datetime.date.today().isoformat()}.")


if __name__ == "__main__":
    main()
