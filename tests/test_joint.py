"""Joint training's parts: the weighted loss, the balance recipe, the inverse model, the collapse guard."""
import csv
import json
import math
import shutil
from pathlib import Path

import h5py
import pytest
import torch

from conftest import TINY, assert_one_line_error, run_stage
from models.inverse import InverseConfig, InverseModel
from pipeline.contract import checkpoint
from pipeline.contract.errors import RunFailed, UsageError
from pipeline.joint import CollapseGuard, balance, optimizer, weighted


def test_the_weighted_loss_equals_its_parts():
    parts = {"vae": torch.tensor(2000.0, requires_grad=True), "mdn": torch.tensor(-2.0, requires_grad=True),
             "inverse": torch.tensor(0.1, requires_grad=True)}
    total = weighted(parts, {"vae": 0.01, "mdn": 1.0, "inverse": 3.0})
    assert total.item() == pytest.approx(0.01 * 2000 - 2 + 3 * 0.1)
    total.backward()  # each part's gradient is its weight
    assert [parts[k].grad.item() for k in ("vae", "mdn", "inverse")] == pytest.approx([0.01, 1.0, 3.0])


def test_the_joint_optimiser_moves_v_at_its_own_rate_and_m_and_f_inv_at_theirs():
    """One Adam over every weight of the three models, each once; V's group at --vae-lr, the rest at --lr: after
    one step on a loss that touches them all, each weight moved by about its group's rate (Adam's first step)."""
    modules = tuple(torch.nn.Linear(3, 3) for _ in range(3))
    opt = optimizer(modules, lr=1e-3, vae_lr=1e-5)
    assert [g["lr"] for g in opt.param_groups] == [1e-5, 1e-3]
    grouped = [p for g in opt.param_groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped}) == sum(len(list(m.parameters())) for m in modules)
    before = [m.weight.detach().clone() for m in modules]
    sum(m(torch.ones(1, 3)).sum() for m in modules).backward()
    opt.step()
    moved = [float((m.weight.detach() - b).abs().max()) for m, b in zip(modules, before)]
    assert moved[0] == pytest.approx(1e-5, rel=1e-2)
    assert moved[1] == pytest.approx(1e-3, rel=1e-2) and moved[2] == pytest.approx(1e-3, rel=1e-2)


def test_balance_auto_gives_the_work_logs_weights_on_its_own_numbers():
    """The log: losses down by 1800 (V), 5 (M), 2.5 (f_inv) at weight 1 → λ_vae = 1/100, λ_inv = 1."""
    history = [{"vae": 20_000, "mdn": 3, "inverse": 3}, {"vae": 19_000, "mdn": 0.5, "inverse": 1.0},
               {"vae": 18_200, "mdn": -2, "inverse": 0.5}]
    chosen = balance(history)
    assert chosen.reductions == pytest.approx({"vae": 1800, "mdn": 5, "inverse": 2.5})
    assert chosen.weights == pytest.approx({"vae": 0.01, "mdn": 1.0, "inverse": 1.0})
    assert chosen.weighted_reductions == pytest.approx({"vae": 18, "mdn": 5, "inverse": 2.5})
    assert "λ_vae = 0.01" in chosen.reason and "V ≥ M ≥ f_inv" in chosen.reason


@pytest.mark.parametrize("reductions", [(1800, 5, 2.5), (3, 40, 0.02), (7e4, 0.3, 9), (50, 50, 50), (1, 1e-3, 1e3)])
def test_balanced_reductions_rank_v_m_f_inv_within_an_order_of_magnitude(reductions):
    v, m, i = reductions
    chosen = balance([{"vae": v, "mdn": m, "inverse": i}, {"vae": 0, "mdn": 0, "inverse": 0}])
    w = chosen.weighted_reductions
    assert w["vae"] >= w["mdn"] >= w["inverse"] * (1 - 1e-9)
    assert w["vae"] <= 10 * w["inverse"] * (1 + 1e-9)
    assert chosen.weights["mdn"] == 1.0
    assert math.log10(chosen.weights["vae"]) == pytest.approx(round(math.log10(chosen.weights["vae"])))


def test_balance_auto_refuses_a_calibration_in_which_a_loss_did_not_go_down():
    with pytest.raises(UsageError, match="f_inv's loss did not go down during the calibration"):
        balance([{"vae": 10, "mdn": 3, "inverse": 1}, {"vae": 9, "mdn": 2, "inverse": 1.2}])


