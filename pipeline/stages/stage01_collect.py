"""Stage 01: rollouts → HDF5 shards in data/<env>/; the layout: docs/data-format.md.

    python 01_collect.py --env carracing --episodes 10000 --workers 16
    python 01_collect.py --run results/carracing --policy controller --noise 0.1 --round 1 --episodes 16

The first collection plays an exploration policy (brownian, random). ``--policy controller`` plays the run's
trained C (V, M and C, with Gaussian noise σ on C's outputs) and adds its episodes to the data folder as round
``--round`` of iterative training: every episode records the policy and the round that made it.

Re-running the same command after a kill completes the dataset to --episodes; finished episodes are
never lost or rewritten.
"""
from __future__ import annotations

import argparse
import os

import envs
from pipeline.collect import CollectJob, collect
from pipeline.compute import pool
from pipeline.contract import cli, lock
from pipeline.contract.cli import (
    Parser,
    add_backend_flags,
    check_backend_flags,
    nonneg_int,
    parse_stage_args,
    stage_parser,
)
from pipeline.contract.runconfig import save_stage_config
from pipeline.controller_policy import controller_files
from pipeline.encoder_precision import PRECISIONS, prepare


def parser() -> Parser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--episodes", type=cli.episodes, default=10000, help="episodes the dataset should hold")
    p.add_argument("--workers", type=cli.workers, default=os.cpu_count(), help="collection processes")
    p.add_argument("--steps", type=cli.steps, help="cap on an episode's length (default: the env's, 1000 for CarRacing)")
    p.add_argument("--policy", choices=[*envs.POLICIES, "controller"], default="brownian",
                   help="brownian: a_{t+1} = clip(a_t + N(0, 1/50)); random: uniform actions; controller: the "
                        "--run's trained C (with --noise), its episodes added as round --round")
    p.add_argument("--noise", type=cli.nonneg_float, default=0.1,
                   help="--policy controller: σ of the Gaussian noise added to C's outputs (in [-1, 1]) before "
                        "they become actions")
    p.add_argument("--round", type=cli.positive_int_up_to(999), default=1,
                   help="--policy controller: the round of iterative training these episodes belong to "
                        "(--episodes counts that round's episodes)")
    p.add_argument("--v-precision", choices=PRECISIONS, default="fp32", metavar="P",
                   help="--policy controller: V's encoder in fp32 (V as trained), bf16 or int8 (ONNX Runtime, "
                        "calibrated on the run's frames, cached in <run>/vae_int8.onnx): faster, z slightly changed "
                        "(pipeline/encoder_precision.py, docs/benchmarks.md)")
    p.add_argument("--shard-size", type=cli.positive_int_up_to(cli.MAX_SHARD), default=100,
                   help="episodes packed into one shard file")
    p.add_argument("--verbose", type=nonneg_int, default=1, help="0 hides the progress bar")
    add_backend_flags(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = parse_stage_args(p, "collect", argv)
    check_backend_flags(p, args)
    args.steps = args.steps or args.source.default_max_steps
    cli.only_with(p, args, ["--noise", "--round", "--v-precision"], args.policy == "controller",
                  "with --policy controller")
    return args


def run(args: argparse.Namespace) -> None:
    """Collect into --data, which this process holds throughout (``pipeline.contract.lock``): a second one is refused before
    it touches a file. --run gets only config.json, at the end: refused now if it cannot be written."""
    # Refused before anything is written (the lock file included): workers the machine's memory cannot hold.
    pool.check_workers(args.backend, args.workers, args.episodes)
    lock.check_writable(args.run, "--run")
    with lock.hold(args.data, "--data"):
        controller = args.policy == "controller"
        job = CollectJob(env=args.env, state=args.state, data=str(args.data), seed=args.seed, policy=args.policy,
                         max_steps=args.steps, shard_size=args.shard_size, round=args.round if controller else 0,
                         controller=controller_files(args.run) if controller else None,
                         noise=args.noise if controller else 0.0,
                         v_precision=prepare(args.v_precision, args.run, args.data, args.env, args.seed, args.steps))
        present, added = collect(job, args.episodes, args.workers, progress=args.verbose > 0,
                                 backend=args.backend, address=args.address, task_timeout=args.task_timeout)
        # The run's "collect" settings stay those of its first collection; a controller's rounds are recorded apart.
        save_stage_config(args.run, f"collect_round{args.round}" if controller else "collect", args)
    print(f"{args.data}: {present + added} episodes ({present} already there, {added} collected)")

