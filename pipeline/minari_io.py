"""Minari datasets in and out (https://minari.farama.org, the Farama Foundation's format for offline RL data).

Out: ``export`` writes a data folder's episodes as a Minari dataset through Minari's own API
(``minari.create_dataset_from_buffers``): ``metadata.json``, spaces serialised by Minari, and one
``data/main_data.hdf5`` with episodes 0…N−1, in the order of their ids here. The observation space is the
stored frames' (64×64×3 uint8), and the frames are stored losslessly (``jpeg_encoding=False``): Minari's
default JPEG encoding would change the pixels V trains on.

In: ``--data minari:NAME_OR_PATH`` names a local Minari dataset (its id, its folder, or that folder's
``data/``). ``materialise`` turns it once into a data folder of this project under the run
(``<run>/minari-data/``), each frame made 64×64 the way its env's source makes them; the stages then read that
folder as they read any other, and re-running finds it complete.
"""
from __future__ import annotations

import functools
import multiprocessing as mp
import os
import resource
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np

import envs
from data import atomic
from data.store import Episode, RolloutStore, ShardInfo
from envs.base import EnvSource
from pipeline.contract import lock
from pipeline.contract.errors import RunFailed, UsageError

SCHEME = "minari:"
FRAME_SHAPE = (64, 64, 3)
FOLDER = "minari-data"  # under the run: the dataset's episodes as this project stores them
# The Gymnasium ids whose frames a source here knows how to make 64×64 (and the ids an export records).
GYM_IDS = {"CarRacing-v3": "carracing", "FastCarRacing-v3": "carracing", "ShapeHerd-v0": "shapeherd"}


def is_spec(data) -> bool:
    return str(data).startswith(SCHEME)


def _minari():
    try:
        import minari
    except ImportError:
        raise UsageError("Minari datasets need the minari package: pip install 'minari[create]==0.5.4'") from None
    return minari


def load(spec: str):
    """The ``MinariDataset`` that ``minari:NAME_OR_PATH`` names: a folder (the dataset's, or its ``data/``), else
    a dataset id in Minari's local store (``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``)."""
    minari = _minari()
    name = spec[len(SCHEME):]
    if not name:
        raise UsageError("argument --data: minari: needs a dataset id or folder, e.g. minari:carracing/demo-v0")
    folder = Path(name).expanduser()
    for candidate in (folder / "data", folder):
        if (candidate / "metadata.json").is_file():
            return _opened(functools.partial(minari.MinariDataset, candidate), spec)
    if folder.exists():
        raise UsageError(f"argument --data: {folder} holds no Minari dataset (no metadata.json in it or in its data/)")
    if not minari.storage.get_dataset_path(name).exists():
        raise UsageError(f"argument --data: no local Minari dataset {name!r} (none in {minari.storage.get_dataset_path()}); "
                         "`minari list local` lists them, or pass the dataset's folder as minari:PATH")
    return _opened(lambda: minari.load_dataset(name, download=False), spec)


def _opened(open_dataset, spec: str):
    """A Minari dataset opened by ``open_dataset()``; what Minari raises on a damaged one is one line."""
    try:
        return open_dataset()
    except UsageError:
        raise
    except Exception as e:  # FileNotFoundError, ValueError, OSError from h5py, …, depending on what is damaged
        raise UsageError(f"argument --data: {spec} cannot be opened ({_first_line(e)}): it is damaged or incomplete; "
                         "restore it, or write it again (export_minari.py)") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _episode(dataset, i: int, spec: str):
    """Episode ``i`` of ``dataset``; a damaged data file (a truncated main_data.hdf5) is one line."""
    try:
        return dataset[i]
    except Exception as e:  # h5py's OSError on a truncated file, KeyError on a missing group, …
        path = getattr(getattr(dataset, "storage", None), "data_path", spec)
        raise UsageError(f"argument --data: episode {i} of {spec} cannot be read from {path} ({_first_line(e)}): the "
                         "dataset is damaged or incomplete; restore it, or write it again (export_minari.py)") from None


