"""Train every recurrent core of M on the same data, budget and seed, and compare them.

    python compare_cores.py --env carracing --cores lstm,attention,vsg,svsg --epochs 20

Needs <run>/vae.pt (stage 02). Takes every flag of 03_train_mdnrnn.py (each core gets the options that apply
to it). Each core is trained by stage 03, in this process, into <run>/cores/<core>/ (re-running resumes),
reading the V of <run> and the frames it encoded once into <run>/latents.h5. Then each is scored on the
held-out episodes: validation NLL of the next z, reward and done error, open-loop prediction error k steps
ahead (decoded through V against the real frames), the update fraction of the gated cores, parameter count
and training steps/s. Writes <run>/cores/comparison.md, comparison.json and comparison.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from data import latents as latent_data
from data.frames import split
from models.cores import CORES
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE
from pipeline.contract import checkpoint, lock
from pipeline.contract.cli import Parser, parse_stage_args
from pipeline.contract.runconfig import atomic_write_text, load_config
from pipeline.open_loop import add_open_loop_flags, count_parameters, markdown_table, open_loop_errors, parse_horizons
from pipeline.reporting import metrics, plots
from pipeline.rollouts import open_store
from pipeline.stages import stage03_mdnrnn

COLUMNS = [
    ("core", "core", "s"), ("params", "parameters", ","), ("steps_per_s", "train steps/s", ".2f"),
    ("val_nll", "val NLL (next z, per dim)", ".3f"), ("val_reward_mse", "reward MSE", ".4f"),
    ("val_done_bce", "done BCE", ".4f"),
]


def parser() -> Parser:
    """Stage 03's flags (every core's options among them), plus the comparison's own."""
    p = stage03_mdnrnn.parser(__doc__.splitlines()[0])
    p.add_argument("--cores", default=",".join(CORES), help="comma-separated cores to compare")
    add_open_loop_flags(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = parse_stage_args(p, "compare", argv)
    args.cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    unknown = [c for c in args.cores if c not in CORES]
    if unknown or not args.cores:
        p.error(f"argument --cores: unknown core(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(CORES)}")
    args.horizons = parse_horizons(p, args.horizons)
    if args.core != p.get_default("core"):
        p.error("argument --core: compare_cores trains every core of --cores; drop --core")
    return args


def run(args: argparse.Namespace) -> None:
    """Compare the cores in --run, which this process holds throughout (``pipeline.contract.lock``); each core's stage 03
    holds its own folder under it."""
    with lock.hold(args.run, "--run"):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    cores, horizons = args.cores, args.horizons
    vae_state = checkpoint.load(args.run / "vae.pt", "02_train_vae.py")
    store, refs = open_store(args)
    args.data = store.root  # a minari: dataset is copied once, into --run, and the cores read that copy
    out_dir = args.run / "cores"
    rows = []
    for core in cores:
        sub = out_dir / core
        train_core(args, core, sub)
        rows.append(score_core(args, core, sub, vae_state, refs, horizons))
        k = horizons[-1]
        print(f"{core}: val nll {rows[-1]['val_nll']:.3f}, open-loop error k={k}: {rows[-1][f'open_loop_{k}']:.4f}")
    write_outputs(args, rows, horizons, out_dir)
    print(f"comparison: {out_dir / 'comparison.md'}")


def train_core(args, core: str, sub: Path) -> None:
    """Stage 03 for one core, in this process, into its own run folder; V and the encoded latents stay in
    ``args.run`` and are shared by every core."""
    core_args = argparse.Namespace(**{**vars(args), "core": core, "run": sub})
    for name in ("cores", "horizons", "starts"):
        delattr(core_args, name)
    stage03_mdnrnn.run(core_args, vae_path=args.run / "vae.pt", latents_path=args.run / "latents.h5")


def score_core(args, core: str, sub: Path, vae_state: dict, refs, horizons: list[int]) -> dict:
    model = MDNRNN.from_state(checkpoint.load(sub / "mdnrnn.pt", "03_train_mdnrnn.py"))
    log = metrics.read(sub / "metrics" / "mdnrnn.csv")
    last = log[-1]
    _, val_refs = split(refs, load_config(sub)["mdnrnn"]["val_fraction"])  # the split 03 held out
    val_ids = {r.id for r in val_refs}
    episodes = [e for e in latent_data.read(args.run / "latents.h5") if e.id in val_ids]
    torch.manual_seed(args.seed)
    errors = open_loop_errors(model, ConvVAE.from_state(vae_state), episodes, {r.id: r for r in refs}, horizons,
                              args.starts, args.seed)
    row = {"core": core, "params": count_parameters(model),
           "steps_per_s": last["step"] / max(sum(r["train_seconds"] for r in log), 1e-9),
           **{k: last.get(k, float("nan")) for k in ("val_nll", "val_reward_mse", "val_done_bce", "val_update_fraction")},
           **{f"open_loop_{k}": v for k, v in errors.items()}}
    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()}


def write_outputs(args, rows: list[dict], horizons: list[int], out_dir: Path) -> None:
    columns = COLUMNS + [(f"open_loop_{k}", f"open-loop k={k} (pixel MSE)", ".4f") for k in horizons]
    columns.append(("val_update_fraction", "update fraction", ".3f"))
    settings = (f"env {args.env}, data {args.data}, {args.epochs} epochs, batch {args.batch} × {args.seq_len} steps, "
                f"hidden {args.hidden}, seed {args.seed}")
    command = " ".join(["python compare_cores.py", *sys.argv[1:]])
    text = (f"# M's cores compared\n\n{settings}.\n\nCommand: `{command}`\n\n{markdown_table(rows, columns)}\n\n"
            "Open-loop: M reads the real frames up to a start step, then predicts alone (mixture means, real actions); "
            "the error is the mean squared pixel error of the decoded prediction against the real frame.\n")
    atomic_write_text(out_dir / "comparison.md", text)
    atomic_write_text(out_dir / "comparison.json", json.dumps({"settings": settings, "rows": rows}, indent=2))
    fig, (ax1, ax2) = plots.pyplot().subplots(1, 2, figsize=(11, 4))
    for row in rows:
        ax1.plot(horizons, [row[f"open_loop_{k}"] for k in horizons], marker="o", label=row["core"])
    ax1.set(xlabel="steps ahead k", ylabel="pixel MSE of decoded prediction", title="open-loop prediction error")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.bar([r["core"] for r in rows], [r["val_nll"] for r in rows], color="tab:gray")
    ax2.set(ylabel="validation NLL per latent dim", title="next-z NLL (lower is better)")
    fig.suptitle(settings, fontsize=8)
    fig.tight_layout()
    plots.save(fig, out_dir / "comparison.png")

