"""Package a finished run for shipping: what a user needs to score it, dream with it and read how it was made.

    python package_run.py --run results/driver-carracing --to pretrained/carracing

Copies V, M and C as weights only (no optimiser state, no ES state), config.json (data folders pointed at
the recipe's own, run folders at the destination), the metrics, plots, controller_eval.json, report.html and
driving.gif; and the encoded latents of a few episodes, so that ``05_dream.py --play`` has real frames to
start dreams from. No rollouts are copied. Afterwards ``04_train_controller.py --run DEST --evaluate 100`` and
``05_dream.py --run DEST --play`` work straight away.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import h5py

from pipeline.contract import checkpoint
from pipeline.contract.errors import UsageError
from pipeline.contract.runconfig import atomic_write_text, latents_path, load_config

WEIGHTS = (("vae.pt", "02_train_vae.py"), ("mdnrnn.pt", "03_train_mdnrnn.py"), ("controller.pt", "04_train_controller.py"))
FILES = ("controller_eval.json", "controller_reselect.json", "report.html")
# The dreams' GIFs are in report.html already; driving.gif is shipped on its own too, to be looked at directly.
FOLDERS = (("metrics", "*.csv"), ("plots", "*.png"), ("dreams", "driving.gif"), ("dreams", "*.json"))


def package(run: Path, dest: Path, data: str, episodes: int = 4) -> int:
    """Write the package of ``run`` into ``dest`` (which must not exist yet); returns its size in bytes."""
    if not (run / "controller.pt").exists():
        raise UsageError(f"{run} has no controller.pt: train C with 04_train_controller.py first")
    if dest.exists():
        raise UsageError(f"{dest} already exists: remove it or choose another --to")
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    vae_state = None
    for name, made_by in WEIGHTS:
        state = checkpoint.load(run / name, made_by)
        state.pop("optimizer", None)
        checkpoint.save(staging / name, state)
        vae_state = state if name == "vae.pt" else vae_state
    config = load_config(run)
    for entry in config.values():
        for key in ("data",):
            if key in entry:
                entry[key] = data
        if "run" in entry:
            entry["run"] = str(dest)
        entry.pop("latents", None)  # shipped beside the weights, where a run's own latents are looked for
    atomic_write_text(staging / "config.json", json.dumps(config, indent=2, sort_keys=True))
    for name in FILES:
        if (run / name).exists():
            shutil.copy2(run / name, staging / name)
    for folder, pattern in FOLDERS:
        for path in sorted((run / folder).glob(pattern)):
            (staging / folder).mkdir(exist_ok=True)
            shutil.copy2(path, staging / folder / path.name)
    copy_latents(latents_path(run), staging / "latents.h5", checkpoint.weights_hash(vae_state["model"]), episodes)
    staging.rename(dest)
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def copy_latents(source: Path, target: Path, vae_fingerprint: str, episodes: int) -> None:
    """The first ``episodes`` episodes of ``source`` with its attributes; refused if V has changed since."""
    if not source.exists():
        raise UsageError(f"{source} not found: run 03_train_mdnrnn.py on this run first")
    with h5py.File(source, "r") as src:
        if src.attrs.get("vae_fingerprint") != vae_fingerprint:
            raise UsageError(f"{source} was not encoded by this run's V: run 03_train_mdnrnn.py again to re-encode it")
        with h5py.File(target, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for key in sorted(src, key=lambda k: src[k].attrs.get("id", 0))[:episodes]:
                src.copy(src[key], dst, name=key)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="the finished run folder")
    p.add_argument("--to", type=Path, required=True, help="the package folder to create (e.g. pretrained/carracing)")
    p.add_argument("--data", default="data/driver-carracing",
                   help="the data folder the package's config.json names (where the recipe collects its rollouts)")
    p.add_argument("--episodes", type=int, default=4, help="episodes of encoded latents to ship for dreams")
    args = p.parse_args(argv)
    size = package(args.run, args.to, args.data, args.episodes)
    print(f"{args.to}: {size / 2**20:.1f} MB")