def env_of(dataset) -> str | None:
    """The source (``--env``) a dataset's recorded env is, if it is one of this project's."""
    spec = dataset.spec.env_spec
    return GYM_IDS.get(spec.id) if spec is not None else None


def check(dataset, spec: str, source: EnvSource, env: str) -> None:
    """Refuse, in one line, a dataset whose observations are not images this project can make 64×64, or whose
    actions are not ``env``'s."""
    obs = dataset.observation_space
    image = isinstance(obs, gym.spaces.Box) and obs.dtype == np.uint8 and len(obs.shape) == 3 and obs.shape[2] == 3
    if not image:
        raise UsageError(f"argument --data: {spec} has observations {obs}, not images (H×W×3 uint8): the world "
                         "model learns from pixels, so it needs a dataset of frames")
    if tuple(obs.shape) != FRAME_SHAPE and env_of(dataset) != env:
        recorded = dataset.spec.env_spec.id if dataset.spec.env_spec is not None else "none recorded"
        raise UsageError(f"argument --data: {spec} has {obs.shape[0]}×{obs.shape[1]} frames from env {recorded}; only "
                         f"64×64 frames, or the frames of {', '.join(GYM_IDS)} (made 64×64 by their source), can be "
                         "read here")
    act, mine = dataset.action_space, source.action_space
    same = (isinstance(act, gym.spaces.Discrete) and source.discrete and int(act.n) == source.action_dim) or (
        isinstance(act, gym.spaces.Box) and not source.discrete and act.shape == mine.shape)
    if not same:
        raise UsageError(f"argument --data: {spec} has actions {act}, but --env {env} acts in {mine}: pass the --env "
                         "the dataset was collected on")


def frames(observations: np.ndarray, source: EnvSource) -> np.ndarray:
    """A dataset episode's observations → (T+1, 64, 64, 3) uint8: as they are if already 64×64, else made so by
    the source's own preprocessing (the same as when it collects)."""
    observations = np.asarray(observations)
    if observations.shape[1:] == FRAME_SHAPE:
        return observations.astype(np.uint8, copy=False)
    return np.stack([source.preprocess(o) for o in observations])


def materialise(spec: str, run: Path, source: EnvSource, env: str, shard_size: int = 100) -> Path:
    """The data folder (``<run>/minari-data``) holding the dataset ``spec`` names, built or completed now."""
    from pipeline.reporting.progress import bar

    dataset = load(spec)
    check(dataset, spec, source, env)
    if dataset.total_episodes == 0:
        raise UsageError(f"argument --data: {spec} holds no episodes: pass a Minari dataset with episodes in it")
    dataset_id = dataset.spec.dataset_id
    dest = run / FOLDER
    store = RolloutStore(dest)
    info = ShardInfo(env=env, spaces=source.space_json(), preprocessing=f"{source.preprocessing} (from Minari)",
                     extra={"minari": dataset_id, "policy": "minari"})
    if store.files():
        made_from = str(store.attrs().get("minari", ""))
        if made_from != dataset_id:
            raise UsageError(f"argument --data: {dest} holds the episodes of {made_from or 'another collection'}, "
                             f"not of {dataset_id}: pass another --run, or delete {dest}")
        store.recover(info)
    have = {ref.id for ref in store.index()} if store.files() else set()
    missing = [i for i in range(dataset.total_episodes) if i not in have]
    staged = []
    for i in bar(missing, desc=f"episodes from {dataset_id}", unit="ep") if missing else []:
        ep = _episode(dataset, i, spec)
        staged.append(store.stage(Episode(
            id=i, observations=frames(ep.observations, source), actions=source.stored_actions(list(ep.actions)),
            rewards=np.asarray(ep.rewards, np.float32), terminations=np.asarray(ep.terminations, bool),
            truncations=np.asarray(ep.truncations, bool), seed=-1, policy="minari"), info))
        if len(staged) == shard_size:
            store.pack(staged, info)
            staged.clear()
    store.pack(staged, info)
    return dest


