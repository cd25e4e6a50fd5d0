"""Shared helpers: run the real stage scripts (in the test's process, or in one of their own where a test needs
that), one tiny pipeline run per session, and copies of it."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import runpy
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["TQDM_DISABLE"] = "1"  # stages run in this process (run_stage) show no bars; read once, at tqdm's import

TINY = {
    "collect": ["--episodes", "4", "--steps", "40", "--workers", "2"],
    "vae": ["--epochs", "1", "--batch", "16", "--log-every", "2", "--device", "cpu"],
    "mdnrnn": ["--epochs", "2", "--seq-len", "16", "--batch", "4", "--hidden", "32", "--device", "cpu"],
    "controller": ["--pop", "4", "--trials", "2", "--generations", "2", "--steps", "30", "--workers", "2",
                   "--eval-every", "1", "--eval-episodes", "2"],
}


IN_CI = os.environ.get("CI") == "true"  # .ci/run installs everything the tests use: there nothing may be missing


def missing(reason: str) -> None:
    """A test whose package, browser or library is not installed: skipped on a developer's machine, failed in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI installs it: .ci/run, setup/system-packages.sh and make test)")
    pytest.skip(reason)


def import_or_missing(module: str):
    """The module, or ``missing`` when it cannot be imported."""
    try:
        return __import__(module)
    except ImportError:
        missing(f"{module} is not installed")


def stage_env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", **extra}


def run_stage(script: str, *args: str, check: bool = True, timeout: float = 300, env: dict | None = None,
              **popen) -> subprocess.CompletedProcess | SimpleNamespace:
    """``python script args`` to its end: its exit code, stdout and stderr (an AssertionError with its stderr if
    ``check`` and it failed). Run in this process (``_run_here``), whose imports are already done (a stage's start is
    seconds of imports, most of a tiny stage's cost), unless the run needs a process of its own: another
    environment (``env``), settings for its process (``popen``: a file-size limit), or a Ray backend (a Ray instance
    lives as long as the process that starts it). ``timeout`` applies to a process of its own."""
    if env is not None or popen or "ray" in map(str, args):
        proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT,
                              env=env or stage_env(), capture_output=True, text=True, timeout=timeout, **popen)
    else:
        proc = _run_here(script, *args)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def _run_here(script: str, *args: str) -> SimpleNamespace:
    """``python script args`` run in this process (the script as ``__main__``, through runpy, from the repository's
    root): its exit code, stdout and stderr, as a subprocess gives them, without an interpreter's start and imports.
    An exception that escapes the stage is raised here, as the traceback it would have printed. Progress bars are
    off, as in ``stage_env`` (TQDM_DISABLE, set before tqdm's import). Only what the stage's own process prints is
    captured: its workers write to this process's file descriptors."""
    out, err = StringIO(), StringIO()
    argv, sys.argv = sys.argv, [str(ROOT / script), *map(str, args)]
    cwd = os.getcwd()
    code = 0
    try:
        os.chdir(ROOT)
        with redirect_stdout(out), redirect_stderr(err):
            runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as stopped:
        code = stopped.code if isinstance(stopped.code, int) else 0 if stopped.code is None else 1
    finally:
        sys.argv = argv
        os.chdir(cwd)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


_HOLDER = """
import sys
from pathlib import Path
from pipeline.contract import lock
with lock.hold(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def held_by_another_process(folder: Path, flag: str):
    """``folder``'s lock held by a small process of its own (as a stage holds the folder it writes) until the block
    ends; yields that process's pid. A stage run in the test's own process (``run_stage``) then meets the lock as a
    second process would (a lock is held per process)."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), flag], cwd=ROOT, env=stage_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n", "the holder never took the lock"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(30)


