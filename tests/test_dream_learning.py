"""Learning inside the dream: M's dream as a vector env, a controller's episodes as data, the iterative loop, and
the reward heads that keep a dream from flattering."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from conftest import ROOT, copy_run, rows, run_stage  # noqa: F401  (ROOT puts the project on sys.path)
from data.store import RolloutStore
from models.controller import batched
from models.mdnrnn import MDNRNN, MDNOutput, MDNRNNConfig, loss, reward_loss
from pipeline.contract import checkpoint
from pipeline.contract.runconfig import latents_path
from pipeline.dream_env import begin, controller_actor, dream, reward_of
from pipeline.dream_vector_env import DreamVectorEnv, stable_baselines_env
from pipeline.world_model import WorldModel


# -- the reward heads -------------------------------------------------------------------------------
def test_over_prediction_costs_more_than_under_prediction_by_the_weight():
    reward, mask = torch.zeros(1, 2), torch.ones(1, 2)
    over = MDNOutput(None, None, None, torch.full((1, 2), 0.5), None)
    under = MDNOutput(None, None, None, torch.full((1, 2), -0.5), None)
    assert reward_loss(over, reward, mask, 1.0) == pytest.approx(0.25)
    assert reward_loss(under, reward, mask, 3.0) == pytest.approx(0.25)
    assert reward_loss(over, reward, mask, 3.0) == pytest.approx(0.75)


def test_one_head_and_weight_one_optimise_the_plain_squared_error():
    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(z_dim=4, action_dim=3, hidden=8, mixtures=2))
    with torch.no_grad():
        out, _, _ = m(torch.randn(2, 5, 4), torch.randn(2, 5, 3))
    args = (torch.randn(2, 5, 4), torch.randn(2, 5), torch.zeros(2, 5), torch.ones(2, 5))
    plain = {k: float(v) for k, v in loss(out, *args).items()}
    assert plain["loss"] == pytest.approx(plain["nll"] + plain["reward_mse"] + plain["done_bce"], rel=1e-6)
    weighted = {k: float(v) for k, v in loss(out, *args, reward_over_weight=4.0).items()}
    assert weighted["reward_mse"] == pytest.approx(plain["reward_mse"])
    assert weighted["loss"] > plain["loss"]


def test_reward_heads_average_into_the_reward_and_their_spread_lowers_the_dream_reward():
    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(z_dim=4, action_dim=3, hidden=8, mixtures=2, reward_heads=5))
    out, _ = m.step(torch.randn(6, 4), torch.randn(6, 3), m.initial_state(6))
    assert out.reward_heads.shape == (6, 5)
    assert torch.allclose(out.reward, out.reward_heads.mean(-1))
    spread = out.reward_spread()
    assert (spread > 0).all()
    assert torch.allclose(reward_of(out, 2.0), out.reward - 2.0 * spread)
    assert torch.equal(reward_of(out, 0.0), out.reward)
    # An M saved with one head (every checkpoint before the option) loads as before: no spread.
    single = MDNRNN.from_state(MDNRNN(MDNRNNConfig(z_dim=4, action_dim=3, hidden=8)).state())
    out1, _ = single.step(torch.randn(2, 4), torch.randn(2, 3), single.initial_state(2))
    assert out1.reward_heads is None and torch.equal(out1.reward_spread(), torch.zeros(2))


def test_bootstrap_heads_learn_apart_where_data_is_thin():
    """Five heads trained on their own bootstrap halves agree on the data and disagree off it."""
    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(z_dim=2, action_dim=1, hidden=16, mixtures=1, reward_heads=5))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    z = torch.zeros(32, 4, 2)  # all the data sits at z = 0 ...
    a = torch.zeros(32, 4, 1)
    for _ in range(300):
        out, _, _ = m(z, a)
        terms = loss(out, z, torch.ones(32, 4), torch.zeros(32, 4), torch.ones(32, 4))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    with torch.no_grad():
        seen, _ = m.step(torch.zeros(1, 2), torch.zeros(1, 1), m.initial_state(1))
        unseen, _ = m.step(torch.full((1, 2), 8.0), torch.full((1, 1), 8.0), m.initial_state(1))
    assert float(seen.reward) == pytest.approx(1.0, abs=0.05)
    assert float(unseen.reward_spread()) > 5 * float(seen.reward_spread())


# -- the dream as a vector env ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tiny_run):
    return WorldModel.load(tiny_run["run"], "carracing")


def test_the_vector_env_makes_the_dream_loops_transitions(tiny_run, world):
    run = tiny_run["run"]
    n, steps, seed = 3, 12, 7
    env = DreamVectorEnv(world, latents_path(run), n, max_steps=1000, temperature=1.15)
    starts = env.starts.draw([11, 12, 13])
    params = torch.from_numpy(np.random.default_rng(0).normal(0, 0.5, (n, world.num_params)).astype(np.float32))
    z0, state = begin(world.mdnrnn, starts, torch.device("cpu"))
    reference = dream(world.mdnrnn, world.source, z0, state, controller_actor(world, params), steps, 1.15,
                      torch.Generator().manual_seed(seed), record=True, until_done=False)
    obs, _ = env.reset_with_starts(starts, generator_seed=seed)
    z_dim = world.vae.z_dim
    assert np.allclose(obs[:, :z_dim], reference.z[0].numpy())
    ended = np.zeros(n, dtype=bool)
    for t in range(steps):
        out = batched(params, torch.from_numpy(obs), world.controller_out).numpy()  # C, as the dream loop runs it
        obs, reward, terminated, truncated, info = env.step(out)
        live = ~ended & ~terminated
        assert np.allclose(obs[live, :z_dim], reference.z[t + 1][live].numpy(), atol=1e-6)
        assert np.allclose(reward[~ended], reference.rewards[t][~ended], atol=1e-6)
        assert np.array_equal(terminated[~ended], reference.done_prob[t][~ended] > 0.5)
        ended |= terminated


def test_the_vector_env_resets_what_ended_and_is_reproducible(tiny_run, world):
    def rollout():
        env = DreamVectorEnv(world, latents_path(tiny_run["run"]), 4, max_steps=5, seed=3)
        obs, _ = env.reset(seed=3)
        trace = [obs]
        for _ in range(12):
            obs, reward, terminated, truncated, info = env.step(np.zeros((4, 3), np.float32))
            trace += [obs, reward]
            if truncated.any():
                assert (info["_final_obs"] == (terminated | truncated)).all()
                assert info["final_obs"][np.flatnonzero(truncated)[0]].shape == obs[0].shape
        return trace, env

    first, env = rollout()
    second, _ = rollout()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert (env.episodes >= 3).all()  # max_steps 5: every env truncated twice in 12 steps
    assert env.observation_space.shape == (4, world.controller_in)


def test_stable_baselines_ppo_learns_in_the_dream(tiny_run, world):
    from stable_baselines3 import PPO

    vec = stable_baselines_env(DreamVectorEnv(world, latents_path(tiny_run["run"]), 4, max_steps=20))
    model = PPO("MlpPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    action, _ = model.predict(vec.reset(), deterministic=True)
    assert action.shape == (4, 3)


# -- a controller's episodes as data, and the loop ---------------------------------------------------
def test_a_controllers_episodes_join_the_data_with_their_provenance(tiny_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"], data)
    flags = copy_run(tiny_run, tmp_path / "run")
    flags[1] = data
    run_stage("01_collect.py", *flags, "--policy", "controller", "--noise", "0.2", "--round", "2",
              "--episodes", "2", "--steps", "40", "--workers", "2")
    refs = RolloutStore(data).index()
    made = {(r.policy, r.round) for r in refs}
    assert made == {("brownian", 0), ("controller", 2)}
    assert sorted(r.id for r in refs if r.round == 2) == [2_000_000, 2_000_001]
    # Re-running completes the round, and collects nothing more.
    again = run_stage("01_collect.py", *flags, "--policy", "controller", "--noise", "0.2", "--round", "2",
                      "--episodes", "2", "--steps", "40", "--workers", "2")
    assert "0 collected" in again.stdout
    # Stage 03 trains a new M on the mixed folder (the run's M, trained on less, refuses to resume on it).
    (tmp_path / "run" / "mdnrnn.pt").unlink()
    run_stage("03_train_mdnrnn.py", *flags, "--epochs", "3", "--seq-len", "16", "--batch", "4", "--hidden", "32",
              "--device", "cpu")
    with h5py.File(tmp_path / "run" / "latents.h5") as f:
        assert 2_000_001 in f.attrs["episode_ids"]


def test_controller_collection_needs_a_controller(tiny_run, tmp_path):
    flags = copy_run(tiny_run, tmp_path / "run", drop=("controller.pt",))
    proc = run_stage("01_collect.py", *flags, "--policy", "controller", "--episodes", "1", check=False)
    assert proc.returncode == 2
    assert "controller.pt" in proc.stderr and "Traceback" not in proc.stderr


def test_iterate_runs_rounds_resumes_and_records_them(tiny_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"], data)
    flags = copy_run(tiny_run, tmp_path / "run", drop=("controller.pt", "es_state.pkl", "latents.h5"))
    flags[1] = data
    tiny = ["--episodes-per-round", "2", "--finetune-epochs", "1", "--seq-len", "16", "--batch", "4",
            "--generations", "2", "--pop", "4", "--trials", "2", "--dream-steps", "15", "--steps", "30",
            "--score-episodes", "2", "--calibration-episodes", "1", "--workers", "2"]
    run_stage("iterate.py", *flags, "--rounds", "2", *tiny)
    run = tmp_path / "run"
    table = rows(run / "metrics" / "rounds.csv")
    assert [int(r["round"]) for r in table] == [0, 1]
    assert np.isnan(float(table[0]["nll_new_before"])) and np.isfinite(float(table[1]["nll_new_after"]))
    assert int(table[1]["real_env_steps"]) > int(table[0]["real_env_steps"]) > 4 * 40
    assert int(table[1]["dream_steps"]) > int(table[0]["dream_steps"]) > 0
    assert (run / "plots" / "rounds.png").exists() and (run / "rounds" / "controller_1.pt").exists()
    assert {(r.policy, r.round) for r in RolloutStore(data).index()} == {("brownian", 0), ("controller", 1)}
    # More rounds continue where it stopped; the rows already written stay as they were.
    run_stage("iterate.py", *flags, "--rounds", "3", *tiny)
    longer = rows(run / "metrics" / "rounds.csv")
    assert [int(r["round"]) for r in longer] == [0, 1, 2] and longer[:2] == table
    assert json.loads((run / "rounds" / "state.json").read_text())["phase"] == "done"
    # The report shows the rounds, and 04 scores the last round's C.
    run_stage("05_dream.py", "--run", run, "--steps", "10", "--dreams", "1", "--latent-dims", "2", "--device", "cpu")
    page = (run / "report.html").read_text()
    assert "Iterative training, round by round" in page and page.count("<tr>") >= 4
    out = run_stage("04_train_controller.py", "--run", run, "--steps", "20", "--workers", "2", "--evaluate", "2")
    assert "controller score over 2 episodes" in out.stdout


def test_iterate_improves_a_given_controller_in_the_env_with_v_in_int8(tiny_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"], data)
    given = tmp_path / "given.pt"
    shutil.copy(tiny_run["run"] / "controller.pt", given)
    flags = copy_run(tiny_run, tmp_path / "run", drop=("controller.pt", "es_state.pkl", "latents.h5"))
    flags[1] = data
    tiny = ["--episodes-per-round", "2", "--finetune-epochs", "1", "--seq-len", "16", "--batch", "4",
            "--generations", "1", "--pop", "4", "--trials", "2", "--steps", "30", "--score-episodes", "2",
            "--calibration-episodes", "1", "--workers", "2", "--train-in", "env", "--v-precision", "int8"]
    out = run_stage("iterate.py", *flags, "--rounds", "2", "--init-from", given, *tiny)
    run = tmp_path / "run"
    assert "V's encoder in int8" in out.stdout and (run / "vae_int8.onnx").exists()
    # Round 0's C is the given one, scored but not evolved: no dream, no generation.
    round0 = checkpoint.load(run / "rounds" / "controller_0.pt", "iterate.py")
    assert torch.equal(round0["params"], checkpoint.load(given, "test")["params"])
    assert round0["generation"] == 0 and "--init-from" in round0["params_from"]
    table = rows(run / "metrics" / "rounds.csv")
    assert [int(r["round"]) for r in table] == [0, 1]
    # Round 0 dreamed only its calibration episode (at most --steps); round 1 trained in the env, so it dreamed as little.
    assert np.isnan(float(table[0]["c_dream_return"])) and 0 < int(table[0]["dream_steps"]) <= 30
    assert 0 < int(table[1]["dream_steps"]) - int(table[0]["dream_steps"]) <= 30
    # Round 1 collected with it, fine-tuned M, and evolved C from it in the env.
    assert {(r.policy, r.round) for r in RolloutStore(data).index()} == {("brownian", 0), ("controller", 1)}
    round1 = checkpoint.load(run / "rounds" / "controller_1.pt", "iterate.py")
    assert round1["generation"] == 1 and not torch.equal(round1["params"], round0["params"])


def test_iterate_refuses_a_controller_of_another_world(tiny_run, tmp_path):
    flags = copy_run(tiny_run, tmp_path / "run", drop=("controller.pt", "es_state.pkl"))
    other = tmp_path / "other.pt"
    ctrl = checkpoint.load(tiny_run["run"] / "controller.pt", "test")
    checkpoint.save(other, {**ctrl, "params": torch.zeros(ctrl["params"].numel() + 3), "world": "another"})
    proc = run_stage("iterate.py", *flags, "--rounds", "1", "--init-from", other, "--train-in", "env",
                     "--generations", "1", "--pop", "4", "--trials", "1", "--steps", "20", "--workers", "1",
                     check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"--init-from {other} was evolved on another V and M" in proc.stderr
    missing = run_stage("iterate.py", *flags, "--rounds", "1", "--init-from", tmp_path / "none.pt", check=False)
    assert missing.returncode == 2 and f"--init-from {tmp_path / 'none.pt'}: no such file" in missing.stderr


def test_04_trains_ppo_inside_the_dream_and_scores_it_in_the_real_env(tiny_run, tmp_path):
    flags = copy_run(tiny_run, tmp_path / "run", drop=("controller*", "es_state.pkl"))
    run_stage("04_train_controller.py", *flags, "--algo", "ppo", "--in", "dream", "--timesteps", "256",
              "--n-steps", "8", "--steps", "20", "--eval-every", "1", "--eval-episodes", "1", "--workers", "1")
    run = tmp_path / "run"
    table = rows(run / "metrics" / "controller.csv")
    assert table and all(int(float(r["dream_steps"])) == 8 * 32 for r in table)
    # Real steps are the selection scorings' alone: training never touched the env.
    assert all(int(float(r["env_steps"])) <= 20 for r in table)
    assert (run / "ppo_best.zip").exists()
    out = run_stage("04_train_controller.py", *flags, "--steps", "20", "--workers", "1", "--evaluate", "2")
    assert "controller score over 2 episodes" in out.stdout
