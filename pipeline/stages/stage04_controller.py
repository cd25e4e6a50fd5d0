"""Stage 04: evolve C, the linear controller on [z, h], with CMA-ES in the real environment or in M's dream.

    python 04_train_controller.py --env carracing --pop 64 --trials 16 --workers 64
    python 04_train_controller.py --env carracing --in dream --temperature 1.15 --real-every 25
    python 04_train_controller.py --env carracing --evaluate 100      # mean ± std over 100 fresh episodes

Every generation logs best/mean/worst fitness and sigma to metrics/controller.csv and saves the ES
state (<run>/es_state.pkl): re-running resumes after the last completed generation. An evaluation worker
that dies, or hangs past --task-timeout, is replaced and its tasks are played again (same results). Every
--eval-every generations (and at the last) the CMA mean is scored on --eval-episodes real episodes; the
best-scoring mean becomes <run>/controller.pt, the controller --evaluate and later stages use.

With --in dream the fitness is the mean return in M's dream (pipeline/dream_env.py): population × trials play as
one batch through M and C on --device, rewards from M's reward head, an episode ends when M's done
probability passes 0.5, each trial starts from a real frame. Every --real-every generations the generation's
best candidate and the CMA mean are also scored in the real env (and the mean in the dream), so the
dream–reality gap shows in metrics/controller.csv and plots/controller_dream_vs_real.png.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import ppo
from pipeline.compute import device as devices
from pipeline.compute import pool
from pipeline.contract import checkpoint, cli, evaluations, lock
from pipeline.contract.cli import (
    Parser,
    add_backend_flags,
    check_backend_flags,
    nonneg_float,
    only_with,
    parse_stage_args,
    positive_float,
    positive_int,
    stage_parser,
)
from pipeline.contract.errors import RunFailed, UsageError
from pipeline.contract.runconfig import atomic_write_text, check_resume, latents_path, load_config, save_stage_config
from pipeline.contract.seeding import Purpose, episode_seeds
from pipeline.dream_env import DreamEvaluator
from pipeline.encoder_precision import PRECISIONS, prepare
from pipeline.evolution import MIN_POP, ESState, Evaluator, Scoring
from pipeline.reporting import live, plots, progress
from pipeline.reporting.metrics import CsvLog
from pipeline.world_model import WorldModel

# One header for both modes, so a run can switch between them and resume. best/mean/worst: fitness where C
# trains (M's dream on rows with dream_steps > 0, else the real env); eval_mean/eval_std: the CMA mean in the
# real env; dream_eval_mean: the CMA mean in the dream; real_best: the generation's best candidate in
# the real env (the last two in dream mode only).
# What may differ when a run resumes: how long, where and how it is watched, and where candidates are scored
# (a run may switch between the env and the dream), how many episodes score a candidate (more trials late cut
# the ranking noise) and how the CMA mean is scored for selection; not the ES itself. (--init-from only starts an
# evolution: a resume is refused with it, and takes the ES state as saved.)
MAY_CHANGE = {"generations", "timesteps", "trials", "workers", "backend", "address", "task_timeout", "eval_every",
              "eval_episodes", "evaluate", "reselect", "train_in", "temperature", "real_every", "warmup", "device", "log",
              "reward_penalty", "v_precision", "init_from"}
FIELDS = ["generation", "best", "mean", "worst", "sigma", "eval_mean", "eval_std", "dream_eval_mean", "real_best",
          "env_steps", "dream_steps", "seconds"]


def parser() -> Parser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--algo", choices=["cmaes", "ppo"],
                   help="how C learns: CMA-ES on a linear C (the paper's), or PPO from Stable-Baselines3 on the same "
                        "[z, h] (pipeline/ppo.py); default: the run's, else cmaes")
    p.add_argument("--timesteps", type=positive_int, default=1_000_000, help="PPO: env steps to train for in total")
    p.add_argument("--n-steps", type=positive_int, default=1024, help="PPO: steps of each env per iteration")
    p.add_argument("--pop", type=cli.episodes, default=64, help="CMA-ES population size")
    p.add_argument("--trials", type=cli.episodes, default=16, help="episodes per candidate; fitness = mean return")
    p.add_argument("--sigma", type=positive_float, default=0.1, help="initial CMA-ES step size")
    p.add_argument("--init-from", type=Path, metavar="CONTROLLER",
                   help="start CMA-ES's mean at this controller.pt's parameters, evolved on this run's V and M (a "
                        "fine-tuning of a trained C), instead of at 0; only when the run has no ES state yet")
    p.add_argument("--generations", type=positive_int, default=1800, help="generations to evolve in total")
    p.add_argument("--steps", type=cli.steps, help="cap on an episode's length (default: the env's)")
    p.add_argument("--workers", type=cli.workers, default=os.cpu_count(),
                   help="evaluation processes (with --in dream, also the dream's CPU threads, at most the cores)")
    p.add_argument("--patience", type=cli.nonneg_int_up_to(cli.MAX_STEPS), default=0,
                   help="real-env training only: stop a candidate's episode after this many steps in a row without a "
                        "positive reward, charging each step it had left the reward of its last step (0: play every "
                        "episode out); periodic scorings and --evaluate always play full episodes")
    p.add_argument("--eval-every", type=positive_int, default=25, help="generations between scorings of the CMA mean")
    p.add_argument("--eval-episodes", type=cli.episodes, default=1024, help="episodes per scoring of the CMA mean")
    p.add_argument("--block", type=cli.nonneg_int_up_to(cli.MAX_EPISODES), default=0,
                   help="--evaluate: which block of the evaluation seeds to play (block b: N seeds of its own). A "
                        "block scored once and then decided on has become a selection block")
    p.add_argument("--publish", action="store_true",
                   help="--evaluate N (N ≥ 100): the published score, over 3 blocks this run never scored before, "
                        "for the final controller only; every decision before it uses selection seeds")
    p.add_argument("--evaluate", type=cli.nonneg_int_up_to(cli.MAX_EPISODES), default=0, metavar="N",
                   help="only score the saved controller on N fresh episodes (fixed seeds) and print mean ± std")
    p.add_argument("--reselect", type=cli.nonneg_int_up_to(cli.MAX_EPISODES), default=0, metavar="N",
                   help="only choose the kept controller again: score the best-scoring CMA means the ES state "
                        "archived and its current mean on N fresh selection episodes each (never --evaluate's), "
                        "and keep the best")
    p.add_argument("--in", dest="train_in", choices=["env", "dream"], default="env",
                   help="where candidates are scored: the real env, or M's dream (fitness from M's reward head)")
    p.add_argument("--temperature", type=positive_float, default=1.15,
                   help="dream mode: M's sampling temperature τ (mixture logits / τ, noise × √τ)")
    p.add_argument("--real-every", type=positive_int,
                   help="dream mode: generations between real-env scorings of the best candidate and the CMA mean "
                        "(default: --eval-every)")
    p.add_argument("--reward-penalty", type=nonneg_float, default=0.0,
                   help="dream mode: the dream pays M's mean reward less this times the spread of its reward heads "
                        "(an M trained with several reward heads, stage 03): a conservative reward where M is unsure")
    p.add_argument("--warmup", type=cli.nonneg_int_up_to(cli.MAX_STEPS), default=0,
                   help="dream mode: real steps M reads before each dream starts (0: M starts from its initial state)")
    p.add_argument("--device", choices=devices.CHOICES, default="auto",
                   help="dream mode: where M and C run (auto: CUDA when present)")
    p.add_argument("--v-precision", choices=PRECISIONS, default="fp32", metavar="P",
                   help="V's encoder wherever C plays the real env (fitness, scorings, --evaluate): fp32 (V as "
                        "trained), bf16, or int8 (ONNX Runtime, calibrated on the run's frames, cached in "
                        "<run>/vae_int8.onnx): faster, z slightly changed (pipeline/encoder_precision.py, "
                        "docs/benchmarks.md)")
    add_backend_flags(p)
    live.add_flag(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = parse_stage_args(p, "controller", argv)
    check_backend_flags(p, args)
    if args.evaluate and args.reselect:
        p.error("argument --reselect: choose the controller first, then --evaluate it, in two runs")
    if args.pop < MIN_POP:
        p.error(f"argument --pop: CMA-ES needs a population of at least {MIN_POP} (pycma's smallest); pass --pop "
                f"{MIN_POP} or more")
    only_with(p, args, ["--block", "--publish"], bool(args.evaluate), "with --evaluate N")
    if args.publish and args.block:
        p.error("argument --block: --publish chooses fresh blocks itself; drop --block")
    if args.publish and args.evaluate < evaluations.PUBLISHED_MIN_EPISODES:
        p.error(f"argument --evaluate: a published score needs at least {evaluations.PUBLISHED_MIN_EPISODES} episodes "
                "a block")
    if args.evaluate and args.train_in == "dream":
        p.error("argument --in: --evaluate scores C in the real env; drop --in dream")
    only_with(p, args, ["--temperature", "--real-every", "--warmup", "--reward-penalty"], args.train_in == "dream",
              "with --in dream")
    args.algo = args.algo or load_config(args.run).get("controller", {}).get("algo") or "cmaes"
    only_with(p, args, ["--timesteps", "--n-steps"], args.algo == "ppo", "with --algo ppo")
    only_with(p, args, ["--v-precision"], args.algo == "cmaes", "with --algo cmaes")
    if args.algo == "ppo" and args.train_in == "dream" and args.real_every is not None:
        p.error("argument --real-every: PPO scores its policy every --eval-every iterations; drop --real-every")
    args.steps = args.steps or args.source.default_max_steps
    return args


def run(args: argparse.Namespace) -> None:
    """Evolve C (or, with --evaluate, score it) in --run, which this process holds throughout (``pipeline.contract.lock``)."""
    with lock.hold(args.run, "--run"):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    world = WorldModel.load(args.run, args.env, args.state)  # fails early, with the script to run, if V or M is missing
    for algo, state_file in (("cmaes", "es_state.pkl"), ("ppo", ppo.CHECKPOINT)):
        if algo != args.algo and (args.run / state_file).exists():
            raise UsageError(f"{args.run} holds a controller trained with --algo {algo} ({state_file}): pass --algo "
                             f"{algo} to continue or score it, or a new --run")
    if mode(args) != "ppo":  # refused before anything is written: workers the machine cannot hold
        pool.check_workers(args.backend, args.workers, most_tasks(args))
    MODES[mode(args)](args, world)


def mode(args: argparse.Namespace) -> str:
    """What this invocation does: score C (--evaluate), train it with PPO, choose the kept CMA mean again
    (--reselect), or evolve it with CMA-ES in the real env or in M's dream (--in)."""
    if args.evaluate:
        return "evaluate"
    if args.algo == "ppo":
        return "ppo"
    if args.reselect:
        return "reselect"
    return args.train_in