@pytest.mark.parametrize("discrete", [True, False])
def test_the_inverse_model_learns_an_action_that_z_next_reveals(discrete):
    """Toy dynamics z' = z + B a (+ noise): the action is recoverable from (z, z'); f_inv must find it, and not
    from z alone (z' shuffled: chance)."""
    torch.manual_seed(0)
    z_dim, action_dim, n = 8, 4, 4096
    B = torch.randn(action_dim, z_dim)
    z = torch.randn(n, z_dim)
    if discrete:
        index = torch.randint(0, action_dim, (n,))
        actions = torch.nn.functional.one_hot(index, action_dim).float()
    else:
        actions = torch.rand(n, action_dim) * 2 - 1
    z_next = z + actions @ B + 0.05 * torch.randn(n, z_dim)
    model = InverseModel(InverseConfig(z_dim, action_dim, discrete))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        batch = torch.randint(0, n, (256,))
        loss, _ = model.loss(z[batch], z_next[batch], actions[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, fit = model.loss(z, z_next, actions)
        _, blind = model.loss(z, z_next[torch.randperm(n)], actions)
    key = "accuracy" if discrete else "r2"
    assert fit[key] > 0.95, fit
    assert blind[key] < (0.4 if discrete else 0.2), blind


def test_the_inverse_model_loss_keeps_only_the_masked_steps():
    model = InverseModel(InverseConfig(4, 3, discrete=True))
    z, z_next = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    actions = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 5)), 3).float()
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, :2] = True
    loss, _ = model.loss(z, z_next, actions, mask)
    expected = torch.nn.functional.cross_entropy(model(z, z_next)[0, :2], actions[0, :2].argmax(-1))
    assert loss.item() == pytest.approx(expected.item())
    restored = InverseModel.from_state(model.state())
    assert torch.equal(restored(z, z_next), model(z, z_next))


def test_the_collapse_guard_names_the_loss_that_took_over():
    guard = CollapseGuard(recon_limit=120.0, fit_limit=0.99)
    m_ahead, inv_ahead = {"mdn": 2.0, "inverse": 0.5}, {"mdn": 0.5, "inverse": 2.0}
    guard.check(recon=100.0, fit=0.8, reductions=inv_ahead, where="epoch 1")  # healthy: nothing raised
    with pytest.raises(RunFailed, match="at epoch 2: M's loss took over .*130 passed the limit 120"):
        guard.check(recon=130.0, fit=0.8, reductions=m_ahead, where="epoch 2")
    with pytest.raises(RunFailed, match="at epoch 2: f_inv's loss took over .*130 passed the limit 120.*outgrew M's"):
        guard.check(recon=130.0, fit=0.8, reductions=inv_ahead, where="epoch 2")
    with pytest.raises(RunFailed, match="at epoch 3: f_inv's loss took over .*0.995 reached the limit 0.99"):
        guard.check(recon=100.0, fit=0.995, reductions=m_ahead, where="epoch 3")


def test_the_collapse_guard_advises_the_weight_in_use_and_never_the_balance_that_chose_it():
    """Weights --balance auto chose that still collapse: the advice names the weight to change and its value,
    and does not send the user back to --balance auto."""
    auto = CollapseGuard(recon_limit=120.0, fit_limit=0.99, weights={"vae": 0.01, "inverse": 10.0}, auto=True)
    with pytest.raises(RunFailed, match=r"raise --vae-weight \(now 0.01, chosen by --balance auto\)$"):
        auto.check(recon=130.0, fit=0.8, reductions={"mdn": 2.0, "inverse": 0.5}, where="epoch 1")
    with pytest.raises(RunFailed, match=r"lower --inverse-weight \(now 10, chosen by --balance auto\)$"):
        auto.check(recon=100.0, fit=0.995, reductions={"mdn": 2.0, "inverse": 0.5}, where="epoch 1")
    manual = CollapseGuard(recon_limit=120.0, fit_limit=0.99, weights={"vae": 0.5, "inverse": 1.0})
    with pytest.raises(RunFailed, match=r"raise --vae-weight \(now 0.5, set by hand\), or try --balance auto$"):
        manual.check(recon=130.0, fit=0.8, reductions={"mdn": 2.0, "inverse": 0.5}, where="epoch 1")


