"""The rollout store: HDF5 shards in Minari's per-episode layout (docs/data-format.md), safe against kills.

A directory ``data/<env>/`` holds

    shard_<first>-<last>.h5         packed episodes (many per file)
    .staging/episode_<id>.h5        single finished episodes not yet packed

Every file is written to ``<name>.tmp`` and then renamed, so a file that has its final name is always
complete: a kill loses only the episode (or the pack) in flight. A worker writes each finished episode
to staging at once, then packs its staged episodes into a shard every ``shard_size`` episodes; after a
pack the staged copies are deleted. A kill between the rename and the delete leaves an episode in both
places; ``recover()`` resolves that by dropping the staged copy, so no episode is ever duplicated.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from data.atomic import write_bytes

FORMAT_VERSION = 1
FRAME_SHAPE = (64, 64, 3)
STAGING = ".staging"
OBS_CHUNK_FRAMES = 32


class StoreError(Exception):
    """A rollout file or folder that cannot be used; the message names it and says what to do."""


@dataclass
class Episode:
    """One complete episode. ``observations`` has one more frame than there are actions."""

    id: int
    observations: np.ndarray  # (T+1, 64, 64, 3) uint8
    actions: np.ndarray  # (T, A) float32
    rewards: np.ndarray  # (T,) float32
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    seed: int
    policy: str
    round: int = 0  # which round of iterative training collected it (0: the first collection, before any C)

    @property
    def length(self) -> int:
        return len(self.actions)


@dataclass(frozen=True)
class EpisodeRef:
    """Where one stored episode lives, and its length T (number of actions)."""

    path: Path
    id: int
    length: int
    seed: int = -1  # the episode's env and policy seed (-1: not known)
    policy: str = ""  # which policy played it (its provenance): brownian, random, controller, minari
    round: int = 0  # which round of iterative training collected it

    @property
    def key(self) -> str:
        return episode_key(self.id)


@dataclass
class ShardInfo:
    """File-level attributes every shard carries."""

    env: str
    spaces: dict
    preprocessing: str
    extra: dict = field(default_factory=dict)

    def attrs(self) -> dict:
        return {
            "env_name": self.env,
            "spaces": json.dumps(self.spaces),
            "preprocessing": self.preprocessing,
            "format_version": FORMAT_VERSION,
            **self.extra,
        }


# The file attributes that say how a folder's episodes were collected, and the flag (or what) each one is. The
# policy is not among them: it is each episode's provenance (with the round), and one folder may hold episodes
# of several policies (iterative training adds a controller's episodes to the first collection's).
SETTINGS = {"env_name": "--env", "collect_seed": "--seed", "max_steps": "--steps",
            "state": "--state", "preprocessing": "preprocessing", "spaces": "spaces"}


def _plain(value):
    """An HDF5 attribute as a plain Python value, comparable and printable."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    return value.item() if hasattr(value, "item") else value


def _shown(value) -> str:
    return "(none)" if value == "" else str(value)


def episode_key(episode_id: int) -> str:
    return f"episode_{episode_id}"


def _write_episode(f: h5py.File, ep: Episode) -> None:
    g = f.create_group(episode_key(ep.id))
    chunk = (min(OBS_CHUNK_FRAMES, len(ep.observations)), *FRAME_SHAPE)
    g.create_dataset("observations", data=ep.observations, chunks=chunk, compression="gzip", compression_opts=4)
    g.create_dataset("actions", data=ep.actions)
    g.create_dataset("rewards", data=ep.rewards.astype(np.float32))
    g.create_dataset("terminations", data=ep.terminations.astype(bool))
    g.create_dataset("truncations", data=ep.truncations.astype(bool))
    g.attrs.update({"id": ep.id, "seed": ep.seed, "total_steps": ep.length, "policy": ep.policy, "round": ep.round})


def write_file(path: Path, episodes: list[Episode], info: ShardInfo) -> None:
    """Write ``episodes`` into a new file at ``path``, atomically (tmp file, fsync, rename)."""
    with new_h5(path) as f:
        f.attrs.update(info.attrs())
        for ep in episodes:
            _write_episode(f, ep)


