"""What a hostile user tried, each kind done for real: a result used with something it was not made from, a full
disk under a library's own writer, a server that answers but is not Ray, a window nobody sees, more workers than
tasks or memory, bad numbers deep in a shard, and the tracebacks and wrong hints they used to end in. Each ends in
one line with the right exit code and nothing lost, or works."""
from __future__ import annotations

import faulthandler
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from conftest import (
    NOT_04,
    ROOT,
    TINY,
    assert_one_line_error,
    copy_run,
    fork_server_of,
    held_by_another_process,
    import_or_missing,
    run_stage,
    snapshot,
    stage_env,
    started,
    workers_of,
)
from data import atomic
from data.store import Episode, EpisodeRef, RolloutStore, ShardInfo, StoreError, index_hash, write_file
from pipeline.compute import pool, ray_backend
from pipeline.contract import checkpoint, runconfig
from pipeline.contract.errors import UsageError
from pipeline.world_model import WorldModel, check_controller, fingerprint_of

SMALL = ["--steps", "30", "--workers", "2"]


def file_size_limit(limit: int):
    """A preexec_fn: the stage runs under a real RLIMIT_FSIZE of ``limit`` bytes (writes past it fail with EFBIG)."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.fixture(scope="module")
def data_copy(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's rollouts, copied: tests here hold its lock or add to it, never the shared folder."""
    data = tmp_path_factory.mktemp("hostile-data") / "data"
    shutil.copytree(tiny_run["data"], data)
    return data


# -- 1. nothing used with what it was not made from --------------------------------------------------------------
@pytest.fixture(scope="module")
def new_m(tiny_run, data_copy, tmp_path_factory) -> dict:
    """The tiny run after its C was evolved: mdnrnn.pt deleted and M trained again with another --lr. Its
    controller.pt and es_state.pkl are the old M's."""
    run = tmp_path_factory.mktemp("new-m") / "run"
    folders = copy_run(tiny_run, run)
    folders[1] = data_copy
    (run / "mdnrnn.pt").unlink()
    run_stage("03_train_mdnrnn.py", *folders, *TINY["mdnrnn"], "--lr", "0.002")
    return {"run": run, "folders": folders}


def test_controller_pt_records_the_v_and_m_it_was_evolved_on(tiny_run):
    run = tiny_run["run"]
    world = WorldModel.load(run, "carracing")
    ctrl = checkpoint.load(run / "controller.pt", "04")
    assert ctrl["world"] == world.fingerprint()
    states = [checkpoint.load(run / name, "0x")["model"] for name in ("vae.pt", "mdnrnn.pt")]
    assert fingerprint_of(*states) == world.fingerprint()  # the same digest, from the files alone
    check_controller(ctrl, run / "controller.pt", world.fingerprint())
    older = {k: v for k, v in ctrl.items() if k != "world"}  # an older version's controller.pt: cannot tell
    check_controller(older, run / "controller.pt", "another world")
    with pytest.raises(UsageError, match="evolved on another V and M"):
        check_controller(ctrl, run / "controller.pt", "another world")


def test_a_controller_is_never_used_with_an_m_trained_after_it(new_m, tmp_path):
    run, folders = new_m["run"], new_m["folders"]
    before = snapshot(run)
    needles = ("controller.pt", "evolved on another V and M", "04_train_controller.py")
    for script, flags in (("04_train_controller.py", [*folders, *SMALL, "--evaluate", "1"]),
                          ("05_dream.py", ["--run", run, "--steps", "10", "--dreams", "1", "--device", "cpu"]),
                          ("package_run.py", ["--run", run, "--to", tmp_path / "package"]),
                          ("01_collect.py", ["--run", run, "--data", tmp_path / "more", "--policy", "controller",
                                             "--episodes", "1", *SMALL])):
        assert_one_line_error(run_stage(script, *flags, check=False), *needles)
    assert not (tmp_path / "package").exists() and not (tmp_path / "more").exists()
    proc = run_stage("04_train_controller.py", *folders, *TINY["controller"], "--generations", "3", check=False)
    assert_one_line_error(proc, "es_state.pkl", "another V and M")  # training C on further refuses too
    assert snapshot(run) == before


