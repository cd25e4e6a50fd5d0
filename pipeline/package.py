"""Package a finished run for shipping: what a user needs to score it, dream with it and read how it was made.

    python package_run.py --run results/driver-carracing --to pretrained/carracing

Copies V, M and C as weights only (no optimiser state, no ES state), config.json (data folders pointed at
the recipe's own, run folders at the destination), the metrics, plots, controller_eval.json, report.html and
driving.gif; and the encoded latents of a few episodes, so that ``05_dream.py --play`` has real frames to
start dreams from. No rollouts are copied. Afterwards ``04_train_controller.py --run DEST --evaluate 100`` and
``05_dream.py --run DEST --play`` work straight away.
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py

from data import atomic
from data.store import new_h5
from pipeline.contract import checkpoint, cli, lock
from pipeline.contract.errors import UsageError
from pipeline.contract.runconfig import atomic_write_text, latents_path, load_config
from pipeline.world_model import check_controller, fingerprint_of

WEIGHTS = (("vae.pt", "02_train_vae.py"), ("mdnrnn.pt", "03_train_mdnrnn.py"), ("controller.pt", "04_train_controller.py"))
FILES = ("controller_eval.json", "controller_reselect.json", "report.html")
# The dreams' GIFs are in report.html already; driving.gif is shipped on its own too, to be looked at directly.
FOLDERS = (("metrics", "*.csv"), ("plots", "*.png"), ("dreams", "driving.gif"), ("dreams", "*.json"))


def package(run: Path, dest: Path, data: str, episodes: int = 4) -> int:
    """Write the package of ``run`` into ``dest`` (which must not exist yet); returns its size in bytes. The run must
    be finished (no process holds it) and whole: M trained on this V, C evolved on this V and M, the latents
    encoded by this V. The package is built beside ``dest`` and renamed into place (``data.atomic``)."""
    if not (run / "controller.pt").exists():
        raise UsageError(f"{run} has no controller.pt: train C with 04_train_controller.py first")
    lock.check_idle(run, "--run", "packaging it now would ship whatever it holds at this moment")
    if len(dest.name.encode()) > atomic.NAME_MAX:
        raise UsageError(f"--to {dest}: its last name has {len(dest.name.encode())} bytes, more than a file system "
                         f"allows ({atomic.NAME_MAX}): choose a shorter one")
    if dest.exists():
        raise UsageError(f"{dest} already exists: remove it or choose another --to")
    lock.check_writable(dest, "--to")
    states = {name: checkpoint.load(run / name, made_by) for name, made_by in WEIGHTS}
    check_chain(run, states)
    with atomic.staged_folder(dest) as staging:
        _write(run, staging, dest, data, states, episodes)
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def check_chain(run: Path, states: dict) -> None:
    """M was trained on this V's codes and C evolved on this V and M: a package ships one world model."""
    vae, m = states["vae.pt"], states["mdnrnn.pt"]
    if m.get("vae_fingerprint", checkpoint.weights_hash(vae["model"])) != checkpoint.weights_hash(vae["model"]):
        raise UsageError(f"{run / 'mdnrnn.pt'} was trained on the codes of another V than {run / 'vae.pt'} (retrained "
                         "since?): run 03_train_mdnrnn.py again on this V, then 04_train_controller.py")
    check_controller(states["controller.pt"], run / "controller.pt", fingerprint_of(vae["model"], m["model"]))


def _write(run: Path, staging: Path, dest: Path, data: str, states: dict, episodes: int) -> None:
    for name, state in states.items():
        state.pop("optimizer", None)
        checkpoint.save(staging / name, state)
    vae_state = states["vae.pt"]
    config = load_config(run)
    relocate = relocation(run, dest, data, config)
    for entry in config.values():
        entry.pop("latents", None)  # shipped beside the weights, where a run's own latents are looked for
        for key, value in entry.items():
            if isinstance(value, str):
                entry[key] = relocate(value)
    atomic_write_text(staging / "config.json", json.dumps(config, indent=2, sort_keys=True))
    for name in FILES:
        if (run / name).exists():
            shutil.copy2(run / name, staging / name)
    report = staging / "report.html"
    if report.exists():  # its tables show the config as the run had it
        report.write_text(relocate(report.read_text(encoding="utf-8")), encoding="utf-8")
    for folder, pattern in FOLDERS:
        for path in sorted((run / folder).glob(pattern)):
            (staging / folder).mkdir(exist_ok=True)
            shutil.copy2(path, staging / folder / path.name)
    copy_latents(latents_path(run), staging / "latents.h5", checkpoint.weights_hash(vae_state["model"]), episodes)


def relocation(run: Path, dest: Path, data: str, config: dict) -> Callable[[str], str]:
    """A text's paths moved from the training machine to the package's: the run folder (and what lies in it) to
    ``dest``, every data folder the config names to ``data``. A path is replaced only where it ends (at "/" or a
    character no path name here holds), so the run folder does not match a longer name it begins, such as its data
    folder's."""
    folders = {entry["data"]: data for entry in config.values() if isinstance(entry.get("data"), str)}
    runs = {entry["run"] for entry in config.values() if isinstance(entry.get("run"), str)} | {str(run), str(run.resolve())}
    folders.update(dict.fromkeys(runs, str(dest)))
    olds = sorted(folders, key=len, reverse=True)  # the longest first: a folder inside another is its own match
    pattern = re.compile("|".join(re.escape(old) for old in olds) + r"(?![\w.+-])")
    return lambda text: pattern.sub(lambda m: folders[m.group(0)], text)


def copy_latents(source: Path, target: Path, vae_fingerprint: str, episodes: int) -> None:
    """The first ``episodes`` episodes of ``source`` with its attributes; refused if V has changed since."""
    if not source.exists():
        raise UsageError(f"{source} not found: run 03_train_mdnrnn.py on this run first")
    with h5py.File(source, "r") as src:
        if src.attrs.get("vae_fingerprint") != vae_fingerprint:
            raise UsageError(f"{source} was not encoded by this run's V: run 03_train_mdnrnn.py again to re-encode it")
        with new_h5(target) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for key in sorted(src, key=lambda k: src[k].attrs.get("id", 0))[:episodes]:
                src.copy(src[key], dst, name=key)


def main(argv: list[str] | None = None) -> None:
    p = cli.Parser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="the finished run folder")
    p.add_argument("--to", type=Path, required=True, help="the package folder to create (e.g. pretrained/carracing)")
    p.add_argument("--data", default="data/driver-carracing",
                   help="the data folder the package's config.json names (where the recipe collects its rollouts)")
    p.add_argument("--episodes", type=cli.positive_int_up_to(cli.MAX_EPISODES), default=4,
                   help="episodes of encoded latents to ship for dreams")
    args = p.parse_args(argv)
    size = package(args.run, args.to, args.data, args.episodes)
    print(f"{args.to}: {size / 2**20:.1f} MB")