def real_evaluator(args: argparse.Namespace) -> Evaluator:
    """The worker pool that plays C in the real env (--workers, --task-timeout, --backend, --address), with no more
    workers than the largest batch of tasks this invocation plays, and V's encoder at --v-precision."""
    precision = prepare(args.v_precision, args.run, args.data, args.env, args.seed, args.steps)
    return Evaluator(args.run, args.env, args.state, args.steps, args.workers, args.task_timeout,
                     args.backend, args.address, tasks=most_tasks(args), precision=precision)


def most_tasks(args: argparse.Namespace) -> int:
    """The most real-env tasks one batch holds: a generation's candidates (in the env), or a scoring's episodes in
    chunks of --trials (the CMA mean's, --evaluate's or --reselect's)."""
    chunks = lambda episodes: -(-episodes // args.trials)  # noqa: E731
    if args.evaluate or args.reselect:
        return chunks(args.evaluate or args.reselect)
    scoring = chunks(args.eval_episodes)
    return scoring if args.train_in == "dream" else max(args.pop, scoring)


def resumed_state(args: argparse.Namespace, world: WorldModel, es_path) -> ESState:
    """The ES state an earlier run saved, checked against this run's V, M, --pop and settings."""
    state = ESState.load(es_path, world.num_params, world.fingerprint())
    if state.es.popsize != args.pop:
        raise UsageError(f"{es_path} has --pop {state.es.popsize}, not {args.pop}: pass --pop {state.es.popsize}, "
                         "or delete it to start over")
    check_resume(args.run, "controller", args, MAY_CHANGE)
    return state


def evolve_in_env(args: argparse.Namespace, world: WorldModel) -> None:
    """--in env: CMA-ES with each candidate's fitness its mean return over --trials real episodes."""
    evolve(args, world, in_dream=False)


def evolve_in_dream(args: argparse.Namespace, world: WorldModel) -> None:
    """--in dream: CMA-ES with fitness from M's dream; every --real-every generations also scored in the real env."""
    evolve(args, world, in_dream=True)


def initial_mean(args: argparse.Namespace, world: WorldModel) -> np.ndarray | None:
    """--init-from: the parameters of a controller evolved on this run's V and M (checked), as CMA-ES's first mean."""
    if args.init_from is None:
        return None
    return world.load_controller(args.init_from, "--init-from")["params"].numpy().astype(np.float64)


def evolve(args: argparse.Namespace, world: WorldModel, in_dream: bool) -> None:
    """The CMA-ES loop: a new ES state, or the saved one resumed after its last generation."""
    dim = world.num_params
    es_path, ckpt_path = args.run / "es_state.pkl", args.run / "controller.pt"
    if es_path.exists():
        if args.init_from is not None:
            raise UsageError(f"--init-from starts a new evolution, but {es_path} holds one: drop --init-from to "
                             "continue it, or delete it to start over")
        state = resumed_state(args, world, es_path)
        print(f"resuming from {es_path}: generation {state.generation}")
    else:
        state = ESState(dim, args.sigma, args.pop, args.seed, world.fingerprint(), x0=initial_mean(args, world))
    if args.generations < state.generation:
        raise UsageError(f"--generations {args.generations} is below the {state.generation} generations {args.run} "
                         f"already evolved: pass --generations {state.generation + 1} or more to continue")
    dreamer = None
    if in_dream:
        # While a generation dreams the real-env workers are idle: the dream takes their cores as threads.
        dreamer = DreamEvaluator(world, latents_path(args.run), args.steps, args.temperature,
                                 devices.resolve(args.device), args.warmup, threads=min(args.workers, os.cpu_count()),
                                 reward_penalty=args.reward_penalty)
    # The metrics are checked (and rows past the ES state dropped) before anything else is written.
    watch = live.Live(args.run, "controller", args.log, state.generation, vars(args))
    log = CsvLog(args.run / "metrics" / "controller.csv", FIELDS, key="generation", resume_after=state.generation,
                 live=watch)
    save_stage_config(args.run, "controller", args, params=dim, controller_in=world.controller_in,
                      controller_out=world.controller_out)
    every = (args.real_every or args.eval_every) if dreamer else args.eval_every
    # Left by an exception (Ctrl-C, SIGTERM, a failed run), the workers are ended at once.
    with real_evaluator(args) as evaluator, watch:
        for generation in progress.bar(range(state.generation + 1, args.generations + 1), initial=state.generation,
                                       total=args.generations, desc=f"CMA-ES generations ({args.train_in})"):
            start = time.monotonic()
            candidates = np.asarray(state.es.ask())
            seeds = episode_seeds(args.seed, Purpose.TRIALS, generation, args.trials)
            fitness, steps = (dreamer.fitness(candidates, seeds) if dreamer
                              else evaluator.fitness(candidates, seeds, args.patience))
            if not np.all(np.isfinite(fitness)):
                raise RunFailed(f"non-finite fitness at generation {generation}; the last good ES state is kept")
            state.es.tell(list(candidates), list(-fitness))
            state.generation = generation
            if fitness.max() > state.best_fitness:
                state.best_fitness, state.best_params = float(fitness.max()), candidates[fitness.argmax()].copy()
            env_steps, dream_steps = (0, steps) if dreamer else (steps, 0)
            row = {}
            if generation % every == 0 or generation == args.generations:
                row, more_env, more_dream = score_periodically(args, generation, state, evaluator, dreamer,
                                                               candidates[fitness.argmax()])
                env_steps, dream_steps = env_steps + more_env, dream_steps + more_dream
            seconds = time.monotonic() - start
            log.write(generation=generation, best=fitness.max(), mean=fitness.mean(), worst=fitness.min(),
                      sigma=state.es.sigma, env_steps=env_steps, dream_steps=dream_steps, seconds=seconds, **row)
            watch.scalars(generation, {"steps_per_s": (env_steps + dream_steps) / seconds})
            scored = f", CMA mean scored {row['eval_mean']:.1f} ± {row['eval_std']:.1f}" if "eval_mean" in row else ""
            progress.write(f"generation {generation}/{args.generations}: fitness best {fitness.max():.1f}, mean "
                           f"{fitness.mean():.1f}, worst {fitness.min():.1f}, σ {state.es.sigma:.4f}{scored} "
                           f"({seconds:.0f} s, {env_steps + dream_steps:,} steps)")
            state.save(es_path)
            save_controller(ckpt_path, world, state, args.train_in)
            plot_fitness(args.run, dreamer is not None, scored=bool(row))
    print(f"best scored CMA mean: {state.best_eval:.1f} (controller in {ckpt_path})")


def score_periodically(args, generation: int, state: ESState, evaluator: Scoring, dreamer: DreamEvaluator | None,
                       best_candidate: np.ndarray) -> tuple[dict, int, int]:
    """Score the CMA mean on --eval-episodes real episodes (keeping it as the best-scored mean if it is); in dream
    mode also the generation's best candidate on the same real episodes and the mean in as many dreams.
    Returns the CSV columns, and the env and dream steps these scorings took."""
    mean = np.asarray(state.es.mean)
    seeds = episode_seeds(args.seed, Purpose.SELECTION, generation, args.eval_episodes)
    scores, env_steps = evaluator.scores(mean, seeds, chunk=args.trials)
    row = {"eval_mean": scores.mean(), "eval_std": scores.std()}
    state.scored(scores.mean(), scores.std(), generation, mean)
    if dreamer is None:
        return row, env_steps, 0
    real_best, best_steps = evaluator.scores(best_candidate, seeds, chunk=args.trials)
    dream_scores, dream_steps = dreamer.scores(mean, seeds)
    return {**row, "real_best": real_best.mean(), "dream_eval_mean": dream_scores.mean()}, env_steps + best_steps, dream_steps


def plot_fitness(run, dream: bool, scored: bool) -> None:
    """plots/controller_fitness.png every generation; in dream mode, plots/controller_dream_vs_real.png after a
    generation whose controllers were scored in both worlds."""
    csv_path = run / "metrics" / "controller.csv"
    if scored:
        plots.score_vs_budget(csv_path, run / "plots" / "controller_score.png",
                              "C's real-env score against what it cost")
    if not dream:
        plots.curves(csv_path, "generation", ["best", "mean", "worst", "eval_mean"], run / "plots" / "controller_fitness.png",
                     "C: CMA-ES fitness (mean return per candidate)")
        return
    plots.curves(csv_path, "generation", ["best", "mean", "worst"], run / "plots" / "controller_fitness.png",
                 "C in the dream: CMA-ES fitness (mean dream return per candidate)")
    if scored:
        plots.curves(csv_path, "generation", ["dream_eval_mean", "eval_mean", "real_best"],
                     run / "plots" / "controller_dream_vs_real.png",
                     "dream vs real: the CMA mean in M (dream_eval_mean) and in the env\n"
                     "(eval_mean), the generation's best candidate in the env (real_best)")


RESELECT_INDEX = 1 << 20  # --reselect's selection episodes: apart from the periodic scorings' (index = generation)


def reselect(args, world: WorldModel) -> None:
    """--reselect N: the kept mean, the archived ones and the current one, each on the same N fresh selection
    episodes; the best becomes the kept controller (a periodic scoring on a few episodes favours the lucky)."""
    es_path, ckpt_path = args.run / "es_state.pkl", args.run / "controller.pt"
    if not es_path.exists():
        raise UsageError(f"{es_path} not found: --reselect chooses among the means an evolution scored; run "
                         "04_train_controller.py first")
    state = resumed_state(args, world, es_path)
    candidates = {g: params for _, g, params in getattr(state, "archive", [])}
    if state.best_eval_generation:
        candidates.setdefault(state.best_eval_generation, state.best_eval_params)
    candidates.setdefault(state.generation, np.asarray(state.es.mean))
    seeds = episode_seeds(args.seed, Purpose.SELECTION, RESELECT_INDEX + state.generation, args.reselect)
    results = {}
    with real_evaluator(args) as evaluator:
        for generation in sorted(candidates):
            results[generation], _ = evaluator.scores(candidates[generation], seeds, chunk=args.trials)
            scores = results[generation]
            print(f"CMA mean of generation {generation}: {scores.mean():.1f} ± {scores.std():.1f} over "
                  f"{args.reselect} selection episodes")
    best = max(results, key=lambda g: results[g].mean())
    state.best_eval, state.best_eval_std = float(results[best].mean()), float(results[best].std())
    state.best_eval_params, state.best_eval_generation = candidates[best].copy(), best
    state.reselected = f"the best of {len(results)} CMA means re-scored on {args.reselect} selection episodes"
    state.save(es_path)
    save_controller(ckpt_path, world, state, load_config(args.run).get("controller", {}).get("train_in", "env"))
    atomic_write_text(args.run / "controller_reselect.json", json.dumps(
        {"episodes": args.reselect, "seed": args.seed, "steps": args.steps, "kept": best,
         "scores": {str(g): {"mean": float(s.mean()), "std": float(s.std())} for g, s in results.items()}}, indent=2))
    print(f"kept: the CMA mean of generation {best} ({ckpt_path})")


def save_controller(path, world: WorldModel, state: ESState, trained_in: str) -> None:
    """controller.pt: ``params`` is the CMA mean that scored best on fresh real episodes (the current mean until
    one has been scored); the current mean and the best candidate ever seen are kept beside it."""
    scored = state.best_eval_generation > 0
    params = state.best_eval_params if scored else np.asarray(state.es.mean)
    as_tensor = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    checkpoint.save(path, {
        "config": {"in_dim": world.controller_in, "out_dim": world.controller_out},
        "params": as_tensor(params),
        "params_from": f"CMA mean at generation {state.best_eval_generation if scored else state.generation}"
                       + ("" if scored else " (not scored yet)")
                       + (f", {state.reselected}" if scored and getattr(state, "reselected", "") else ""),
        "score_mean": state.best_eval if scored else float("nan"),
        "score_std": state.best_eval_std if scored else float("nan"),
        "generation": state.generation,
        "mean": as_tensor(state.es.mean),
        "best_candidate": as_tensor(state.best_params),
        "best_candidate_fitness": state.best_fitness,
        "trained_in": trained_in,
        "world": world.fingerprint(),  # the V and M it was evolved on: every reader checks them
    })


def train_ppo(args, world: WorldModel) -> None:
    """--algo ppo: the metrics and the run's config as CMA-ES keeps them; the training is pipeline/ppo.py's."""
    if (args.run / ppo.CHECKPOINT).exists():
        # PPO's checkpoint is bound to its envs (their number and kind): it cannot move between the env and the dream.
        trained_in = load_config(args.run).get("controller", {}).get("train_in", "env")
        if trained_in != args.train_in:
            raise UsageError(f"{args.run / ppo.CHECKPOINT} learned with --in {trained_in}, not --in {args.train_in}: "
                             f"pass --in {trained_in} to resume it, or a new --run")
        check_resume(args.run, "controller", args, MAY_CHANGE - {"workers"})

    def open_log(iterations: int) -> CsvLog:
        log = CsvLog(args.run / "metrics" / "controller.csv", FIELDS, key="generation", resume_after=iterations)
        save_stage_config(args.run, "controller", args, controller_in=world.controller_in,
                          controller_out=world.controller_out)
        return log

    ppo.train(args, world, open_log, progress.write)
    plot_fitness(args.run, False, scored=True)


def evaluate(args, world: WorldModel) -> None:
    """--evaluate N: the kept controller (or the PPO policy) on N episodes of EVALUATE seeds: block --block, or with
    --publish three blocks this run never scored before (``pipeline.contract.evaluations``). Every evaluation is
    kept in controller_eval.json beside the earlier ones."""
    if args.algo == "ppo":
        best = args.run / ppo.BEST
        controller = evaluations.digest(best.read_bytes()) if best.exists() else ""
        params_from = f"the PPO policy that scored best ({ppo.BEST})"
        play = lambda seeds: ppo.evaluate(args, world, seeds)  # noqa: E731
    else:
        ctrl = world.load_controller(args.run / "controller.pt")
        params = ctrl["params"].numpy()
        controller, params_from = evaluations.digest(params), ctrl["params_from"]
        evaluator = real_evaluator(args)

        def play(seeds: list[int]) -> np.ndarray:
            # Batches of --trials episodes whatever --workers is: batch shapes change float rounding in V and M.
            return evaluator.scores(params, seeds, args.trials)[0]

    blocks = evaluations.fresh_blocks(args.run, evaluations.PUBLISHED_BLOCKS) if args.publish else [args.block]
    for block in blocks:
        others = evaluations.used_blocks(args.run).get(block, set()) - {controller}
        if others:
            progress.write(f"note: block {block} of the evaluation seeds already scored another controller of this "
                           "run, so a choice may have been made on it: this score is not on fresh episodes (a "
                           "published score uses --publish, which takes blocks never scored)")
    try:
        returns = {block: play(episode_seeds(args.seed, Purpose.EVALUATE, block, args.evaluate)) for block in blocks}
    finally:
        if args.algo != "ppo":
            evaluator.close()
    entry = evaluations.record(args.run, returns, controller, seed=args.seed, steps=args.steps,
                               params_from=params_from, published=bool(args.publish), v_precision=args.v_precision)
    what = "published score" if args.publish else "controller score"
    if args.v_precision != "fp32":
        what += f" (V's encoder in {args.v_precision})"
    print(f"{what} over {entry['episodes']} episodes of at most {args.steps} steps: {evaluations.describe(entry)}; "
          f"min {entry['min']:.1f}, max {entry['max']:.1f}")


MODES = {"evaluate": evaluate, "ppo": train_ppo, "reselect": reselect, "env": evolve_in_env, "dream": evolve_in_dream}