def export(data: Path, dataset_id: str, root: Path | None = None):
    """Write the episodes of the data folder ``data`` as the Minari dataset ``dataset_id`` (under ``root``, else
    Minari's own store) and return it, opened by Minari.

    The dataset is written whole or not at all: Minari writes it into a hidden staging folder of the store
    (Minari lists no hidden folder), in a child process, and only a complete one is renamed to its id. HDF5
    crashes the process writing it when a disk write fails (a full disk, a file-size limit), which the child
    takes with it: the stage reports it in one line, and nothing is left under the dataset's name."""
    minari = _minari()
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        namespace = parse_dataset_id(dataset_id)[0]
    except (TypeError, ValueError):
        raise UsageError(f"argument --dataset: {dataset_id!r} is not a Minari dataset id: write it as "
                         "(namespace/)name-vN, e.g. world-models/carracing/demo-v0") from None
    lock.check_idle(data, "--data")
    store = RolloutStore(data)
    refs = sorted(store.require(), key=lambda r: r.id)
    attrs = store.attrs()
    with _datasets_path(root):
        home = Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")
        lock.check_writable(home, "--root")
        datasets = minari.storage.get_dataset_path()  # the store's folder, made if missing
        final = minari.storage.get_dataset_path(dataset_id)
        if final.exists():
            raise UsageError(f"argument --dataset: a Minari dataset {dataset_id} exists already in {datasets}: pass "
                             f"another id (or version), or `minari delete {dataset_id}`")
    staging = atomic.staging(datasets / ("." + dataset_id.replace("/", "~")))
    shutil.rmtree(staging, ignore_errors=True)  # a killed export's
    try:
        _in_child(_write_dataset, staging, dataset_id, data, refs, attrs, final=final)
        atomic.fsync_tree(staging)
        with _datasets_path(datasets):
            from minari.namespace import create_namespace, list_local_namespaces
            if namespace is not None and namespace not in list_local_namespaces():
                create_namespace(namespace)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging / dataset_id, final)
    except BaseException as e:
        reason = atomic.no_space(e)
        if reason:
            raise atomic.DiskFull(final, reason) from e
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with _datasets_path(datasets):
        return minari.load_dataset(dataset_id)


