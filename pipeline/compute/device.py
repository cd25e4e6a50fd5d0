"""The device choice, made once: ``--device auto|cpu|cuda``."""
from __future__ import annotations

import contextlib

import torch

from pipeline.contract.errors import UsageError

CHOICES = ("auto", "cpu", "cuda")
# The device types that train in bf16 mixed precision and run V's convolutions channels-last: CUDA's (tensor
# cores). The tests add "cpu", where torch supports both, so that these paths run in CI, which has no GPU.
MIXED_PRECISION = {"cuda"}
CHANNELS_LAST = {"cuda"}


def resolve(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)


def autocast(device: torch.device):
    """bf16 mixed precision where ``MIXED_PRECISION`` says (CUDA); full precision elsewhere."""
    if device.type in MIXED_PRECISION:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def place(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` on ``device``; channels-last where ``CHANNELS_LAST`` says (NHWC convolutions for the tensor
    cores; frames arrive NHWC already, see ``models.vae.to_input``)."""
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if device.type in CHANNELS_LAST else module
