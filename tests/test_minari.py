"""Minari datasets both ways, with the real minari package: export a data folder, train on a Minari dataset."""
import json
import warnings

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from minari import DataCollector

from conftest import TINY, run_stage
from data.store import RolloutStore, read_episode
from envs.carracing import crop_resize


def test_an_exported_data_folder_opens_in_minari_with_every_array_as_stored(tiny_run, tmp_path, monkeypatch):
    root = tmp_path / "minari"
    out = run_stage("export_minari.py", "--data", tiny_run["data"], "--dataset", "world-models/carracing/tiny-v0",
                    "--root", root)
    assert "world-models/carracing/tiny-v0: 4 episodes, 160 steps" in out.stdout
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    dataset = minari.load_dataset("world-models/carracing/tiny-v0")
    metadata = json.loads((root / "world-models/carracing/tiny-v0/data/metadata.json").read_text())
    assert metadata["jpeg_encoding"] is False and metadata["data_format"] == "hdf5"
    assert dataset.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert dataset.spec.env_spec.id == "CarRacing-v3" and dataset.total_episodes == 4
    refs = sorted(RolloutStore(tiny_run["data"]).index(), key=lambda r: r.id)
    # The shards themselves record the space of the frames they hold, as the dataset does.
    spaces = json.loads(RolloutStore(tiny_run["data"]).attrs()["spaces"])
    assert spaces["observation"] == repr(dataset.observation_space)
    for ref, episode in zip(refs, dataset.iterate_episodes(), strict=True):
        stored = read_episode(ref)
        for name in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(episode, name), getattr(stored, name), err_msg=name)
    # Each episode keeps its provenance: the policy and the round that collected it.
    with h5py.File(root / "world-models/carracing/tiny-v0/data/main_data.hdf5") as f:
        assert [(f[f"episode_{i}"].attrs["policy"], int(f[f"episode_{i}"].attrs["round"])) for i in range(4)] == \
            [("brownian", 0)] * 4
    # The same id again: one line, and the dataset already there is kept.
    again = run_stage("export_minari.py", "--data", tiny_run["data"], "--dataset", "world-models/carracing/tiny-v0",
                      "--root", root, check=False)
    assert again.returncode == 2 and "exists already" in again.stderr and "Traceback" not in again.stderr
    assert minari.load_dataset("world-models/carracing/tiny-v0").total_episodes == 4


def _collect(dataset_id: str, env: gym.Env, episodes: int, seed: int = 0):
    collector = DataCollector(env)  # Minari's defaults, JPEG-encoded frames included
    for i in range(episodes):
        collector.reset(seed=seed + i)
        collector.action_space.seed(seed + i)
        done = False
        while not done:
            _, _, terminated, truncated, _ = collector.step(collector.action_space.sample())
            done = terminated or truncated
    dataset = collector.create_dataset(dataset_id, algorithm_name="random")
    collector.close()
    return dataset


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    """A Minari store holding two datasets made by Minari's DataCollector: CarRacing-v3 (96×96 frames) and
    CartPole-v1 (no frames)."""
    root = tmp_path_factory.mktemp("minari-root")
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        warnings.simplefilter("ignore")  # Minari's advice to record an author
        _collect("gym/carracing/random-v0", gym.make("CarRacing-v3", max_episode_steps=40), 4)
        _collect("gym/cartpole/random-v0", gym.make("CartPole-v1", max_episode_steps=20), 2)
    return root


def test_stages_02_to_04_train_on_a_minari_dataset_made_by_minaris_data_collector(minari_root, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))  # the stages run in this process (run_stage)
    folders = ["--data", "minari:gym/carracing/random-v0", "--run", str(tmp_path / "run")]
    run_stage("02_train_vae.py", *folders, *TINY["vae"])  # no --env: the dataset records CarRacing-v3
    config = json.loads((tmp_path / "run" / "config.json").read_text())["vae"]
    assert config["env"] == "carracing" and config["data"] == "minari:gym/carracing/random-v0"
    run_stage("03_train_mdnrnn.py", "--run", tmp_path / "run", *TINY["mdnrnn"])
    run_stage("04_train_controller.py", "--run", tmp_path / "run", *TINY["controller"])
    assert (tmp_path / "run" / "controller.pt").exists()
    # The frames V trained on are the dataset's, made 64×64 as the carracing source makes its own.
    dataset = minari.load_dataset("gym/carracing/random-v0")
    refs = sorted(RolloutStore(tmp_path / "run" / "minari-data").index(), key=lambda r: r.id)
    assert len(refs) == 4
    for ref, episode in zip(refs, dataset.iterate_episodes(), strict=True):
        stored = read_episode(ref)
        assert stored.observations.shape == (len(episode) + 1, 64, 64, 3)
        np.testing.assert_array_equal(stored.observations, np.stack([crop_resize(o) for o in episode.observations]))
        np.testing.assert_array_equal(stored.actions, episode.actions)
        np.testing.assert_array_equal(stored.rewards, episode.rewards.astype(np.float32))


@pytest.mark.parametrize("args,message", [
    (["--data", "minari:gym/cartpole/random-v0", "--env", "carracing"], "not images (H×W×3 uint8)"),
    (["--data", "minari:gym/cartpole/random-v0"], "does not record an env of this project"),
    (["--data", "minari:gym/nothing/here-v0"], "no local Minari dataset 'gym/nothing/here-v0'"),
])
def test_a_minari_dataset_that_cannot_train_v_is_one_line(minari_root, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    proc = run_stage("02_train_vae.py", *args, "--run", tmp_path / "run", *TINY["vae"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run" / "vae.pt").exists()


def test_01_refuses_to_collect_into_a_minari_dataset(tmp_path):
    proc = run_stage("01_collect.py", "--data", "minari:gym/carracing/random-v0", "--run", tmp_path / "run",
                     check=False)
    assert proc.returncode == 2 and "01_collect.py writes a data folder" in proc.stderr
