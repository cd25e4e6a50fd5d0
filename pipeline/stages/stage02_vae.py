"""Stage 02: train V, the convolutional VAE, on frames streamed from data/<env>/.

    python 02_train_vae.py --env carracing --epochs 1 --batch 100

Checkpoints (with the optimiser) go to <run>/vae.pt at every epoch end and every --checkpoint-minutes;
re-running the same command resumes. Writes metrics/vae.csv, plots/vae_loss.png and a reconstruction
grid per epoch (plots/vae_recon_epoch_NNN.png).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from data.frames import FrameBlocks, frames_bytes, load_frames, sample_frames, split
from data.store import index_hash
from models.vae import ConvVAE, VAEConfig, to_frames, to_input
from pipeline.compute import device as devices
from pipeline.contract import checkpoint, cli, lock
from pipeline.contract.cli import (
    Parser,
    fraction,
    learning_rate,
    nonneg_float,
    parse_stage_args,
    positive_float,
    positive_int,
    stage_parser,
)
from pipeline.contract.errors import UsageError
from pipeline.contract.runconfig import check_resume, save_stage_config
from pipeline.reporting import live, plots
from pipeline.reporting.metrics import CsvLog
from pipeline.reporting.progress import bar as progress_bar
from pipeline.rollouts import open_store
from pipeline.training import Averages, check_finite, check_weights, resume, vae_step, vae_validate

# What may differ when a run resumes: how long, how fast, where (a shuffle block is a memory bound); not the loss,
# the batch size or the data.
MAY_CHANGE = {"epochs", "lr", "loader_workers", "frames_in_memory", "log_every", "checkpoint_minutes", "device",
              "block_episodes", "val_frames", "log"}
FIELDS = ["step", "epoch", "frames", "loss", "recon", "kl", "val_loss", "val_recon", "val_kl"]


def parser() -> Parser:
    p = stage_parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=positive_int, default=1, help="passes over the training frames (paper: 1)")
    p.add_argument("--batch", type=positive_int, default=100, help="frames per batch")
    p.add_argument("--lr", type=learning_rate, default=1e-4, help="Adam learning rate")
    p.add_argument("--z-dim", type=positive_int, default=32, help="latent size")
    p.add_argument("--kl-tolerance", type=nonneg_float, default=0.5, help="KL floor per latent dim (loss uses max(KL, tol*z))")
    p.add_argument("--val-fraction", type=fraction, default=0.05, help="share of episodes held out (by id)")
    p.add_argument("--val-frames", type=positive_int, default=5000, help="frames scored per validation pass")
    p.add_argument("--block-episodes", type=positive_int, default=16,
                   help="episodes whose frames are shuffled together; memory is bounded by one block per loader")
    p.add_argument("--loader-workers", type=cli.nonneg_int_up_to(cli.MAX_WORKERS), default=1,
                   help="processes reading HDF5 (0: in the main process)")
    p.add_argument("--frames-in-memory", choices=["auto", "yes", "no"], default="auto",
                   help="decode the training frames once and keep them on --device (GPU memory on CUDA) instead of "
                        "streaming them from HDF5 every epoch; auto: when they take less than half the free memory. "
                        "Same batches either way")
    p.add_argument("--log-every", type=positive_int, default=50, help="steps per metrics row")
    p.add_argument("--checkpoint-minutes", type=positive_float, default=10.0, help="mid-epoch checkpoint interval")
    p.add_argument("--device", choices=devices.CHOICES, default="auto", help="auto: CUDA (bf16) when present")
    live.add_flag(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser()
    args = parse_stage_args(p, "vae", argv)
    return args


def run(args: argparse.Namespace) -> None:
    """Train V in --run, which this process holds throughout (``pipeline.contract.lock``): a second one is refused."""
    with lock.hold(args.run, "--run"):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    device = devices.resolve(args.device)
    torch.manual_seed(args.seed)

    store, refs = open_store(args)
    dataset = index_hash(refs, store.attrs())
    train, val = split(refs, args.val_fraction)
    ckpt_path = args.run / "vae.pt"
    vae = devices.place(ConvVAE(VAEConfig(args.z_dim, args.kl_tolerance)), device)
    opt = torch.optim.Adam(vae.parameters(), lr=args.lr)
    progress = {"epoch": 0, "step": 0, "frames": 0, "blocks_done": []}
    def same_z(state: dict) -> None:
        if state["config"]["z_dim"] != args.z_dim:
            raise UsageError(f"{ckpt_path} has --z-dim {state['config']['z_dim']}, not {args.z_dim}: "
                             "pass the same --z-dim, or a new --run")
        check_resume(args.run, "vae", args, MAY_CHANGE, dataset=dataset)

    resumed = resume(ckpt_path, "02_train_vae.py", vae, opt, args.lr, same_z)
    if resumed:
        progress = resumed
        print(f"resuming from {ckpt_path}: epoch {progress['epoch']}, step {progress['step']}")

    def save() -> None:
        check_weights(vae, f"step {progress['step']}")
        # The digest of the episodes V learns from, which 03 checks the data it encodes against.
        checkpoint.save(ckpt_path, {**vae.state(), "optimizer": opt.state_dict(),
                                    "progress": {**progress, "blocks_done": sorted(progress["blocks_done"])},
                                    "fingerprint": checkpoint.weights_hash(vae.state_dict()),
                                    **checkpoint.dataset_record(refs, dataset)})

    # The metrics are checked (and rows past the checkpoint dropped) before anything else is written.
    watch = live.Live(args.run, "vae", args.log, progress["step"], vars(args))
    log = CsvLog(args.run / "metrics" / "vae.csv", FIELDS, key="step", resume_after=progress["step"], live=watch)
    save_stage_config(args.run, "vae", args, train_episodes=len(train), val_episodes=len(val), dataset=dataset)
    grid = torch.from_numpy(sample_frames(val or train, 8, args.seed))
    val_batches = [torch.from_numpy(f) for f in _val_frames(val or train, args)]
    in_memory = frames_in_memory(args.frames_in_memory, train, device) and progress["epoch"] < args.epochs
    decoded = load_frames(progress_bar(train, desc="frames into memory", unit="ep"), device) if in_memory else None
    last_save = time.monotonic()
    with watch:
        for epoch in range(progress["epoch"], args.epochs):
            done = set(progress["blocks_done"])
            data = FrameBlocks(train, args.batch, args.block_episodes, args.seed, epoch, skip_blocks=done,
                               frames=decoded)
            # The loader draws its workers' base seed from its own generator, not from torch's global one (which
            # samples V's z), so streamed and in-memory frames train alike.
            loader = data if in_memory else DataLoader(data, batch_size=None, num_workers=args.loader_workers,
                                                       pin_memory=device.type == "cuda",
                                                       generator=torch.Generator().manual_seed(args.seed))
            avg = Averages()
            batches = len(data)
            bar = progress_bar(loader, total=batches, desc=f"vae epoch {epoch + 1}/{args.epochs}")
            for i, (block, last_of_block, frames) in enumerate(bar):
                terms = vae_step(vae, opt, frames, device)
                progress["step"] += 1
                check_finite(terms, f"step {progress['step']} (epoch {epoch + 1})")
                avg.add(terms, len(frames))
                progress["frames"] += len(frames)
                if progress["step"] % args.log_every == 0 and i < batches - 1:  # the epoch's last row comes below
                    log.write(step=progress["step"], epoch=epoch + 1, frames=progress["frames"], **avg.pop())
                if last_of_block:
                    done.add(block)
                    progress["blocks_done"] = done
                    if time.monotonic() - last_save > 60 * args.checkpoint_minutes:
                        save()
                        last_save = time.monotonic()
            val_terms = vae_validate(vae, val_batches, device)
            check_finite({"loss": torch.tensor(val_terms["loss"])}, f"the validation after epoch {epoch + 1}")
            row = avg.pop() if avg.count else {}
            log.write(step=progress["step"], epoch=epoch + 1, frames=progress["frames"], **row,
                      **{f"val_{k}": v for k, v in val_terms.items()})
            progress.update(epoch=epoch + 1, blocks_done=set())
            save()
            last_save = time.monotonic()
            watch.image("reconstruction", progress["step"], _plot(vae, grid, device, args, epoch + 1))
            print(f"epoch {epoch + 1}: val loss {val_terms['loss']:.1f} (recon {val_terms['recon']:.1f}, "
                  f"kl {val_terms['kl']:.1f})")
    if progress["epoch"] >= args.epochs and not progress["step"]:
        raise UsageError(f"no training frames in {args.data}: collect more episodes")
    print(f"V trained for {progress['epoch']} epoch(s), {progress['step']} steps: {ckpt_path}")


def frames_in_memory(choice: str, refs, device: torch.device) -> bool:
    """--frames-in-memory: yes, no, or (auto) whether the decoded frames take under half the free memory of
    ``device`` (the GPU's on CUDA, else the machine's available RAM)."""
    if choice != "auto":
        return choice == "yes"
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        try:  # Linux: what can be had without swapping, page cache included
            line = next(x for x in open("/proc/meminfo") if x.startswith("MemAvailable:"))
            free = int(line.split()[1]) * 1024
        except (OSError, StopIteration, ValueError):  # elsewhere: stream
            return False
    return frames_bytes(refs) < free / 2


def _val_frames(refs, args) -> list[np.ndarray]:
    """A fixed set of validation batches (the first --val-frames frames of a fixed episode order)."""
    out, n = [], 0
    for _, _, frames in FrameBlocks(refs, args.batch, args.block_episodes, args.seed, epoch=0):
        out.append(frames.numpy())
        n += len(frames)
        if n >= args.val_frames:
            break
    return out


@torch.no_grad()
def _plot(vae: ConvVAE, grid: torch.Tensor, device: torch.device, args, epoch: int) -> Path:
    """Plots the losses and a reconstruction grid; returns the grid's path."""
    vae.eval()
    mu, _ = vae.encode(to_input(grid.to(device)))
    recon = to_frames(vae.decode(mu))
    vae.train()
    path = args.run / "plots" / f"vae_recon_epoch_{epoch:03d}.png"
    plots.image_rows([grid.numpy(), recon.numpy()], ["real", "reconstruction (decoded mu)"], path, f"V after epoch {epoch}")
    plots.curves(args.run / "metrics" / "vae.csv", "step", ["loss", "val_loss"],
                 args.run / "plots" / "vae_loss.png", "V: loss per frame (squared error + KL)")
    return path

