"""Nothing stale, nothing mixed: derived files are keyed by what they come from, and a resumed run keeps its
settings. Each case does the damage for real: a really retrained V, a really truncated file."""
from __future__ import annotations

import json
import pickle

import h5py
import pytest
import torch

from conftest import NOT_04, TINY, assert_one_line_error, copy_run, run_stage, snapshot, trajectory

DREAM = ["--in", "dream", "--pop", "4", "--trials", "2", "--generations", "3", "--steps", "30", "--workers", "1",
         "--eval-episodes", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def retrained(tiny_run, tmp_path_factory) -> dict:
    """The tiny run after V was retrained with another --seed (same epochs, same step count), M and C untouched."""
    run = tmp_path_factory.mktemp("retrained") / "run"
    folders = copy_run(tiny_run, run)
    (run / "vae.pt").unlink()
    run_stage("02_train_vae.py", *folders, *TINY["vae"], "--seed", "1")
    return {"run": run, "folders": folders}


def test_a_retrained_v_is_never_read_through_the_old_codes(tiny_run, retrained):
    run, folders = retrained["run"], retrained["folders"]
    old = h5py.File(tiny_run["run"] / "latents.h5", "r").attrs["vae_fingerprint"]
    assert h5py.File(run / "latents.h5", "r").attrs["vae_fingerprint"] == old  # still the old V's codes
    before = snapshot(run)
    proc = run_stage("04_train_controller.py", *folders, *DREAM, check=False)
    assert_one_line_error(proc, "mdnrnn.pt", "another V", "03_train_mdnrnn.py")
    proc = run_stage("05_dream.py", "--run", run, "--steps", "10", "--dreams", "1", "--device", "cpu", check=False)
    assert_one_line_error(proc, "mdnrnn.pt", "another V")
    proc = run_stage("03_train_mdnrnn.py", *folders, *TINY["mdnrnn"], check=False)  # M's checkpoint is the old V's
    assert_one_line_error(proc, "mdnrnn.pt", "another V", "delete it")
    assert snapshot(run) == before
    (run / "mdnrnn.pt").unlink()
    run_stage("03_train_mdnrnn.py", *folders, *TINY["mdnrnn"])
    assert h5py.File(run / "latents.h5", "r").attrs["vae_fingerprint"] != old  # re-encoded by the new V
    proc = run_stage("04_train_controller.py", *folders, *DREAM, check=False)  # ES state of the old V and M
    assert_one_line_error(proc, "es_state.pkl", "another V and M", "delete it")


@pytest.mark.parametrize("flag, value, recorded", [("--sigma", "0.5", "0.1"), ("--seed", "4", "0"),
                                                   ("--steps", "25", "30")])
def test_resuming_the_controller_with_other_settings_is_refused(tiny_run, tmp_path, flag, value, recorded):
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    command = [a for a in TINY["controller"]]
    i = command.index(flag) if flag in command else None
    if i is not None:
        command[i + 1] = value
    else:
        command += [flag, value]
    before = snapshot(run)
    proc = run_stage("04_train_controller.py", *folders, *command, "--generations", "4", check=False)
    assert_one_line_error(proc, f"{flag} {recorded}", f"not {value}")
    assert snapshot(run) == before


def test_fewer_generations_than_done_is_refused_and_changes_nothing(tiny_run, tmp_path):
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    before = snapshot(run)
    command = [a if a != "2" or i == 0 else a for i, a in enumerate(TINY["controller"])]
    command[command.index("--generations") + 1] = "1"
    proc = run_stage("04_train_controller.py", *folders, *command, check=False)
    assert_one_line_error(proc, "--generations 1", "already evolved")
    assert snapshot(run) == before


def test_resuming_v_with_another_loss_is_refused(tiny_run, tmp_path):
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    before = snapshot(run)
    proc = run_stage("02_train_vae.py", *folders, *TINY["vae"], "--epochs", "2", "--kl-tolerance", "0.1", check=False)
    assert_one_line_error(proc, "--kl-tolerance 0.5", "not 0.1")
    proc = run_stage("02_train_vae.py", *folders, *TINY["vae"][:2], "--batch", "8", *TINY["vae"][4:], check=False)
    assert_one_line_error(proc, "--batch 16", "not 8")
    assert snapshot(run) == before
    assert json.loads((run / "config.json").read_text())["vae"]["kl_tolerance"] == 0.5


def test_a_truncated_latents_file_is_one_line(tiny_run, tmp_path):
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    blob = (run / "latents.h5").read_bytes()
    (run / "latents.h5").write_bytes(blob[: len(blob) // 3])
    for script, args in (("04_train_controller.py", [*folders, *DREAM]),
                         ("05_dream.py", ["--run", run, "--steps", "10", "--dreams", "1", "--device", "cpu"])):
        before = snapshot(run)
        proc = run_stage(script, *args, check=False)
        assert_one_line_error(proc, "latents.h5", "truncated or damaged", "03_train_mdnrnn.py")
        assert snapshot(run) == before


def test_an_es_state_that_is_not_one_is_one_line(tiny_run, tmp_path):
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    (run / "es_state.pkl").write_bytes(pickle.dumps({"generation": 3}))
    before = snapshot(run)
    proc = run_stage("04_train_controller.py", *folders, *TINY["controller"], "--generations", "3", check=False)
    assert_one_line_error(proc, "es_state.pkl", "not an ES state")
    assert snapshot(run) == before


def test_init_from_starts_the_evolution_at_a_trained_controller_and_only_there(tiny_run, tmp_path):
    """--init-from: CMA-ES's first mean is the given C's parameters (with a step size too small to move it, the mean
    after a generation is still that C); refused once the run holds an ES state, and for a C of other V and M."""
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run, drop=NOT_04)
    init = tiny_run["run"] / "controller.pt"
    params = torch.load(init, weights_only=True)["params"].numpy()
    command = [*TINY["controller"], "--generations", "1", "--sigma", "1e-9", "--init-from", init]
    run_stage("04_train_controller.py", *folders, *command)
    _, state = trajectory(run)
    assert state["generation"] == 1 and abs(state["mean"] - params.astype("float64")).max() < 1e-6

    before = snapshot(run)
    again = run_stage("04_train_controller.py", *folders, *command[:-2], "--generations", "2", "--init-from", init, check=False)
    assert_one_line_error(again, "--init-from", "es_state.pkl", "drop --init-from")
    assert snapshot(run) == before
    run_stage("04_train_controller.py", *folders, *command[:-2], "--generations", "2")  # without it: resumed
    assert trajectory(run)[1]["generation"] == 2

    foreign = tmp_path / "foreign.pt"  # a C evolved on other V and M: its recorded world is not this run's
    torch.save({**torch.load(init, weights_only=True), "world": "0" * 64}, foreign)
    fresh = copy_run(tiny_run, tmp_path / "fresh", drop=NOT_04)
    other = run_stage("04_train_controller.py", *fresh, *command[:-1], foreign, check=False)
    assert_one_line_error(other, f"--init-from {foreign}", "another V and M", "pass --init-from a controller")
    assert not (tmp_path / "fresh" / "es_state.pkl").exists()
