"""Where a stage reads its rollouts: the data folder --data names or, for ``--data minari:NAME_OR_PATH``, the run's
copy of that Minari dataset (``pipeline.minari_io``), made on first use."""
from __future__ import annotations

import argparse

from data.store import EpisodeRef, RolloutStore
from pipeline import minari_io
from pipeline.contract import lock


def open_store(args: argparse.Namespace) -> tuple[RolloutStore, list[EpisodeRef]]:
    """The store and its episodes (of ``args.env``; none is an error naming what to run). Refused while another
    process writes the folder (01_collect.py holds its lock): a stage reads a dataset whole, never the part of
    it collected so far."""
    folder = args.data
    if minari_io.is_spec(args.data):
        folder = minari_io.materialise(str(args.data), args.run, args.source, args.env)
    else:
        lock.check_idle(folder, "--data")
    store = RolloutStore(folder)
    return store, store.require(args.env)
