"""04 --algo ppo: Stable-Baselines3's PPO on [z, h]; a toy check that the configuration learns, then the stage."""
import csv
import json

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO

from conftest import TINY, assert_one_line_error, run_stage
from pipeline import ppo
from pipeline.contract import evaluations


class Drift(gym.Env):
    """A point on [-1, 1] that the action pushes; reward −|x| each step: the policy must steer it to 0 and hold."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = self.np_random.uniform(-1, 1), 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x = float(np.clip(self.x + 0.25 * float(np.clip(action[0], -1, 1)), -1, 1))
        self.t += 1
        return np.array([self.x], np.float32), -abs(self.x), False, self.t >= 20, {}


def test_ppo_as_configured_here_beats_a_random_policy_on_a_toy_env():
    model = PPO("MlpPolicy", Drift(), n_steps=512, batch_size=64, seed=0, device="cpu", verbose=0)
    model.learn(6144)
    env = Drift()
    rng = np.random.default_rng(0)
    trained, random = [], []
    for seed in range(20):
        for policy, out in ((lambda obs: model.predict(obs, deterministic=True)[0], trained),
                            (lambda obs: rng.uniform(-1, 1, 1), random)):
            obs, _ = env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                obs, reward, _, done, _ = env.step(policy(obs))
                total += reward
            out.append(total)
    assert np.mean(trained) > np.mean(random) + 3, (np.mean(trained), np.mean(random))


def test_04_trains_c_with_ppo_resumes_and_scores_it_as_cmaes_is_scored(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run, ignore=shutil.ignore_patterns("es_state.pkl", "controller*", "metrics"))
    flags = ["--run", run, "--algo", "ppo", "--n-steps", "32", "--workers", "2", "--steps", "30",
             "--eval-every", "1", "--eval-episodes", "2"]
    first = run_stage("04_train_controller.py", *flags, "--timesteps", "64")
    assert "iteration 1: 64 steps" in first.stdout and (run / ppo.CHECKPOINT).exists() and (run / ppo.BEST).exists()
    resumed = run_stage("04_train_controller.py", *flags, "--timesteps", "128")
    assert f"resuming from {run / ppo.CHECKPOINT}: 64 steps" in resumed.stdout
    with open(run / "metrics" / "controller.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["generation"] for r in rows] == ["1", "2"]
    assert all(r["eval_mean"] and int(r["env_steps"]) >= 64 for r in rows)
    assert json.loads((run / "config.json").read_text())["controller"]["algo"] == "ppo"
    # --evaluate finds the algorithm in the run's config; the same EVALUATE seeds as a CMA-ES controller's.
    out = run_stage("04_train_controller.py", "--run", run, "--steps", "30", "--evaluate", "3")
    result = evaluations.latest(run)
    assert result["episodes"] == 3 and "PPO" in result["params_from"]
    assert f"{result['mean']:.1f} ± {result['std']:.1f}" in out.stdout
    # 05 drives its real episodes and dreams with the PPO policy.
    run_stage("05_dream.py", "--run", run, "--steps", "20", "--dreams", "1", "--latent-dims", "2", "--device", "cpu")
    summary = json.loads((run / "dreams" / "summary.json").read_text())
    assert "PPO" in summary["dreams"]["driver"] and summary["driving"]["steps"] == 30
    # A PPO run is not continued by CMA-ES, and CMA-ES flags are not taken with PPO.
    proc = run_stage("04_train_controller.py", "--run", run, "--algo", "cmaes", *TINY["controller"], check=False)
    assert_one_line_error(proc, "holds a controller trained with --algo ppo", "pass --algo ppo")
    proc = run_stage("04_train_controller.py", *flags, "--in", "dream", check=False)
    assert_one_line_error(proc, "learned with --in env, not --in dream", "pass --in env")