@contextmanager
def new_h5(path: Path) -> Iterator[h5py.File]:
    """A new HDF5 file, built in memory and written to ``path`` atomically when the block ends. HDF5 writing to
    disk itself crashes the process (SIGSEGV) when a write fails (seen with a file-size limit); Python's own
    write raises DiskFull instead."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        yield f
    write_bytes(path, buffer.getbuffer())


def read_episode(ref: EpisodeRef) -> Episode:
    with h5py.File(ref.path, "r") as f:
        g = f[ref.key]
        return Episode(
            id=ref.id,
            observations=g["observations"][()],
            actions=g["actions"][()],
            rewards=g["rewards"][()],
            terminations=g["terminations"][()],
            truncations=g["truncations"][()],
            seed=int(g.attrs["seed"]),
            policy=str(g.attrs["policy"]),
            round=int(g.attrs.get("round", 0)),
        )


def read_observations(ref: EpisodeRef) -> np.ndarray:
    """(T+1, 64, 64, 3) uint8 frames of one episode."""
    with h5py.File(ref.path, "r") as f:
        return f[ref.key]["observations"][()]


class RolloutStore:
    """All rollouts of one env in one folder. Reading never needs every frame in memory at once."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.staging = self.root / STAGING
        self._scanned: dict[Path, tuple[tuple, tuple[dict, list[EpisodeRef]]]] = {}  # path → (stat, what _scan read)

    # -- reading -------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        shards = sorted(self.root.glob("*.h5"))
        staged = sorted(self.staging.glob("*.h5")) if self.staging.is_dir() else []
        return shards + staged

    def _scan(self, path: Path) -> tuple[dict, list[EpisodeRef]]:
        """A file's attributes and its episodes, each checked (``_check_episode``); read once while the file is
        unchanged (a file under its final name is only ever replaced whole)."""
        try:
            stat = os.stat(path)
            key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except OSError:
            key = None
        cached = self._scanned.get(path)
        if key is not None and cached is not None and cached[0] == key:
            return cached[1]
        found = self._read(path)
        if key is not None:
            self._scanned[path] = (key, found)
        return found

    def _read(self, path: Path) -> tuple[dict, list[EpisodeRef]]:
        try:
            f = h5py.File(path, "r")
        except OSError:
            raise StoreError(
                f"{path} is not a readable HDF5 file (truncated or not HDF5): move it out of "
                f"{self.root} and re-run 01_collect.py to replace its episodes"
            ) from None
        with f:
            if "format_version" not in f.attrs or "env_name" not in f.attrs:
                raise StoreError(
                    f"{path} is not a rollout shard written by 01_collect.py: move it out of {self.root}"
                )
            if int(f.attrs["format_version"]) != FORMAT_VERSION:
                raise StoreError(
                    f"{path} has rollout format {int(f.attrs['format_version'])}, this code reads "
                    f"{FORMAT_VERSION}: collect the data again into a new folder"
                )
            refs = []
            for key, g in f.items():
                obs = g.get("observations")
                if not isinstance(obs, h5py.Dataset) or obs.shape[1:] != FRAME_SHAPE or obs.dtype != np.uint8:
                    raise StoreError(
                        f"{path}: {key}/observations must be (T+1, 64, 64, 3) uint8 frames: move the file "
                        f"out of {self.root} and re-run 01_collect.py"
                    )
                length = self._check_episode(path, key, g)
                refs.append(EpisodeRef(path, int(g.attrs["id"]), length, int(g.attrs.get("seed", -1)),
                                       _plain(g.attrs.get("policy", "")), int(g.attrs.get("round", 0))))
            return dict(f.attrs), refs

    def _check_episode(self, path: Path, key: str, g: h5py.Group) -> int:
        """An episode's arrays fit together, and its actions and rewards are finite: T actions, T + 1 observations, T
        rewards, terminations and truncations, ``total_steps`` T. Returns T. Cheap: observations are not read,
        only their shape; actions and rewards are a few numbers a step. One line naming the file and the episode
        otherwise: such an episode would fail M's training far from its cause (a NaN loss, a shape error)."""
        def bad(what: str) -> StoreError:
            return StoreError(f"{path}: {key} {what}: move the file out of {self.root} (and re-run 01_collect.py to "
                              "replace its episodes)")

        arrays = {}
        for name in ("actions", "rewards", "terminations", "truncations"):
            array = g.get(name)
            if not isinstance(array, h5py.Dataset) or array.ndim < 1:
                raise bad(f"has no {name} array")
            arrays[name] = array
        if "id" not in g.attrs or "total_steps" not in g.attrs:
            raise bad("records no id or total_steps")
        steps = arrays["actions"].shape[0]
        if g["observations"].shape[0] != steps + 1:
            raise bad(f"has {g['observations'].shape[0]} observations for {steps} actions (it needs one more "
                      "observation than actions)")
        for name in ("rewards", "terminations", "truncations"):
            if arrays[name].shape != (steps,):
                raise bad(f"has {name} of shape {arrays[name].shape} for {steps} actions (it needs one a step)")
        if int(g.attrs["total_steps"]) != steps:
            raise bad(f"records total_steps {int(g.attrs['total_steps'])} but holds {steps} actions")
        for name in ("actions", "rewards"):
            values = arrays[name][()]
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                step, *_ = np.argwhere(~np.isfinite(values))[0]
                shown = values.reshape(steps, -1)[step]
                raise bad(f"has a non-finite {name[:-1]} ({shown[~np.isfinite(shown)][0]}) at step {step}")
        return steps

    def index(self) -> list[EpisodeRef]:
        """Every stored episode, sorted by id (a staged copy of a packed episode is ignored)."""
        found: dict[int, EpisodeRef] = {}
        for path in self.files():
            for ref in self._scan(path)[1]:
                found.setdefault(ref.id, ref)
        return [found[i] for i in sorted(found)]

    def attrs(self) -> dict:
        """The file attributes every shard (and staged episode) of the folder shares: the collection settings. A
        file whose settings differ from the others' (one copied in from another collection) is an error naming it
        and the setting."""
        files = self.files()
        if not files:
            raise StoreError(f"no rollouts in {self.root}: run 01_collect.py first, or pass --data DIR")
        found = [(path, self._scan(path)[0]) for path in files]
        for key, name in SETTINGS.items():
            values = [(path, _plain(attrs[key])) for path, attrs in found if key in attrs]
            if not values:
                continue
            # The value most files hold is the folder's (on a tie, the first file's): the others are the odd ones.
            usual = Counter(value for _, value in values).most_common(1)[0][0]
            first = next(path for path, value in values if value == usual)
            for odd, value in values:
                if value != usual:
                    what = (f"{name} {_shown(value)}, but {first.name} with {name} {_shown(usual)}"
                            if key != "spaces"
                            else f"other observation or action spaces than {first.name}")
                    raise StoreError(f"{odd} was collected with {what}: one folder holds one collection's episodes; "
                                     f"move {odd.name} out of {self.root}")
        return found[0][1]

    def require(self, env: str | None = None) -> list[EpisodeRef]:
        """Like ``index`` but a missing or empty folder, or rollouts of another env than ``env``, is an error
        naming what to do."""
        if not self.root.is_dir():
            raise StoreError(f"data folder {self.root} does not exist: run 01_collect.py first, or pass --data DIR")
        refs = self.index()
        if not refs:
            raise StoreError(f"no rollouts in {self.root}: run 01_collect.py first, or pass --data DIR")
        have = str(self.attrs()["env_name"])
        if env is not None and have != env:
            raise StoreError(f"{self.root} holds rollouts of --env {have}, not {env}: pass --env {have}, or the "
                             f"--data folder of {env}")
        return refs

    # -- writing -------------------------------------------------------------------------------
    def stage(self, episode: Episode, info: ShardInfo) -> Path:
        """Store one finished episode at once in its own file (atomic)."""
        self.staging.mkdir(parents=True, exist_ok=True)
        path = self.staging / f"{episode_key(episode.id)}.h5"
        write_file(path, [episode], info)
        return path

    def pack(self, staged: list[Path], info: ShardInfo) -> Path | None:
        """Move staged episodes into one new shard, then delete the staged files."""
        if not staged:
            return None
        refs = sorted((ref for p in staged for ref in self._scan(p)[1]), key=lambda ref: ref.id)
        first, last = refs[0].id, refs[-1].id
        path = self.root / f"shard_{first:06d}-{last:06d}.h5"
        n = 1
        while path.exists():
            path = self.root / f"shard_{first:06d}-{last:06d}_{n}.h5"
            n += 1
        with new_h5(path) as f:
            f.attrs.update(info.attrs())
            for ref in refs:  # HDF5's object copy moves the compressed chunks as they are: no re-compression
                with h5py.File(ref.path, "r") as src:
                    src.copy(src[ref.key], f, name=ref.key)
        for p in staged:
            p.unlink()
        return path

    def recover(self, info: ShardInfo) -> None:
        """Tidy what a kill left behind: unfinished ``.tmp`` files, staged copies of packed episodes,
        and staged episodes that were never packed (packed now)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for tmp in list(self.root.glob("*.tmp")) + list(self.staging.glob("*.tmp")):
            tmp.unlink()
        packed = {ref.id for p in sorted(self.root.glob("*.h5")) for ref in self._scan(p)[1]}
        leftover = []
        for p in sorted(self.staging.glob("*.h5")) if self.staging.is_dir() else []:
            ids = {ref.id for ref in self._scan(p)[1]}
            if ids <= packed:
                p.unlink()
            else:
                leftover.append(p)
        self.pack(leftover, info)


def index_hash(refs: list[EpisodeRef], attrs: dict) -> str:
    """A digest of what a dataset holds: every episode's id, length and seed, and the folder's collection
    settings (``attrs`` of its shards). A file derived from the dataset is current only while this is unchanged."""
    h = hashlib.sha256()
    for key in ("env_name", "collect_seed", "policy", "max_steps", "state", "preprocessing"):
        value = attrs.get(key)
        h.update(f"{key}={value.item() if hasattr(value, 'item') else value};".encode())
    h.update(np.array([(r.id, r.length, r.seed) for r in refs], dtype=np.int64).tobytes())
    return h.hexdigest()
