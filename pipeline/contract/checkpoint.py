"""The checkpoint format, defined once: a dict of tensors and plain values, written atomically.

Every ``.pt`` file loads with ``torch.load(path, weights_only=True)`` and holds the config needed to
rebuild its module under ``"config"``.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import torch

from data.atomic import write_bytes
from data.store import EpisodeRef, index_hash
from pipeline.contract.errors import UsageError


def save(path: Path, payload: dict) -> None:
    """Write then rename, so a kill never leaves a half-written checkpoint under the real name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())


def load(path: Path, made_by: str) -> dict:
    """Load a checkpoint; a missing or damaged file, or one with NaN or infinite weights, is a UsageError naming
    ``made_by``, the script to run."""
    if not path.exists():
        raise UsageError(f"{path} not found: run {made_by} first (or pass the right --run)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError):
        raise UsageError(f"{path} is corrupted or not a checkpoint: delete it and run {made_by} again") from None
    if not isinstance(payload, dict) or "config" not in payload:
        raise UsageError(f"{path} is not a checkpoint of this project: delete it and run {made_by} again")
    weights = [t for t in payload.get("model", {}).values() if t.is_floating_point()]
    if weights and not torch.stack([torch.isfinite(t).all() for t in weights]).all():
        raise UsageError(f"{path} holds NaN or infinite weights: delete it and run {made_by} again (with a lower --lr)")
    return payload


def weights_hash(model_state: dict) -> str:
    """A digest of a model's weights (its state dict): equal exactly when every tensor is equal, bit for bit."""
    h = hashlib.sha256()
    for name in sorted(model_state):
        tensor = model_state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def dataset_record(refs: list[EpisodeRef], dataset: str) -> dict:
    """What a checkpoint records of the dataset it was trained on: its digest (``data.store.index_hash``) and the
    latest round of iterative training among its episodes."""
    return {"dataset": dataset, "dataset_round": max((ref.round for ref in refs), default=0)}


def trained_on(state: dict, refs: list[EpisodeRef], attrs: dict) -> bool:
    """Whether the episodes ``refs`` (of a folder with shard attributes ``attrs``) are the dataset the checkpoint
    ``state`` was trained on: the same, or the same with episodes of later rounds of iterative training added
    (iterate.py adds a round's episodes on purpose, to the data its V saw). A checkpoint that records no dataset
    (written by an older version) cannot tell, and is taken as it is."""
    seen = state.get("dataset")
    if seen is None or index_hash(refs, attrs) == seen:
        return True
    earlier = [ref for ref in refs if ref.round <= state.get("dataset_round", 0)]
    return len(earlier) < len(refs) and index_hash(earlier, attrs) == seen