def test_a_folder_being_written_is_read_by_no_stage(tiny_run, data_copy, tmp_path):
    """A live writer holds the data folder's lock (as 01 does while it collects); every reader refuses at once."""
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    folders[1] = data_copy
    before = snapshot(data_copy, run)
    with held_by_another_process(data_copy, "--data") as writer:
        for script, flags in (("02_train_vae.py", [*folders, *TINY["vae"], "--epochs", "2"]),
                              ("03_train_mdnrnn.py", [*folders, *TINY["mdnrnn"], "--epochs", "3"]),
                              ("05_dream.py", [*folders, "--steps", "10", "--dreams", "1", "--device", "cpu"]),
                              ("export_minari.py", ["--data", data_copy, "--root", tmp_path / "minari"])):
            proc = run_stage(script, *flags, check=False)
            assert_one_line_error(proc, f"--data {data_copy} is being written by process {writer}",
                                  "wait for it to end")
    assert snapshot(data_copy, run) == before and not (tmp_path / "minari").exists()


def test_package_refuses_a_run_still_training(tiny_run, tmp_path):
    run = tmp_path / "run"
    copy_run(tiny_run, run)
    with held_by_another_process(run, "--run") as trainer:  # as 04 holds it while it trains
        proc = run_stage("package_run.py", "--run", run, "--to", tmp_path / "package", check=False)
    assert_one_line_error(proc, f"--run {run} is being written by process {trainer}", "packaging it now")
    assert not (tmp_path / "package").exists()


def test_m_is_trained_only_on_the_episodes_v_saw(tiny_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"], data)
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run, ("mdnrnn.pt", "latents.h5"))
    folders[1] = data
    assert checkpoint.load(run / "vae.pt", "02")["dataset"] == json.loads((run / "config.json").read_text())["vae"]["dataset"]
    run_stage("01_collect.py", "--data", data, "--run", tmp_path / "r01", *TINY["collect"][:1], "5",
              *TINY["collect"][2:])  # one more episode of the same collection: the folder grew after V
    before = snapshot(run)
    proc = run_stage("03_train_mdnrnn.py", *folders, *TINY["mdnrnn"], check=False)
    assert_one_line_error(proc, f"{run / 'vae.pt'} was trained on other episodes than --data {data}",
                          "run 02_train_vae.py again", "pass the --data V was trained on")
    assert snapshot(run) == before


def refs_of(rounds: list[int]) -> list[EpisodeRef]:
    return [EpisodeRef(Path("x.h5"), i + 1_000_000 * r, 40, i, "brownian", r) for i, r in enumerate(rounds)]


def test_the_continuation_of_iterative_training_is_not_staleness():
    """iterate.py adds the episodes of later rounds to the data its V saw, on purpose; a folder that grew in the
    rounds V saw, or changed, is another dataset."""
    attrs = {"env_name": "carracing"}
    seen = refs_of([0, 0, 0])
    v = checkpoint.dataset_record(seen, index_hash(seen, attrs))
    later = [EpisodeRef(Path("y.h5"), 1_000_000 + i, 40, 9, "controller", 1) for i in range(2)]
    assert checkpoint.trained_on(v, seen, attrs)
    assert checkpoint.trained_on(v, seen + later, attrs)
    assert not checkpoint.trained_on(v, refs_of([0, 0, 0, 0]), attrs)  # more of the first collection
    assert not checkpoint.trained_on(v, seen[:2], attrs)  # fewer
    assert checkpoint.trained_on({}, refs_of([0]), attrs)  # an older V records nothing: cannot tell


