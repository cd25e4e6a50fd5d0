"""Training curves where RL users watch them, besides the CSVs: TensorBoard or Weights & Biases (``--log``).

Every row a stage writes to its metrics CSV goes to each sink too, under ``<stage>/<column>`` at the row's key
(V's step, M's epoch, C's generation), so TensorBoard shows exactly the CSV's numbers. TensorBoard's event files
go to ``<run>/tb/<stage>/`` (``tensorboard --logdir <run>/tb``). Weights & Biases is used only when asked with
``--log wandb`` and installed; nothing is sent otherwise.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np

from pipeline.contract.errors import UsageError

CHOICES = ("tensorboard", "wandb")


def add_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", action="append", choices=CHOICES, default=[], metavar="{" + ",".join(CHOICES) + "}",
                   help="also log the metrics live: tensorboard (to <run>/tb/) or wandb (if installed; nothing is "
                        "sent otherwise); repeat the flag for both. The CSVs, plots and report are written either way")


class Live:
    """The live sinks of one stage. ``resume_after``: the last key kept from an earlier run; TensorBoard hides that
    run's later events, so a resumed curve has no doubled stretch."""

    def __init__(self, run: Path, stage: str, kinds: list[str], resume_after: float | None = None,
                 config: dict | None = None):
        self.stage, self.tb, self.wandb = stage, None, None
        if "tensorboard" in kinds:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UsageError("--log tensorboard needs the tensorboard package: pip install tensorboard, or drop "
                                 "the flag") from None
            purge = int(resume_after) + 1 if resume_after else None
            check(run, stage, kinds)
            self.tb = SummaryWriter(str(run / "tb" / stage), purge_step=purge, flush_secs=30)
        if "wandb" in kinds:
            try:
                import wandb
            except ImportError:
                raise UsageError("--log wandb needs the wandb package: pip install wandb (and wandb login), or drop "
                                 "the flag") from None
            plain = {k: v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
                     for k, v in (config or {}).items()}
            self.wandb = wandb.init(project="world-models", group=run.name, job_type=stage, dir=str(run),
                                    config=plain, reinit=True)

    def scalars(self, step: float, row: dict) -> None:
        values = {f"{self.stage}/{k}": float(v) for k, v in row.items() if _finite(v)}
        if self.tb is not None:
            for tag, value in values.items():
                self.tb.add_scalar(tag, value, int(step))
        if self.wandb is not None:
            self.wandb.log({**values, f"{self.stage}/step": step})

    def image(self, name: str, step: float, path: Path) -> None:
        """A PNG the stage just wrote (V's reconstruction grid), as an image at ``step``."""
        if self.tb is None and self.wandb is None:
            return
        from PIL import Image
        pixels = np.asarray(Image.open(path).convert("RGB"))
        if self.tb is not None:
            self.tb.add_image(f"{self.stage}/{name}", pixels, int(step), dataformats="HWC")
        if self.wandb is not None:
            import wandb
            self.wandb.log({f"{self.stage}/{name}": wandb.Image(pixels), f"{self.stage}/step": step})

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()

    def __enter__(self) -> Live:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check(run: Path, stage: str, kinds: list[str]) -> None:
    """The folders TensorBoard's writer will make and write are folders this process can write (or absent): else
    one line. ``Live`` checks this itself; a stage that works before it opens its sinks checks it first."""
    if "tensorboard" not in kinds:
        return
    for folder in (run / "tb", run / "tb" / stage):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"--log tensorboard writes into {folder}, which is a file: move it away, or drop "
                             "--log tensorboard")
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"--log tensorboard writes into {folder}, which this user cannot write: change its "
                             "permissions, or drop --log tensorboard")


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
