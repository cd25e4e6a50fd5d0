"""The device choice, made once: ``--device auto|cpu|cuda``."""
from __future__ import annotations

import contextlib

import torch

from pipeline.errors import UsageError

CHOICES = ("auto", "cpu", "cuda")


def resolve(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 mixed precision on CUDA; full precision on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