# -- 2. every write atomic, the libraries' included ---------------------------------------------------------------
def test_joint_training_on_a_full_disk_keeps_stage_02s_v(tiny_run, tmp_path):
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    v = (run / "vae.pt").read_bytes()
    proc = run_stage("03_train_mdnrnn.py", *folders, *TINY["mdnrnn"], "--joint", "--epochs", "1", check=False,
                     preexec_fn=file_size_limit(len(v) // 3))
    assert_one_line_error(proc, f"file size limit reached while writing {run / 'vae_stagewise.pt'}", "free space")
    assert not (run / "vae_stagewise.pt").exists() and not list(run.glob("*.tmp"))
    assert (run / "vae.pt").read_bytes() == v
    # A copy an older version left cut short is made again, from vae.pt (still stage 02's V before joint.pt exists).
    (run / "vae_stagewise.pt").write_bytes(v[: len(v) // 2])
    from pipeline.joint import keep_stagewise_v
    keep_stagewise_v(run)
    assert (run / "vae_stagewise.pt").read_bytes() == v


def test_ppo_zips_are_written_whole_and_a_damaged_one_is_one_line(tiny_run, tmp_path):
    run = tmp_path / "run"
    copy_run(tiny_run, run, NOT_04 + ("metrics",))
    flags = ["--run", run, "--algo", "ppo", "--n-steps", "32", *SMALL, "--eval-every", "1", "--eval-episodes", "2",
             "--timesteps", "32"]
    proc = run_stage("04_train_controller.py", *flags, check=False, preexec_fn=file_size_limit(50_000))  # the zips: about 90 kB
    assert_one_line_error(proc, "file size limit reached while writing", "ppo", ".zip", "free space")
    assert not list(run.glob("ppo*")), "no zip, whole or partial, under any name"
    evaluate = ["--run", run, "--steps", "30", "--evaluate", "1"]
    assert_one_line_error(run_stage("04_train_controller.py", *evaluate, check=False), "ppo_best.zip is missing")
    run_stage("04_train_controller.py", *flags)
    from pipeline import ppo
    assert ppo.load_best(run).world_fingerprint == WorldModel.load(run, "carracing").fingerprint()
    blob = (run / "ppo_best.zip").read_bytes()
    (run / "ppo_best.zip").write_bytes(blob[: len(blob) // 2])
    for script, flags in (("04_train_controller.py", evaluate),
                          ("05_dream.py", ["--run", run, "--steps", "10", "--dreams", "1", "--device", "cpu"])):
        assert_one_line_error(run_stage(script, *flags, check=False), "ppo_best.zip is corrupted", "delete it")
    (run / "ppo_best.zip").write_bytes(blob)  # whole again, but recording another V and M than the run's
    ppo.save(ppo.load(run / "ppo_best.zip"), run / "ppo_best.zip", "0" * 64)
    assert_one_line_error(run_stage("04_train_controller.py", *evaluate, check=False), "ppo_best.zip learnt on another V "
                          "and M than this run's", "--algo ppo again")


@pytest.fixture(scope="module")
def exported(data_copy, tmp_path_factory) -> Path:
    """The tiny rollouts as a Minari dataset (its folder)."""
    root = tmp_path_factory.mktemp("minari")
    run_stage("export_minari.py", "--data", data_copy, "--root", root, "--dataset", "hostile/tiny-v0")
    return root / "hostile" / "tiny-v0"


def test_a_minari_export_on_a_full_disk_leaves_no_dataset_and_the_rerun_works(data_copy, exported, tmp_path):
    root = tmp_path / "minari"
    command = ["--data", data_copy, "--root", root, "--dataset", "hostile/tiny-v0"]
    proc = run_stage("export_minari.py", *command, check=False, preexec_fn=file_size_limit(200_000))
    assert_one_line_error(proc, "file size limit reached while writing", str(root / "hostile" / "tiny-v0"))
    assert not (root / "hostile" / "tiny-v0").exists() and not [p for p in root.rglob("*") if p.is_file()]
    run_stage("export_minari.py", *command)  # not refused as "exists already"
    with h5py.File(root / "hostile" / "tiny-v0" / "data" / "main_data.hdf5", "r") as f:
        got = [(f[f"episode_{i}"].attrs["policy"], int(f[f"episode_{i}"].attrs["round"])) for i in range(4)]
    assert got == [("brownian", 0)] * 4  # each episode's provenance, written inside the staging folder
    files = lambda folder: sorted(p.relative_to(folder) for p in folder.rglob("*"))  # noqa: E731
    assert files(root / "hostile" / "tiny-v0") == files(exported)
    assert [p.name for p in root.iterdir()] == ["hostile"]  # no staging folder left beside it


def test_a_writer_that_crashes_is_one_line(tmp_path):
    """HDF5 crashes the process whose disk write fails (SIGSEGV): the export's child dies, the stage says so."""
    import resource

    from pipeline import minari_io
    from pipeline.contract.errors import RunFailed

    def crash():
        faulthandler.disable()  # pytest's handler, inherited by the forked child, would print its stack to the log
        os.kill(os.getpid(), signal.SIGSEGV)

    with pytest.raises(RunFailed, match=r"ended the writer \(signal SIGSEGV\); nothing was left under its name"):
        minari_io._in_child(crash, final=tmp_path / "ds")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**40, hard))  # a limit is set (far above anything this test writes)
    try:
        with pytest.raises(atomic.DiskFull, match="file size limit reached while writing"):
            minari_io._in_child(crash, final=tmp_path / "ds")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    with pytest.raises(UsageError, match="raised in the child"):
        minari_io._in_child(lambda: (_ for _ in ()).throw(UsageError("raised in the child")), final=tmp_path / "ds")


def test_temporary_names_fit_beside_a_name_near_the_limit(tmp_path):
    long = tmp_path / ("n" * 250)
    atomic.write_bytes(long, b"whole")
    assert long.read_bytes() == b"whole" and len(atomic.temporary(long).name) <= atomic.NAME_MAX
    atomic.copy_file(long, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"whole" and sorted(p.name for p in tmp_path.iterdir()) == ["copy", long.name]


# -- 3. no hangs ------------------------------------------------------------------------------------------------
@pytest.fixture
def http_server():
    """An HTTP server on 127.0.0.1, which accepts connections but is not Ray."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server():
    """A port that accepts connections and never says anything."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_an_address_where_another_server_answers_is_one_line(http_server, silent_server, tmp_path):
    with pytest.raises(UsageError, match=r"another server answered, but not as a Ray cluster does \('"):
        ray_backend.check_reachable(http_server)
    with pytest.raises(UsageError, match="accepts connections but sent nothing back within 0.5 s"):
        ray_backend.check_reachable(silent_server, timeout=0.5)
    import_or_missing("ray")
    proc = run_stage("01_collect.py", "--data", tmp_path / "data", "--run", tmp_path / "run", "--episodes", "2",
                     *SMALL, "--backend", "ray", "--address", http_server, check=False, timeout=120)
    assert_one_line_error(proc, f"--address {http_server}: another server answered", "Ray cluster")
    assert not (tmp_path / "data").exists()


def test_play_without_a_window_is_one_line(tiny_run):
    proc = run_stage("05_dream.py", "--run", tiny_run["run"], "--play", "--device", "cpu", check=False, timeout=120,
                     env=stage_env(SDL_VIDEODRIVER="dummy", DISPLAY=""))
    assert_one_line_error(proc, "--play needs a window", "'dummy'", "drop --play")


# -- 4. workers: no more than tasks, memory checked up front ----------------------------------------------------
def test_a_pool_starts_no_more_workers_than_calls(tmp_path):
    from tests.pool_workers import Flaky

    with pool.make("local", Flaky, (str(tmp_path),), workers=8, timeout=30, what="test", calls=3) as workers:
        assert workers.workers == 3
        assert workers.run([("ok", (1,)), ("ok", (2,))]) == [10, 20]
        assert len(workers.procs) == 2  # started when a call needed them
    assert isinstance(pool.make("local", Flaky, (str(tmp_path),), workers=8, timeout=1, what="test", calls=1),
                      pool.InlinePool)


def test_more_workers_than_cores_is_a_warning_and_more_than_memory_is_refused(monkeypatch, capsys, tmp_path):
    from tests.pool_workers import Flaky

    cores = os.cpu_count()
    monkeypatch.setattr(pool, "available_memory", lambda: (cores + 1) * pool.WORKER_MEMORY)
    pool.make("local", Flaky, (str(tmp_path),), workers=cores + 1, timeout=30, what="test").close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: --workers {cores + 1} starts {cores + 1} worker processes on "
                                               f"{cores} cores")
    monkeypatch.setattr(pool, "available_memory", lambda: 3 * pool.WORKER_MEMORY + 1)
    with pytest.raises(UsageError, match=r"--workers 300: 4 worker processes need about 1.6 GB .* pass --workers 3 "
                                         "or fewer"):
        pool.make("local", Flaky, (str(tmp_path),), workers=300, timeout=30, what="test", calls=4)


def test_workers_the_machine_cannot_hold_are_refused_before_any_starts(tiny_run, tmp_path):
    if (pool.available_memory() or 0) >= 1024 * pool.WORKER_MEMORY:
        pytest.skip("this machine could hold 1024 workers")
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run, NOT_04)
    before = snapshot(run)
    proc = run_stage("04_train_controller.py", *folders, "--workers", "1024", "--pop", "4", "--trials", "1",
                     "--steps", "30", check=False, timeout=120)
    assert_one_line_error(proc, "--workers 1024: 1024 worker processes need about 400.0 GB", "available")
    assert snapshot(run) == before
    data = tmp_path / "new-data"  # 01 too, before its folders (and their lock files) exist
    proc = run_stage("01_collect.py", "--data", data, "--run", tmp_path / "new-run", "--workers", "1024", "--episodes",
                     "1024", "--steps", "30", check=False, timeout=120)
    assert_one_line_error(proc, "--workers 1024: 1024 worker processes need about 400.0 GB", "available")
    assert not data.exists() and not (tmp_path / "new-run").exists()


# -- 5. bad numbers deep in a shard -----------------------------------------------------------------------------
def has_episode(path: Path, key: str) -> bool:
    with h5py.File(path, "r") as f:
        return key in f


INFO = ShardInfo(env="carracing", spaces={}, preprocessing="test")


def episode(steps: int = 5, obs: int | None = None, **change) -> Episode:
    ep = Episode(id=0, observations=np.zeros((steps + 1 if obs is None else obs, 64, 64, 3), np.uint8),
                 actions=np.zeros((steps, 3), np.float32), rewards=np.zeros(steps, np.float32),
                 terminations=np.zeros(steps, bool), truncations=np.zeros(steps, bool), seed=0, policy="brownian")
    for name, value in change.items():
        setattr(ep, name, value)
    return ep


@pytest.mark.parametrize("bad,message", [
    (episode(actions=np.array([[0, 0, 0]] * 3 + [[0, np.nan, 0]] + [[0, 0, 0]], np.float32)),
     "episode_0 has a non-finite action (nan) at step 3"),
    (episode(rewards=np.array([0, 0, np.inf, 0, 0], np.float32)), "episode_0 has a non-finite reward (inf) at step 2"),
    (episode(obs=4), "episode_0 has 4 observations for 5 actions"),
    (episode(rewards=np.zeros(4, np.float32)), "episode_0 has rewards of shape (4,) for 5 actions"),
    (episode(truncations=np.zeros(6, bool)), "episode_0 has truncations of shape (6,) for 5 actions"),
])
def test_a_shard_whose_episode_does_not_fit_together_is_refused_naming_it(tmp_path, bad, message):
    write_file(tmp_path / "shard_000000-000000.h5", [bad], INFO)
    with pytest.raises(StoreError) as refused:
        RolloutStore(tmp_path).index()
    assert str(refused.value).startswith(f"{tmp_path / 'shard_000000-000000.h5'}: {message}"), refused.value
    assert "move the file out of" in str(refused.value)


@pytest.mark.parametrize("damage,needle", [
    (lambda g: g["actions"].__setitem__((7, 1), np.nan), "episode_1 has a non-finite action (nan) at step 7"),
    (lambda g: g["rewards"].__setitem__(3, -np.inf), "episode_1 has a non-finite reward (-inf) at step 3"),
    (lambda g: (g.__delitem__("observations"), g.create_dataset("observations", data=np.zeros((30, 64, 64, 3), np.uint8))),
     "episode_1 has 30 observations for 40 actions"),
])
def test_bad_data_is_refused_by_every_stage_that_reads_it(tiny_run, tmp_path, damage, needle):
    data = tmp_path / "data"
    shutil.copytree(tiny_run["data"], data)
    shard = next(p for p in sorted(data.glob("*.h5")) if has_episode(p, "episode_1"))
    with h5py.File(shard, "a") as f:
        damage(f["episode_1"])
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    folders[1] = data
    before = snapshot(data, run)
    for script, flags in (("01_collect.py", ["--data", data, "--run", tmp_path / "r01", *TINY["collect"]]),
                          ("02_train_vae.py", [*folders, *TINY["vae"], "--epochs", "2"]),
                          ("03_train_mdnrnn.py", [*folders, *TINY["mdnrnn"], "--epochs", "3"])):
        assert_one_line_error(run_stage(script, *flags, check=False), f"{shard}: {needle}", "move the file out")
    assert snapshot(data, run) == before


# -- 6. one line instead of a traceback, and hints that work ------------------------------------------------------
def test_a_truncated_or_empty_minari_dataset_is_one_line(exported, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(exported, damaged)
    data_file = damaged / "data" / "main_data.hdf5"
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    proc = run_stage("02_train_vae.py", "--data", f"minari:{damaged}", "--run", tmp_path / "run", *TINY["vae"],
                     check=False)
    assert_one_line_error(proc, f"minari:{damaged}", "damaged or incomplete", "export_minari.py")
    assert not (tmp_path / "run" / "vae.pt").exists()

    import gymnasium as gym
    import minari
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tmp_path / "store"))
        minari.create_dataset_from_buffers("hostile/empty-v0", [], env="CarRacing-v3",
                                           observation_space=gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
                                           action_space=gym.spaces.Box(-1, 1, (3,), np.float32), data_format="hdf5")
    proc = run_stage("02_train_vae.py", "--data", f"minari:{tmp_path / 'store' / 'hostile' / 'empty-v0'}", "--run",
                    tmp_path / "run2", *TINY["vae"], check=False)
    assert_one_line_error(proc, "holds no episodes", "pass a Minari dataset with episodes")
    assert "01_collect.py" not in proc.stderr


def test_export_to_a_root_it_cannot_write_is_one_line(tiny_run):
    """For real, as a user without write permission (the unprivileged user nobody when run as root)."""
    import pwd
    import tempfile

    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("no setpriv to run the export as the unprivileged user nobody")
        user = pwd.getpwnam("nobody")
        prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    base = Path(tempfile.mkdtemp(prefix="hostile-root-"))
    try:
        shutil.copytree(tiny_run["data"], base / "data")
        (base / "root").mkdir()
        (base / "home").mkdir()
        for folder, _, files in os.walk(base):
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
            os.chmod(folder, 0o755 if prefix else 0o555)
        os.chmod(base / "home", 0o777)
        before = snapshot(base)
        proc = subprocess.run([*prefix, sys.executable, str(ROOT / "export_minari.py"), "--data", str(base / "data"),
                               "--root", str(base / "root")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env=stage_env(HOME=str(base / "home"), MPLCONFIGDIR=str(base / "home")))
        assert_one_line_error(proc, f"--root {base / 'root'} cannot be written", "pass a folder you can write to")
        assert snapshot(base) == before
    finally:
        for folder, _, _ in os.walk(base):
            os.chmod(folder, 0o755)
        shutil.rmtree(base)


@pytest.mark.parametrize("script,flags", [
    ("02_train_vae.py", TINY["vae"]),
    ("03_train_mdnrnn.py", TINY["mdnrnn"]),
    ("04_train_controller.py", [*TINY["controller"], "--generations", "3"]),
])
def test_a_file_where_tensorboard_writes_is_one_line(tiny_run, tmp_path, script, flags):
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run, ("tb",))
    (run / "tb").write_text("not a folder")
    before = snapshot(run)
    proc = run_stage(script, *folders, *flags, "--log", "tensorboard", check=False)
    assert_one_line_error(proc, f"--log tensorboard writes into {run / 'tb'}, which is a file", "move it away")
    assert snapshot(run) == before


@pytest.mark.parametrize("pop", ["1", "2"])
def test_a_population_pycma_cannot_evolve_is_refused_up_front(tmp_path, pop):
    proc = run_stage("04_train_controller.py", "--run", tmp_path / "run", "--pop", pop, check=False)
    assert_one_line_error(proc, "--pop", "at least 3", "pass --pop 3 or more")
    assert not (tmp_path / "run").exists()


def test_a_package_name_near_the_limit_works_and_past_it_is_one_line(tiny_run, tmp_path):
    dest = tmp_path / ("p" * 250)
    run_stage("package_run.py", "--run", tiny_run["run"], "--to", dest, "--episodes", "1")
    assert (dest / "controller.pt").exists() and sorted(p.name for p in tmp_path.iterdir()) == [dest.name]
    proc = run_stage("package_run.py", "--run", tiny_run["run"], "--to", tmp_path / ("p" * 300), check=False)
    assert_one_line_error(proc, "--to", "300 bytes", "choose a shorter one")


@pytest.mark.parametrize("moment", ["server", "workers"])
def test_ctrl_c_while_the_workers_still_start_is_one_line(tiny_run, tmp_path, moment):
    """Ctrl-C as soon as the fork server runs (it imports torch, gymnasium and the project for seconds), or as
    soon as both workers are forked (each still builds its evaluator: V and M from their checkpoints)."""
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    with started("04_train_controller.py", *folders, "--steps", "30", "--workers", "2", "--trials", "1",
                 "--evaluate", "2", logs=tmp_path / "logs") as stage:
        deadline = time.monotonic() + 120
        ready = (lambda: fork_server_of(stage.pid)) if moment == "server" else \
            (lambda: len(workers_of(stage.pid)) >= 2)
        while not ready():
            assert stage.proc.poll() is None and time.monotonic() < deadline, stage.stderr()
            time.sleep(0.01)
        os.killpg(stage.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        code = stage.wait(60)
        result = SimpleNamespace(returncode=code, stderr=stage.stderr())
    assert_one_line_error(result, "interrupted; re-run the same command to resume", code=130)


@pytest.fixture
def parser_of():
    """Makes ``check_resume`` write its hints for a stage's parser, as parse_stage_args does; restored after."""
    before = runconfig._parser

    def use(stage):
        runconfig.use_parser(stage.parser())

    yield use
    runconfig._parser = before


@pytest.mark.parametrize("recorded,now,hint", [
    ({"joint": True}, {"joint": False}, "was started with --joint, not without --joint: pass --joint to resume it"),
    ({"joint": False}, {"joint": True}, "was started without --joint, not with --joint: drop --joint to resume it"),
    ({"seq_len": 16}, {"seq_len": 32}, "was started with --seq-len 16, not 32: pass --seq-len 16 to resume it"),
    ({"core": "transformer"}, {"core": "lstm"}, "was started with --core transformer (its config.json says), which "
                                                "--core does not accept: pass a new --run to start over"),
    ({"hidden": 10**12}, {"hidden": 32}, "was started with --hidden 1000000000000 (its config.json says), which "
                                         "--hidden does not accept"),
])
def test_a_resume_hint_is_a_command_line_the_parser_accepts(tmp_path, parser_of, recorded, now, hint):
    from pipeline.stages import stage03_mdnrnn

    parser_of(stage03_mdnrnn)
    (tmp_path / "config.json").write_text(json.dumps({"mdnrnn": recorded}))
    with pytest.raises(UsageError) as refused:
        runconfig.check_resume(tmp_path, "mdnrnn", SimpleNamespace(**now, data=tmp_path), set())
    assert str(refused.value).startswith(f"{tmp_path} {hint}"), refused.value
    if "pass --" in hint:  # what the hint says to pass parses
        flags = hint.split("pass ")[1].split(" to resume")[0].split()
        stage03_mdnrnn.parser().parse_args(flags)


def test_resuming_a_joint_run_without_joint_says_pass_joint(tiny_run, tmp_path):
    run = tmp_path / "run"
    folders = copy_run(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["mdnrnn"]["joint"] = True  # as a joint run records it
    (run / "config.json").write_text(json.dumps(config))
    proc = run_stage("03_train_mdnrnn.py", *folders, *TINY["mdnrnn"], "--epochs", "3", check=False)
    assert_one_line_error(proc, "was started with --joint, not without --joint: pass --joint to resume it")
