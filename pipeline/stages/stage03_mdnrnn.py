"""Stage 03: encode every frame once with V, then train M (the MDN-RNN) on the latent sequences.

    python 03_train_mdnrnn.py --env carracing --core lstm --epochs 20 --seq-len 999

Writes <run>/latents.h5 (mu, logvar per frame; re-encoded only when V or the data changed),
<run>/mdnrnn.pt (checkpoint with optimiser every epoch; re-running resumes), metrics/mdnrnn.csv (the
losses and whatever the core reports, train and validation), plots/mdnrnn_loss.png and, for vsg and svsg,
plots/mdnrnn_update_fraction.png.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from data import latents as latent_data
from data.frames import split
from data.store import index_hash, read_episode
from models.cores import CORES, core_options
from models.mdnrnn import MDNRNN, MDNRNNConfig
from models.vae import ConvVAE, to_input
from pipeline import joint
from pipeline.compute import device as devices
from pipeline.contract import checkpoint, cli, lock
from pipeline.contract.cli import (
    Parser,
    fraction,
    learning_rate,
    nonneg_float,
    only_with,
    parse_stage_args,
    positive_float,
    positive_int,
    probability,
    stage_parser,
)
from pipeline.contract.errors import UsageError
from pipeline.contract.runconfig import check_resume, save_stage_config
from pipeline.reporting import live, metrics, plots
from pipeline.reporting.metrics import CsvLog
from pipeline.reporting.progress import bar as progress_bar
from pipeline.rollouts import open_store
from pipeline.training import Averages, check_finite, check_weights, epoch_plan, mdn_step, mdn_validate, resume

# What may differ when a run resumes: how long, how fast, where; not the loss, the batches or the data.
MAY_CHANGE = {"epochs", "lr", "encode_batch", "device", "log"}
# Settings of joint training alone: a stage-wise M ignores them, so they may differ when it resumes (compare_joint
# trains both variants on one set of flags, and a new joint variant must not block the stage-wise one).
JOINT_ONLY = {"vae_weight", "vae_lr", "inverse_weight", "balance", "calibration_steps", "collapse_recon", "collapse_fit"}
LOSSES = ["loss", "nll", "reward_mse", "done_bce"]
# Every core's hyper-parameter is a flag of the same name; only the chosen core's go into core_options.
CORE_FLAGS = sorted({name for core in CORES for name in core_options(core)})


def parser(description: str = __doc__.splitlines()[0]) -> Parser:
    p = stage_parser(description)
    p.add_argument("--core", choices=sorted(CORES), default="lstm",
                   help="M's recurrent core: lstm (Ha), attention (LSTM + causal attention over a window), "
                        "vsg (variational sparse gating), svsg (simple VSG: one sparsely gated stochastic state)")
    defaults = {**core_options("attention"), **core_options("svsg")}
    p.add_argument("--window", type=cli.steps, default=defaults["window"],
                   help="attention only: how many of its own last outputs (the current one included) each step "
                        "attends to; the window travels in the state, so rollouts step through it")
    p.add_argument("--kappa", type=probability, default=defaults["kappa"],
                   help="vsg, svsg: prior probability κ that a state dimension is updated at a step; the "
                        "sparsity loss pulls every gate probability towards it")
    p.add_argument("--sparsity-scale", type=nonneg_float, default=defaults["sparsity_scale"],
                   help="vsg, svsg: α in the sparsity loss α·max(KL(Bernoulli(p) ‖ Bernoulli(κ)), floor), the KL "
                        "summed over state dims and averaged over batch × time")
    p.add_argument("--sparsity-floor", type=nonneg_float, default=defaults["sparsity_floor"],
                   help="vsg, svsg: the floor (nats per step) below which the sparsity KL is not penalised")
    p.add_argument("--kl-scale", type=nonneg_float, default=defaults["kl_scale"],
                   help="svsg only: β, the weight of KL(posterior ‖ prior) of the state, summed over the dims "
                        "the gate updated")
    p.add_argument("--kl-free", type=nonneg_float, default=defaults["kl_free"],
                   help="svsg only: free nats; the masked KL per step is not penalised below this value")
    p.add_argument("--epochs", type=positive_int, default=20, help="passes over the training sequences")
    p.add_argument("--batch", type=positive_int, default=100, help="sequences per batch")
    p.add_argument("--seq-len", type=cli.steps, default=999, help="steps per training sequence (teacher forcing)")
    p.add_argument("--lr", type=learning_rate, default=1e-3, help="Adam learning rate")
    p.add_argument("--hidden", type=positive_int, default=256, help="size of the recurrent state")
    p.add_argument("--mixtures", type=positive_int, default=5, help="Gaussian components per latent dimension")
    p.add_argument("--grad-clip", type=positive_float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--done-weight", type=done_weight, default=10.0,
                   help="weight of done=1 steps in the done BCE; balanced: the training data's ratio of other steps "
                        "to done steps, so both classes weigh the same")
    p.add_argument("--reward-over-weight", type=positive_float, default=1.0,
                   help="weight of the reward errors that over-predict (> 1: a dream that over-promises costs more "
                        "than one that under-promises)")
    p.add_argument("--reward-heads", type=cli.positive_int_up_to(64), default=1,
                   help="E reward heads, each on its own bootstrap half of every batch; their spread is M's doubt, "
                        "which 04 --reward-penalty and iterate.py --reward-penalty take off the dream's reward")
    p.add_argument("--val-fraction", type=fraction, default=0.05, help="share of episodes held out (by id)")
    p.add_argument("--encode-batch", type=positive_int, default=1000, help="frames per V forward pass when encoding")
    p.add_argument("--device", choices=devices.CHOICES, default="auto", help="auto: CUDA (bf16) when present")
    joint_flags = p.add_argument_group("joint training (--joint): V, M and the inverse model f_inv on one loss, "
                                       "λ_vae·L_V + L_M + λ_inv·L_inv (pipeline/joint.py)")
    joint_flags.add_argument("--joint", action="store_true",
                             help="train stage 02's V on with M and f_inv, on frame sequences; replaces vae.pt "
                                  "(02's V is kept as vae_stagewise.pt) and re-encodes latents.h5")
    joint_flags.add_argument("--vae-weight", type=nonneg_float, default=1.0, help="λ_vae, V's loss weight")
    joint_flags.add_argument("--vae-lr", type=positive_float, default=1e-4,
                             help="Adam learning rate of V's weights (M's and f_inv's is --lr); V starts trained, "
                                  "so it keeps stage 02's rate")
    joint_flags.add_argument("--inverse-weight", type=nonneg_float, default=1.0, help="λ_inv, f_inv's loss weight")
    joint_flags.add_argument("--balance", choices=["manual", "auto"], default="manual",
                             help="auto: a calibration with every weight at 1, then the weights that make the "
                                  "weighted loss reductions rank V ≥ M ≥ f_inv within an order of magnitude")
    joint_flags.add_argument("--calibration-steps", type=positive_int, default=50,
                             help="steps of the calibration that --balance auto runs first")
    joint_flags.add_argument("--collapse-recon", type=positive_float, default=1.5,
                             help="stop when V's validation reconstruction loss passes this many times its value at "
                                  "the start (M's loss took over)")
    joint_flags.add_argument("--collapse-fit", type=probability, default=0.99,
                             help="stop when f_inv's validation accuracy (discrete) or R² (continuous) reaches this "
                                  "(its loss took over: z holds the action and little else)")
    live.add_flag(p)
    return p


def done_weight(text: str) -> float | str:
    """--done-weight: a positive number, or ``balanced``."""
    return "balanced" if text == "balanced" else positive_float(text)


done_weight.low, done_weight.high = positive_float.low, positive_float.high  # the numeric range, as every flag's

def balanced_done_weight(episodes) -> float:
    """The ratio of steps that are not done to steps that are, over ``episodes`` (1 when none is done)."""
    dones = sum(int(np.sum(e.terminations)) for e in episodes)
    steps = sum(e.length for e in episodes)
    return (steps - dones) / dones if dones else 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = parse_stage_args(p, "mdnrnn", argv)
    for name in CORE_FLAGS:
        users = [core for core in sorted(CORES) if name in core_options(core)]
        only_with(p, args, [f"--{name.replace('_', '-')}"], args.core in users, f"with --core {' or '.join(users)}")
    only_with(p, args, ["--vae-weight", "--vae-lr", "--inverse-weight", "--balance", "--calibration-steps", "--collapse-recon",
                        "--collapse-fit"], args.joint, "with --joint")
    if args.joint and args.done_weight == "balanced":
        p.error("argument --done-weight: balanced is not available with --joint; give a number")
    if args.joint and args.balance == "auto" and (args.vae_weight != 1.0 or args.inverse_weight != 1.0):
        p.error("argument --balance: auto chooses --vae-weight and --inverse-weight; drop them")
    return args


def run(args: argparse.Namespace, vae_path: Path | None = None, latents_path: Path | None = None) -> None:
    """Train M in --run, which this process holds throughout (``pipeline.contract.lock``): a second one is refused."""
    with lock.hold(args.run, "--run"):
        _run(args, vae_path, latents_path)


def _run(args: argparse.Namespace, vae_path: Path | None = None, latents_path: Path | None = None) -> None:
    """Train M of ``args.core`` into ``args.run``, on V at ``vae_path`` (default ``<run>/vae.pt``) and the frames
    it encodes into ``latents_path`` (default ``<run>/latents.h5``); compare_cores shares one V and one encoding
    among all its cores this way."""
    vae_path = vae_path or args.run / "vae.pt"
    latents_path = latents_path or args.run / "latents.h5"
    # config.json records only the chosen core's options, and the paths of the V and latents it read.
    options = {name: getattr(args, name) for name in core_options(args.core)}
    # Recorded relative to the run folder, so that a run moved or copied with its parent still finds them.
    args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in CORE_FLAGS},
                              vae=vae_path, latents=Path(os.path.relpath(latents_path, args.run)))
    device = devices.resolve(args.device)
    torch.manual_seed(args.seed)

    vae_state = checkpoint.load(vae_path, "02_train_vae.py")
    vae_fingerprint = checkpoint.weights_hash(vae_state["model"])
    store, refs = open_store(args)
    dataset = index_hash(refs, store.attrs())
    if not checkpoint.trained_on(vae_state, refs, store.attrs()):
        raise UsageError(f"{vae_path} was trained on other episodes than --data {args.data} holds now (collected "
                         "since, or another folder): run 02_train_vae.py again on this data, or pass the --data V "
                         "was trained on")
    config = MDNRNNConfig(z_dim=vae_state["config"]["z_dim"], action_dim=args.source.action_dim,
                          hidden=args.hidden, mixtures=args.mixtures, core=args.core, core_options=options,
                          reward_heads=args.reward_heads)
    if args.joint:
        if (args.run / "joint.pt").exists():
            check_resume(args.run, "mdnrnn", args, MAY_CHANGE, dataset=dataset)
        save_stage_config(args.run, "mdnrnn", args, dataset=dataset, z_dim=config.z_dim, action_dim=config.action_dim,
                          core_options=options)
        vae_state = joint.train(args, vae_state, config, refs, device, dataset)
        encode_latents(args, vae_state, refs, dataset, device)  # the cache, re-encoded by the joint V
        return
    model = MDNRNN(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    progress = {"epoch": 0, "step": 0}
    ckpt_path = args.run / "mdnrnn.pt"

    def same_model(state: dict) -> None:
        saved, wanted = settings(state["config"]), settings(asdict(config))
        # Options of a different core are not compared: the core itself already differs.
        diff = ", ".join(f"{k} {saved[k]} (not {wanted[k]})" for k in saved if k in wanted and saved[k] != wanted[k])
        if diff:
            raise UsageError(f"{ckpt_path} was trained with {diff}: pass the same settings, or a new --run")
        if state.get("vae_fingerprint", vae_fingerprint) != vae_fingerprint:
            raise UsageError(f"{ckpt_path} was trained on the codes of another V than {vae_path} (retrained since?): "
                             "delete it to train M on this V, or pass a new --run")
        check_resume(args.run, "mdnrnn", args, MAY_CHANGE | JOINT_ONLY, dataset=dataset)

    # Refused before any work: nothing is re-encoded for a run that cannot resume.
    resumed = resume(ckpt_path, "03_train_mdnrnn.py", model, opt, args.lr, same_model)
    if resumed:
        progress = resumed
        print(f"resuming from {ckpt_path}: epoch {progress['epoch']}")
    metrics.check(args.run / "metrics" / "mdnrnn.csv", key="epoch")  # a malformed one refused before any encoding
    live.check(args.run, "mdnrnn", args.log)
    episodes = encode_latents(args, vae_state, refs, dataset, device)
    train_refs, val_refs = split(refs, args.val_fraction)
    val_ids = {r.id for r in val_refs}
    train = [e for e in episodes if e.id not in val_ids]
    val = [e for e in episodes if e.id in val_ids]
    weight = balanced_done_weight(train) if args.done_weight == "balanced" else args.done_weight

    columns = [*LOSSES, *model.core.extras]
    # The metrics are checked (and rows past the checkpoint dropped) before anything else is written.
    watch = live.Live(args.run, "mdnrnn", args.log, progress["epoch"], vars(args))
    log = CsvLog(args.run / "metrics" / "mdnrnn.csv",
                 ["epoch", "step", "train_seconds", *columns, *(f"val_{k}" for k in columns)],
                 key="epoch", resume_after=progress["epoch"], live=watch)
    save_stage_config(args.run, "mdnrnn", args, dataset=dataset,
                      z_dim=config.z_dim, action_dim=config.action_dim,
                      core_options=options, train_episodes=len(train), val_episodes=len(val), done_weight_used=weight)
    with watch:
        for epoch in range(progress["epoch"], args.epochs):
            rng, batches = epoch_plan(train, args.seq_len, args.batch, args.seed, epoch)
            avg = Averages()
            start = time.perf_counter()
            for picks in progress_bar(batches, desc=f"mdnrnn epoch {epoch + 1}/{args.epochs}"):
                batch = latent_data.batch(train, picks, args.seq_len, rng)
                terms = mdn_step(model, opt, batch, device, args.grad_clip, weight, args.reward_over_weight)
                progress["step"] += 1
                check_finite(terms, f"step {progress['step']} (epoch {epoch + 1})")
                avg.add(terms, int(batch["mask"].sum()))
            train_seconds = time.perf_counter() - start  # the optimisation steps alone, for steps/s comparisons
            row = avg.pop()
            val_terms = mdn_validate(model, val, args.seq_len, args.batch, device, weight, args.seed,
                                     args.reward_over_weight) if val else {}
            log.write(epoch=epoch + 1, step=progress["step"], train_seconds=train_seconds, **{k: row[k] for k in columns},
                      **{f"val_{k}": val_terms[k] for k in columns if k in val_terms})
            watch.scalars(epoch + 1, {"steps_per_s": len(batches) / train_seconds})
            progress["epoch"] = epoch + 1
            check_weights(model, f"epoch {epoch + 1}, step {progress['step']}")
            checkpoint.save(ckpt_path, {**model.state(), "optimizer": opt.state_dict(), "progress": progress,
                                        "vae_fingerprint": vae_fingerprint, **checkpoint.dataset_record(refs, dataset)})
            plots.curves(args.run / "metrics" / "mdnrnn.csv", "epoch", ["nll", "val_nll"],
                         args.run / "plots" / "mdnrnn_loss.png", f"M ({args.core}): next-z NLL per dim", logy=False)
            shown = f", val nll {val_terms['nll']:.3f}" if val_terms else ""
            if "update_fraction" in row:
                plots.curves(args.run / "metrics" / "mdnrnn.csv", "epoch", ["update_fraction", "val_update_fraction"],
                             args.run / "plots" / "mdnrnn_update_fraction.png",
                             f"M ({args.core}): share of state dims updated per step (prior κ = {options['kappa']})")
                shown += f", update fraction {row['update_fraction']:.3f}"
            print(f"epoch {epoch + 1}: nll {row['nll']:.3f}{shown}")
    print(f"M trained for {progress['epoch']} epoch(s): {ckpt_path}")


def settings(config: dict) -> dict:
    """What a checkpoint's M must share with this run to resume it: sizes, core and the core's options."""
    return {**{k: config[k] for k in ("z_dim", "action_dim", "hidden", "mixtures", "core")},
            "reward_heads": config.get("reward_heads", 1), **config["core_options"]}


@torch.no_grad()
def encode_latents(args, vae_state: dict, refs, dataset: str, device: torch.device) -> list[latent_data.LatentEpisode]:
    """Encode every stored frame once with V into <run>/latents.h5, unless it is already current."""
    path = Path(os.path.normpath(args.run / args.latents))
    # Keyed by exactly what it is derived from: V's weights and the dataset's episodes.
    fingerprint = checkpoint.weights_hash(vae_state["model"])
    ids = np.array([r.id for r in refs])
    attrs = latent_data.read_attrs(path)
    if attrs.get("vae_fingerprint") == fingerprint and attrs.get("dataset") == dataset:
        return latent_data.read(path)
    vae = ConvVAE.from_state(vae_state).to(device).eval()

    def encoded():
        for ref in progress_bar(refs, desc="encode frames with V", unit="ep"):
            ep = read_episode(ref)
            frames = torch.from_numpy(ep.observations)
            mus, logvars = [], []
            for s in range(0, len(frames), args.encode_batch):
                mu, logvar = vae.encode(to_input(frames[s: s + args.encode_batch].to(device)))
                mus.append(mu.float().cpu())
                logvars.append(logvar.float().cpu())
            yield latent_data.LatentEpisode(ep.id, torch.cat(mus).numpy(), torch.cat(logvars).numpy(),
                                            args.source.encode_actions(ep.actions),
                                            ep.rewards, ep.terminations)

    latent_data.write(path, encoded(), {"vae_fingerprint": fingerprint, "dataset": dataset, "episode_ids": ids,
                                        "z_dim": vae.z_dim})
    return latent_data.read(path)

