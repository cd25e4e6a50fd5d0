"""Stage 01: random rollouts → HDF5 shards in data/<env>/; the layout: docs/data-format.md.

    python 01_collect.py --env carracing --episodes 10000 --workers 16

Re-running the same command after a kill completes the dataset to --episodes; finished episodes are
never lost or rewritten.
"""
from __future__ import annotations

import argparse
import os

import envs
from pipeline.collect import CollectJob, collect
from pipeline.contract import cli, lock
from pipeline.contract.cli import Parser, add_backend_flags, check_backend_flags, nonneg_int, parse_stage_args, stage_parser
from pipeline.contract.runconfig import save_stage_config


def parser() -> Parser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--episodes", type=cli.episodes, default=10000, help="episodes the dataset should hold")
    p.add_argument("--workers", type=cli.workers, default=os.cpu_count(), help="collection processes")
    p.add_argument("--steps", type=cli.steps, help="cap on an episode's length (default: the env's, 1000 for CarRacing)")
    p.add_argument("--policy", choices=envs.POLICIES, default="brownian",
                   help="brownian: a_{t+1} = clip(a_t + N(0, 1/50)); random: uniform actions")
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
    return args


def run(args: argparse.Namespace) -> None:
    """Collect into --data, which this process holds throughout (``pipeline.contract.lock``): a second one is refused before
    it touches a file. --run gets only config.json, at the end: refused now if it cannot be written."""
    lock.check_writable(args.run, "--run")
    with lock.hold(args.data, "--data"):
        job = CollectJob(env=args.env, state=args.state, data=str(args.data), seed=args.seed, policy=args.policy,
                         max_steps=args.steps, shard_size=args.shard_size)
        present, added = collect(job, args.episodes, args.workers, progress=args.verbose > 0,
                                 backend=args.backend, address=args.address, task_timeout=args.task_timeout)
        save_stage_config(args.run, "collect", args)
    print(f"{args.data}: {present + added} episodes ({present} already there, {added} collected)")