@contextmanager
def _datasets_path(root: Path | None) -> Iterator[None]:
    """Minari's store is ``root`` for the block (``MINARI_DATASETS_PATH``; unchanged when ``root`` is None)."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    if root is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _write_dataset(staging: Path, dataset_id: str, data: Path, refs: list, attrs: dict) -> None:
    """Minari's ``create_dataset_from_buffers`` into the store ``staging``, then each episode's provenance."""
    import minari
    from minari.data_collector import EpisodeBuffer

    from data.store import read_episode

    env = str(attrs["env_name"])
    source = envs.get(env, str(attrs.get("state", "")) or None)
    gym_id = next((i for i, name in GYM_IDS.items() if name == env and not i.startswith("Fast")), None)

    def buffers() -> Iterator[EpisodeBuffer]:
        for ref in refs:
            ep = read_episode(ref)
            yield EpisodeBuffer(observations=ep.observations, actions=ep.actions, rewards=ep.rewards,
                                terminations=ep.terminations, truncations=ep.truncations,
                                seed=int(ep.seed) if ep.seed >= 0 else None, infos={})

    policies = sorted({ref.policy for ref in refs if ref.policy})
    with _datasets_path(staging):
        minari.create_dataset_from_buffers(
            dataset_id, buffers(), env=gym_id,
            observation_space=gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8), action_space=source.action_space,
            algorithm_name=f"world-models 01_collect.py --policy {'+'.join(policies) or '?'}",
            description=f"{len(refs)} episodes of {env} collected by World Models' 01_collect.py; frames "
                        f"preprocessed: {attrs.get('preprocessing', '?')}",
            data_format="hdf5", jpeg_encoding=False)
        keep_provenance(minari.storage.get_dataset_path(dataset_id), refs)


def _in_child(target, *args, final: Path) -> None:
    """``target(*args)`` in a forked child process, whose exception is raised here. A child that dies of a signal
    (HDF5 crashes its process when a disk write fails) is one line: ``DiskFull`` naming ``final`` when a
    file-size limit is set or the disk is nearly full, else ``RunFailed``."""
    ctx = mp.get_context("fork")
    ours, theirs = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(theirs, target, args))
    child.start()
    theirs.close()
    try:
        try:
            outcome = ours.recv()
        except EOFError:  # it died before it could say anything
            outcome = None
        child.join()
    except BaseException:  # Ctrl-C, SIGTERM: the child goes with this process
        child.kill()
        child.join()
        raise
    finally:
        ours.close()
    if outcome is not None:
        if outcome != "ok":
            raise outcome
        return
    why = f"signal {signal.Signals(-child.exitcode).name}" if child.exitcode < 0 else f"exit code {child.exitcode}"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        raise atomic.DiskFull(final, "file size limit reached")
    probe = final
    while not probe.exists():
        probe = probe.parent
    if shutil.disk_usage(probe).free < 2**26:  # under 64 MiB left
        raise atomic.DiskFull(final, "disk full")
    raise RunFailed(f"writing the Minari dataset {final} ended the writer ({why}); nothing was left under its name: "
                    "re-run the same command")


def _child_main(conn, target, args) -> None:
    """The child's life: HDF5's reports of a failing write (dozens of lines as its objects are freed) go nowhere;
    what went wrong reaches the parent through ``conn``."""
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        target(*args)
        conn.send("ok")
    except BaseException as e:  # raised again in the parent, which reports it
        try:
            conn.send(e)
        except Exception:  # an exception that does not pickle
            conn.send(RunFailed(f"writing the Minari dataset failed: {type(e).__name__}: {e}"))


def keep_provenance(dataset_path: Path, refs: list) -> None:
    """Each exported episode keeps the policy and the round that collected it, as attributes of its group in
    Minari's ``main_data.hdf5`` (episode i is the i-th of ``refs``)."""
    import h5py

    with h5py.File(Path(dataset_path) / "data" / "main_data.hdf5", "a") as f:
        for i, ref in enumerate(refs):
            f[f"episode_{i}"].attrs.update({"policy": ref.policy or "", "round": ref.round})


def main(argv: list[str] | None = None) -> None:
    """``export_minari.py``: a data folder → a Minari dataset."""
    import warnings

    from pipeline.contract.cli import Parser  # not at the top: cli reads Minari datasets through this module

    p = Parser(description="Write a data folder's episodes as a Minari dataset (lossless frames).")
    p.add_argument("--data", type=Path, required=True, help="the data folder 01_collect.py wrote")
    p.add_argument("--dataset", help="the Minari dataset id, (namespace/)(env/)name-vN (default: "
                                     "world-models/<env>/<data folder's name>-v0)")
    p.add_argument("--root", type=Path, help="where Minari datasets live (default: $MINARI_DATASETS_PATH, else "
                                             "~/.minari/datasets)")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"argument --data: {args.data} is not a folder: pass the data folder 01_collect.py wrote")
    lock.check_idle(args.data, "--data")
    env = str(RolloutStore(args.data).attrs().get("env_name", "data")).replace(":", "-")
    dataset_id = args.dataset or f"world-models/{env}/{args.data.resolve().name}-v0"
    with warnings.catch_warnings():  # Minari's advice to record an author and a code permalink
        warnings.simplefilter("ignore", UserWarning)
        dataset = export(args.data, dataset_id, args.root)
    print(f"{dataset_id}: {dataset.total_episodes} episodes, {dataset.total_steps} steps, in "
          f"{Path(dataset.storage.data_path).parent}")
    print(f"open it with minari.load_dataset({dataset_id!r}) (MINARI_DATASETS_PATH set to its root), or train on it "
          f"with --data minari:{dataset_id}")