def _stagewise_copy(tiny_run, run: Path) -> list:
    """A run holding the tiny run's stage-02 V and config, and no M yet."""
    run.mkdir()
    shutil.copyfile(tiny_run["run"] / "vae.pt", run / "vae.pt")
    config = json.loads((tiny_run["run"] / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({k: config[k] for k in ("collect", "vae")}))
    return ["--run", run, *TINY["mdnrnn"], "--joint"]


def test_a_run_forced_to_collapse_stops_naming_the_loss_that_took_over(tiny_run, tmp_path):
    """V's weight 0 and f_inv's 1000: V's reconstruction cannot improve while f_inv's loss pulls z; with the limit
    at 0.99 of the start, the guard stops the first epoch, and nothing of it is kept."""
    flags = _stagewise_copy(tiny_run, tmp_path / "run")
    run = tmp_path / "run"
    before = (run / "vae.pt").read_bytes()
    proc = run_stage("03_train_mdnrnn.py", *flags, "--vae-weight", "0", "--inverse-weight", "1000",
                     "--collapse-recon", "0.99", check=False)
    assert_one_line_error(proc, "joint training collapsed at epoch 1: f_inv's loss took over",
                          "the last good checkpoint is kept", code=1)
    assert (run / "vae.pt").read_bytes() == before and not (run / "joint.pt").exists()
    assert not (run / "mdnrnn.pt").exists()


def test_compare_joint_trains_both_ways_from_the_same_v_and_everything_downstream_reads_the_joint_run(
        tiny_run, tmp_path):
    """compare_joint.py runs 03 plainly and with --joint (λ_vae 0.01) from the tiny run's V; the joint sub-run is
    then a run like any other: 04 evolves C on it, and the same 03 command resumes it, complete."""
    run = tmp_path / "run"
    _stagewise_copy(tiny_run, run)
    out = run_stage("compare_joint.py", "--run", run, *TINY["mdnrnn"], "--vae-weight", "0.01", "--horizons", "1,5",
                    "--starts", "2")
    assert "joint training with λ_vae = 0.01, λ_inv = 1" in out.stdout and "comparison:" in out.stdout
    rows = {r["variant"]: r for r in json.loads((run / "joint-compare" / "comparison.json").read_text())["rows"]}
    assert set(rows) == {"stagewise", "joint"}
    for row in rows.values():
        assert all(math.isfinite(row[k]) for k in ("val_nll", "recon", "open_loop_1", "open_loop_5", "frozen_fit"))
    assert "own_fit" in rows["joint"] and "own_fit" not in rows["stagewise"]
    assert "| stagewise |" in (run / "joint-compare" / "comparison.md").read_text()

    joint_run = run / "joint-compare" / "joint"
    original = checkpoint.weights_hash(checkpoint.load(tiny_run["run"] / "vae.pt", "02")["model"])
    stagewise, joint = (checkpoint.load(joint_run / name, "02") for name in ("vae_stagewise.pt", "vae.pt"))
    assert checkpoint.weights_hash(stagewise["model"]) == original
    fingerprint = checkpoint.weights_hash(joint["model"])
    assert fingerprint != original  # V was trained on
    assert checkpoint.load(joint_run / "mdnrnn.pt", "03")["vae_fingerprint"] == fingerprint
    assert h5py.File(joint_run / "latents.h5", "r").attrs["vae_fingerprint"] == fingerprint  # re-encoded
    with open(joint_run / "metrics" / "joint.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all((float(r["weight_vae"]), float(r["weight_mdn"]), float(r["weight_inverse"])) == (0.01, 1.0, 1.0)
               for r in rows)
    assert (joint_run / "plots" / "joint_losses.png").exists() and (joint_run / "plots" / "joint_balance.png").exists()
    run_stage("04_train_controller.py", "--run", joint_run, *TINY["controller"])
    again = run_stage("03_train_mdnrnn.py", "--run", joint_run, *TINY["mdnrnn"], "--joint", "--vae-weight", "0.01")
    assert "resuming joint training" in again.stdout
    # Other joint weights: the stage-wise variant resumes (they do not concern it), the joint one refuses them.
    other = run_stage("compare_joint.py", "--run", run, *TINY["mdnrnn"], "--vae-weight", "0.1", check=False)
    assert other.returncode == 2 and "stagewise: val nll" in other.stdout
    assert other.stderr.strip().splitlines() == [
        f"compare_joint.py: error: {joint_run} was started with --vae-weight 0.01, not 0.1: pass --vae-weight 0.01 to "
        "resume it, or a new --run to start over"]
