"""The HDF5 rollout store: round trip, Minari layout, crash safety, and files it must refuse."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import ROOT
from data.store import Episode, RolloutStore, ShardInfo, StoreError, read_episode

INFO = ShardInfo(env="carracing", spaces={"action": "Box(3)"}, preprocessing="test")


def make_episode(i: int, length: int = 5) -> Episode:
    rng = np.random.default_rng(i)
    return Episode(
        id=i,
        observations=rng.integers(0, 256, (length + 1, 64, 64, 3), dtype=np.uint8),
        actions=rng.standard_normal((length, 3)).astype(np.float32),
        rewards=rng.standard_normal(length).astype(np.float32),
        terminations=np.arange(length) == length - 1,
        truncations=np.zeros(length, bool),
        seed=1000 + i,
        policy="brownian",
    )


def test_round_trip_through_staging_and_packing(tmp_path):
    store = RolloutStore(tmp_path)
    episodes = [make_episode(i, length=3 + i) for i in range(4)]
    staged = [store.stage(ep, INFO) for ep in episodes]
    assert [ref.id for ref in store.index()] == [0, 1, 2, 3]
    shard = store.pack(staged, INFO)
    assert shard.name == "shard_000000-000003.h5"
    assert not list(store.staging.glob("*.h5"))
    refs = store.index()
    assert [r.length for r in refs] == [3, 4, 5, 6]
    for ref, ep in zip(refs, episodes):
        back = read_episode(ref)
        for name in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(back, name), getattr(ep, name))
        assert (back.seed, back.policy) == (ep.seed, ep.policy)


def test_minari_layout_and_file_attributes(tmp_path):
    store = RolloutStore(tmp_path)
    store.pack([store.stage(make_episode(7), INFO)], INFO)
    with h5py.File(next(tmp_path.glob("*.h5"))) as f:
        assert f.attrs["env_name"] == "carracing"
        assert json.loads(f.attrs["spaces"]) == {"action": "Box(3)"}
        assert f.attrs["format_version"] == 1
        g = f["episode_7"]
        assert set(g) == {"observations", "actions", "rewards", "terminations", "truncations"}
        assert g["observations"].shape == (6, 64, 64, 3) and g["observations"].dtype == np.uint8
        assert g["observations"].compression == "gzip" and g["observations"].chunks[0] <= 32
        assert g["terminations"].dtype == bool
        assert (g.attrs["seed"], g.attrs["total_steps"], g.attrs["policy"]) == (1007, 5, "brownian")


def test_recover_drops_duplicates_and_unfinished_files_and_packs_the_rest(tmp_path):
    store = RolloutStore(tmp_path)
    store.pack([store.stage(make_episode(0), INFO)], INFO)
    store.stage(make_episode(0), INFO)  # a kill between pack's rename and its delete
    store.stage(make_episode(1), INFO)  # a staged episode never packed
    (tmp_path / "shard_000005-000009.h5.tmp").write_bytes(b"half a file")
    store.recover(INFO)
    assert not list(tmp_path.glob("*.tmp")) and not list(store.staging.glob("*.h5"))
    assert [r.id for r in store.index()] == [0, 1]


WRITER = """
import sys, numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from test_store import make_episode, INFO
from data.store import RolloutStore
store = RolloutStore({path!r})
staged = []
for i in range(10_000):
    staged.append(store.stage(make_episode(i, length=40), INFO))
    print(i, flush=True)
    if len(staged) == 3:
        store.pack(staged, INFO); staged = []
"""


@pytest.mark.parametrize("delay", [0.4, 0.9, 1.7])
def test_sigkill_while_writing_never_leaves_an_unreadable_file(tmp_path, delay):
    code = WRITER.format(root=str(ROOT), tests=str(ROOT / "tests"), path=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    finished = [int(line) for line in proc.communicate()[0].split()]
    store = RolloutStore(tmp_path)
    store.recover(INFO)
    ids = [r.id for r in store.index()]  # raises StoreError if any file were damaged
    assert ids == sorted(set(ids)), "an episode is stored twice"
    assert set(finished) <= set(ids), "a finished episode was lost"
    for ref in store.index():
        np.testing.assert_array_equal(read_episode(ref).observations, make_episode(ref.id, 40).observations)


def test_refuses_truncated_foreign_and_text_files(tmp_path):
    store = RolloutStore(tmp_path)
    shard = store.pack([store.stage(make_episode(0), INFO)], INFO)
    data = shard.read_bytes()
    cases = {
        "truncated.h5": lambda p: p.write_bytes(data[: len(data) // 2]),
        "text.h5": lambda p: p.write_text("not hdf5"),
        "foreign.h5": lambda p: h5py.File(p, "w").create_dataset("x", data=[1, 2]).file.close(),
    }
    for name, make in cases.items():
        path = tmp_path / name
        make(path)
        before = path.read_bytes()
        with pytest.raises(StoreError, match=name):
            store.index()
        assert path.read_bytes() == before
        os.remove(path)


def test_wrong_frame_shape_is_refused(tmp_path):
    path = tmp_path / "shard_000000-000000.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(INFO.attrs())
        g = f.create_group("episode_0")
        g.create_dataset("observations", data=np.zeros((3, 96, 96, 3), np.uint8))
        g.attrs.update({"id": 0, "total_steps": 2})
    with pytest.raises(StoreError, match="64, 64, 3"):
        RolloutStore(tmp_path).index()


def test_missing_and_empty_folders_name_the_fix(tmp_path):
    with pytest.raises(StoreError, match="does not exist.*01_collect.py"):
        RolloutStore(tmp_path / "nope").require()
    with pytest.raises(StoreError, match="no rollouts.*01_collect.py"):
        RolloutStore(tmp_path).require()