def _tiny_pipeline(base: Path) -> dict:
    """The four stages at tiny scale into ``base``: the folders, and each stage's returncode, stdout and stderr.
    They run as under nohup or CI (output to pipes, progress bars on) and with --log tensorboard, which
    tests/test_logs.py reads."""
    folders = ["--data", str(base / "data"), "--run", str(base / "run")]
    bars = {k: v for k, v in stage_env().items() if k != "TQDM_DISABLE"}
    stages = {
        "collect": ("01_collect.py", *folders, *TINY["collect"]),
        "vae": ("02_train_vae.py", *folders, *TINY["vae"], "--log", "tensorboard"),
        "mdnrnn": ("03_train_mdnrnn.py", *folders, *TINY["mdnrnn"], "--log", "tensorboard"),
        "controller": ("04_train_controller.py", *folders, *TINY["controller"], "--log", "tensorboard"),
        "evaluate": ("04_train_controller.py", *folders, "--steps", "30", "--workers", "2", "--evaluate", "3"),
    }
    out = {"data": str(base / "data"), "run": str(base / "run"), "folders": folders}
    for name, (script, *args) in stages.items():
        proc = run_stage(script, *args, env=bars)
        out[name] = {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
    return out


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist each worker starts on its own contiguous share of the list (the first worker at the
    start, the second half-way). The tests that read the shared tiny run are split around a block of those that
    do not, so the first worker makes the tiny run while the second starts on tests that need none, instead of
    waiting for it. Without xdist the order only groups the tests; each still runs."""
    shared = [item for item in items if "tiny_run" in getattr(item, "fixturenames", ())]
    alone = [item for item in items if "tiny_run" not in getattr(item, "fixturenames", ())]
    first = shared[:len(items) // 2]
    items[:] = first + alone + shared[len(first):]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id) -> dict:
    """The four stages, end to end at tiny scale on CarRacing, run once for the whole session: under pytest-xdist
    the first worker to ask runs them and the others wait for it (a file lock in the session's shared temporary
    folder), as the tests only read it (copy_run makes a copy for a test that writes). Returns the folders and
    each stage's output (.returncode, .stdout, .stderr)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # one folder above each worker's own: the same for every worker of the session
    record = shared / "tiny_run.json"
    with FileLock(str(shared / "tiny_run.lock")):
        if not record.exists():
            record.write_text(json.dumps(_tiny_pipeline(shared / "tiny_pipeline")))
    out = json.loads(record.read_text())
    return {**out, "data": Path(out["data"]), "run": Path(out["run"]),
            **{k: SimpleNamespace(**out[k]) for k in ("collect", "vae", "mdnrnn", "controller", "evaluate")}}


def copy_run(tiny_run, dest: Path, drop: tuple[str, ...] = ()) -> list:
    """A copy of the tiny run's folder, without ``drop`` (glob patterns), for a test that writes into its run: the
    shared ``tiny_run`` stays as the stages left it, whatever order the tests run in. V (52 MB, only read) is
    linked, not copied. The paths its config.json recorded inside the run folder are moved to the copy, as if the
    stages had run there. Returns the --data/--run flags (the rollouts are only read)."""
    source = tiny_run["run"]
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("vae.pt", *drop))
    (dest / "vae.pt").symlink_to(source / "vae.pt")
    config = json.loads((dest / "config.json").read_text())
    for settings in config.values():
        for name, value in settings.items():
            if isinstance(value, str) and (value == str(source) or value.startswith(f"{source}/")):
                settings[name] = str(dest) + value[len(str(source)):]
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return ["--data", tiny_run["data"], "--run", dest]


def rows(path: Path) -> list[dict]:
    """The rows of a metrics CSV; none while the file does not exist yet."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# Stage 04 at test scale, and the files it writes (dropped from a copied run to evolve C afresh).
CONTROLLER = ["--pop", "4", "--trials", "2", "--generations", "5", "--steps", "30", "--eval-every", "2",
              "--eval-episodes", "2", "--seed", "1"]
NOT_04 = ("es_state.pkl", "controller*")
TRAJECTORY = ("generation", "best", "mean", "worst", "sigma", "eval_mean", "eval_std", "env_steps")
EPISODE_FIELDS = ("observations", "actions", "rewards", "terminations", "truncations")  # an episode's arrays on disk


def trajectory(run: Path) -> tuple[list, dict]:
    """Every logged fitness value and the final ES state (CMA mean, sigma, generation)."""
    state = pickle.loads((run / "es_state.pkl").read_bytes())
    return ([[r[k] for k in TRAJECTORY] for r in rows(run / "metrics" / "controller.csv")],
            {"generation": state.generation, "sigma": state.es.sigma, "mean": np.asarray(state.es.mean).tolist()})

def _as_from_a_terminal() -> None:
    """A preexec_fn: SIGINT at its default, as in a command typed at a terminal. A suite started in the background
    by a shell (``nohup make test &``) runs with SIGINT ignored, which a child inherits, and Python then leaves it
    ignored: a test's Ctrl-C would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Started:
    """A stage running in its own process group (its workers with it), with SIGINT as a terminal leaves it;
    stdout and stderr go to files in ``logs``, so a full pipe never stalls it."""

    def __init__(self, script: str, *args, logs: Path, env: dict | None = None):
        logs.mkdir(parents=True, exist_ok=True)
        self.out, self.err = logs / f"{script}.out", logs / f"{script}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT,
                                         env=env or stage_env(), stdout=out, stderr=err, text=True,
                                         start_new_session=True, preexec_fn=_as_from_a_terminal)
        self.pid = self.proc.pid

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()


@contextmanager
def started(script: str, *args, logs: Path, env: dict | None = None):
    """Start a stage; whatever happens in the block, its whole process group is killed when the block ends."""
    stage = Started(script, *args, logs=logs, env=env)
    try:
        yield stage
    finally:
        kill_group(stage.proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the stage and its workers at once (as the OOM killer or a cluster's scheduler would)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def children_of(pid: int) -> list[tuple[int, str]]:
    """The child processes of ``pid`` with their command lines (those that ended meanwhile left out)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    found = []
    for child in map(int, out.split()):
        try:
            found.append((child, Path(f"/proc/{child}/cmdline").read_text()))
        except OSError:  # it ended meanwhile
            pass
    return found


def fork_server_of(pid: int, children: list[tuple[int, str]] | None = None) -> int | None:
    """The stage's multiprocessing fork server (from which its local workers are forked), once it runs."""
    return next((child for child, cmdline in children or children_of(pid) if "forkserver" in cmdline), None)


def workers_of(pid: int) -> list[int]:
    """The worker processes of a stage: the children of its fork server (and any child of its own but
    multiprocessing's resource tracker and the fork server)."""
    children = children_of(pid)
    server = fork_server_of(pid, children)
    own = [child for child, cmdline in children if "resource_tracker" not in cmdline and child != server]
    return own + ([child for child, _ in children_of(server)] if server else [])


def snapshot(*folders) -> dict:
    """sha256 of every file under ``folders``."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def assert_one_line_error(proc, *needles, code: int = 2):
    """Exit code ``code`` (2: bad input; 1: the run failed on its own), exactly one line on stderr, no traceback,
    and every needle in that line."""
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
