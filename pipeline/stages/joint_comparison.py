"""Stage-wise against joint training of V and M, on the same data, V, budget and seed.

    python compare_joint.py --env carracing --run results/carracing --epochs 20 --seq-len 100 --batch 16

Needs <run>/vae.pt from stage 02 (or, on a run already trained jointly, the vae_stagewise.pt it kept). Takes
every flag of 03_train_mdnrnn.py. Trains M twice with stage 03, in this process: stage-wise (M on V's frozen
codes) into <run>/joint-compare/stagewise/, and jointly (--joint: V, M and f_inv together, from the same V)
into <run>/joint-compare/joint/; re-running resumes both. Then scores each on the held-out episodes:

- the next-z NLL (each in its own V's z space, so compare it with care);
- the open-loop error k steps ahead, decoded through each variant's own V against the real frames (pixels, so
  comparable);
- V's reconstruction loss on the held-out frames;
- how much of the action z holds: the joint run's own f_inv, and for both variants a fresh f_inv trained on
  their frozen z (for the stage-wise z this is the baseline: what z holds of the action without f_inv's push).

Writes <run>/joint-compare/comparison.md and comparison.json.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from data import atomic
from data import latents as latent_data
from data.frames import split
from data.store import read_observations
from models.inverse import InverseModel
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE
from pipeline import joint
from pipeline.contract import checkpoint, lock
from pipeline.contract.cli import Parser, parse_stage_args
from pipeline.contract.errors import UsageError
from pipeline.contract.runconfig import atomic_write_text, load_config
from pipeline.open_loop import add_open_loop_flags, markdown_table, open_loop_errors, parse_horizons
from pipeline.reporting import metrics
from pipeline.rollouts import open_store
from pipeline.stages import stage03_mdnrnn
from pipeline.training import vae_validate

VARIANTS = ("stagewise", "joint")


def parser() -> Parser:
    p = stage03_mdnrnn.parser(__doc__.splitlines()[0])
    add_open_loop_flags(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = parse_stage_args(p, "compare_joint", argv)
    args.horizons = parse_horizons(p, args.horizons)
    if args.joint:
        p.error("argument --joint: compare_joint trains both ways itself; drop --joint")
    return args


def run(args: argparse.Namespace) -> None:
    with lock.hold(args.run, "--run"):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    stagewise_v = next((args.run / n for n in ("vae_stagewise.pt", "vae.pt") if (args.run / n).exists()), None)
    if stagewise_v is None:
        raise UsageError(f"{args.run / 'vae.pt'} not found: run 02_train_vae.py first (or pass the right --run)")
    out = args.run / "joint-compare"
    recorded = {k: v for k, v in load_config(args.run).items() if k in ("collect", "vae")}
    store, refs = open_store(args)
    args.data = store.root  # a minari: dataset is read from the run's copy, by both variants
    rows = []
    for variant in VARIANTS:
        sub = out / variant
        sub.mkdir(parents=True, exist_ok=True)
        if not (sub / "vae.pt").exists():
            atomic.copy_file(stagewise_v, sub / "vae.pt")
            atomic_write_text(sub / "config.json", json.dumps(recorded, indent=2, sort_keys=True))
        sub_args = argparse.Namespace(**{**vars(args), "run": sub, "joint": variant == "joint"})
        for name in ("horizons", "starts"):
            delattr(sub_args, name)
        stage03_mdnrnn.run(sub_args)
        rows.append(score(args, variant, sub, refs))
        print(f"{variant}: val nll {rows[-1]['val_nll']:.3f}, recon {rows[-1]['recon']:.1f}, open-loop k="
              f"{args.horizons[-1]} {rows[-1][f'open_loop_{args.horizons[-1]}']:.4f}")
    write(args, rows, out)
    print(f"comparison: {out / 'comparison.md'}")


@torch.no_grad()
def _recon(vae: ConvVAE, episodes: list, refs: dict) -> float:
    frames = [torch.from_numpy(read_observations(refs[e.id])) for e in episodes]
    return vae_validate(vae, [f[s: s + 256] for f in frames for s in range(0, len(f), 256)], torch.device("cpu"))["recon"]


def score(args, variant: str, sub, refs) -> dict:
    config = load_config(sub)["mdnrnn"]
    vae = ConvVAE.from_state(checkpoint.load(sub / "vae.pt", "02_train_vae.py")).eval()
    model = MDNRNN.from_state(checkpoint.load(sub / "mdnrnn.pt", "03_train_mdnrnn.py")).eval()
    train_refs, val_refs = split(refs, config["val_fraction"])
    val_ids = {r.id for r in val_refs}
    episodes = latent_data.read(sub / "latents.h5")
    val = [e for e in episodes if e.id in val_ids] or episodes
    train = [e for e in episodes if e.id not in val_ids] or episodes
    by_id = {r.id: r for r in refs}
    torch.manual_seed(args.seed)
    errors = open_loop_errors(model, vae, val, by_id, args.horizons, args.starts, args.seed)
    log = metrics.read(sub / "metrics" / ("joint.csv" if variant == "joint" else "mdnrnn.csv"))
    row = {"variant": variant, "val_nll": log[-1].get("val_nll", float("nan")), "recon": _recon(vae, val, by_id),
           "frozen_fit": joint.action_fit(train, val, args.source.discrete, args.seed),
           **{f"open_loop_{k}": v for k, v in errors.items()}}
    if variant == "joint":
        inverse = InverseModel.from_state(checkpoint.load(sub / "inverse.pt", "03_train_mdnrnn.py --joint"))
        row["own_fit"] = next(iter(inverse.loss(*joint.latent_pairs(val))[1].values()))
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in row.items()}


def write(args, rows: list[dict], out) -> None:
    fit = "accuracy" if args.source.discrete else "R²"
    columns = [("variant", "training", "s"), ("val_nll", "val NLL (next z, own z space)", ".3f"),
               ("recon", "V recon loss (held out)", ".1f"),
               *[(f"open_loop_{k}", f"open-loop k={k} (pixel MSE)", ".4f") for k in args.horizons],
               ("frozen_fit", f"action from frozen z ({fit})", ".3f"), ("own_fit", f"joint f_inv ({fit})", ".3f")]
    settings = (f"env {args.env}, data {args.data}, {args.epochs} epochs, batch {args.batch} × {args.seq_len} steps, "
                f"core {args.core}, hidden {args.hidden}, seed {args.seed}")
    command = " ".join(["python compare_joint.py", *sys.argv[1:]])
    text = (f"# Stage-wise against joint training\n\n{settings}.\n\nCommand: `{command}`\n\n"
            f"{markdown_table(rows, columns)}\n\nOpen-loop: M reads the real frames up to a start step, then predicts "
            "alone (mixture means, real actions), decoded by its own V. Action from frozen z: a fresh f_inv trained "
            "on the variant's frozen z of the training episodes, scored on the held-out ones.\n")
    atomic_write_text(out / "comparison.md", text)
    atomic_write_text(out / "comparison.json", json.dumps({"settings": settings, "rows": rows}, indent=2))
