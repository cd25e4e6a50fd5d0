"""The command-line contract every stage keeps, and its one-line errors.

Every stage takes ``--env``, ``--data``, ``--run``, ``--seed`` and ``--preset``; bad input ends in one line
on stderr that names the flag or file and the fix, with exit code 2 and no traceback.
"""
from __future__ import annotations

import argparse
import ctypes
import math
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import envs
from data import atomic
from data.store import StoreError
from envs.base import EnvUnavailable
from pipeline import minari_io
from pipeline.contract import runconfig
from pipeline.contract.errors import RunFailed, UsageError
from pipeline.contract.presets import PRESETS
from pipeline.contract.runconfig import load_config

DEFAULT_ENV = "carracing"


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (not the usage block) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


# Upper bounds of the numeric flags. Every value in range works in numpy, torch and HDF5 alike (memory permitting);
# beyond them a library refuses it mid-run, or the run could not finish on any machine.
INT_MAX = 2**31 - 1  # a signed 32-bit integer: what every library the stages pass counts and sizes to takes
FLOAT_MAX = 1e6  # weights, scales, temperatures and step sizes: far beyond any useful setting, finite in float32 sums
# --seed: numpy's RandomState takes seeds below 2**32 and CMA-ES draws from RandomState(seed + 1) (torch's below
# 2**64, HDF5 stores 64 bits): the real bound is 2**32 - 2. 2**31 - 2 keeps seed + 1 a positive signed 32-bit int
# too, for env bindings that read a C int.
SEED_MAX = 2**31 - 2
MAX_WORKERS = 1024  # processes (or Ray actors) of one pool
MAX_EPISODES = 10**6  # a dataset's episodes, or episodes per scoring: the index of them is held in memory
MAX_STEPS = 10**6  # steps of one episode or dream: its frames are held in memory
MAX_SHARD = 1000  # episodes per shard: a shard is built in memory before it is written
# multiprocessing waits with poll(), which takes at most 2**31 - 1 ms (about 24.8 days)
MAX_TIMEOUT = 2_000_000.0


def _number(kind: type, low: float, inclusive: bool, high: float, what: str) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        if value > high:
            shown = int(high) if float(high).is_integer() else high
            raise argparse.ArgumentTypeError(f"{text} is not {what} up to {shown}")
        return value

    parse.__name__ = what
    parse.low, parse.high = low, high  # read by the tests: every numeric flag has both
    return parse


def positive_int_up_to(high: int) -> Callable[[str], int]:
    return _number(int, 0, False, high, "a positive integer")


def nonneg_int_up_to(high: int) -> Callable[[str], int]:
    return _number(int, 0, True, high, "a non-negative integer")


positive_int = positive_int_up_to(INT_MAX)
nonneg_int = nonneg_int_up_to(INT_MAX)
positive_float = _number(float, 0.0, False, FLOAT_MAX, "a positive number")
nonneg_float = _number(float, 0.0, True, FLOAT_MAX, "a non-negative number")
seed = nonneg_int_up_to(SEED_MAX)
workers = positive_int_up_to(MAX_WORKERS)
episodes = positive_int_up_to(MAX_EPISODES)
steps = positive_int_up_to(MAX_STEPS)
task_timeout = _number(float, 0.0, False, MAX_TIMEOUT, "a positive number of seconds")


def fraction(text: str) -> float:
    value = _number(float, 0.0, True, math.inf, "a number in [0, 1)")(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number in [0, 1)")
    return value


def learning_rate(text: str) -> float:
    """Adam moves every weight by about the learning rate per step: above 1 it can only diverge."""
    value = _number(float, 0.0, False, math.inf, "a learning rate in (0, 1]")(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} is not a learning rate in (0, 1]")
    return value


def probability(text: str) -> float:
    value = _number(float, 0.0, False, math.inf, "a number in (0, 1)")(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number in (0, 1)")
    return value


for _parse in (fraction, learning_rate, probability):
    _parse.low, _parse.high = 0.0, 1.0


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show (derived at run time)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def stage_parser(description: str) -> Parser:
    p = Parser(description=description, formatter_class=HelpFormatter)
    p.add_argument("--env", help=f"data source: {', '.join(envs.names())} (default: the one --run was trained on, "
                                 f"else {DEFAULT_ENV})")
    p.add_argument("--data", type=Path, help="rollout folder (default: the one --run was trained on, else data/<env>)")
    p.add_argument("--run", type=Path, help="run folder for checkpoints, metrics and plots (default: results/<env>)")
    p.add_argument("--seed", type=seed, default=0, help=f"seed that makes the stage reproducible (0 to {SEED_MAX})")
    p.add_argument("--preset", choices=sorted(PRESETS), help="named smaller-scale settings (see pipeline/contract/presets.py)")
    p.add_argument("--state", help="level of a retro game (sonic default: GreenHillZone.Act1); later stages "
                                    "default to the one 01_collect.py recorded")
    return p


def parse_stage_args(parser: Parser, stage: str, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse, apply ``--preset`` to the defaults, and resolve env, data and run folders."""
    known, _ = parser.parse_known_args(argv)
    if known.preset:
        parser.set_defaults(**PRESETS[known.preset].get(stage, {}))
    args = parser.parse_args(argv)
    runconfig.use_parser(parser)  # a resume hint is written in this parser's flags
    # A run folder remembers what it was made from: a later stage given only --run finds its env, data and
    # level there (flags given on the command line still win).
    recorded = load_config(args.run) if args.run else {}
    if args.data is not None and minari_io.is_spec(args.data):
        if stage == "collect":
            parser.error(f"argument --data: 01_collect.py writes a data folder; {args.data} is read by the later stages")
        if not args.env and not runconfig.recorded(recorded, "env"):
            args.env = minari_io.env_of(minari_io.load(str(args.data)))
            if args.env is None:
                parser.error(f"argument --env: {args.data} does not record an env of this project "
                             f"({', '.join(minari_io.GYM_IDS)}): pass --env, the source its episodes come from")
    args.env = args.env or runconfig.recorded(recorded, "env") or DEFAULT_ENV
    args.run = args.run or Path("results") / args.env.replace(":", "-")
    recorded = recorded or load_config(args.run)
    args.data = args.data or runconfig.recorded(recorded, "data", Path) or Path("data") / args.env.replace(":", "-")
    if args.state is None and stage != "collect":
        args.state = recorded.get("collect", {}).get("state")
    for flag, folder in (("--run", args.run), ("--data", args.data)):
        if _is_file(folder):
            parser.error(f"argument {flag}: {folder} is a file, not a folder; pass a folder")
    try:
        args.source = envs.get(args.env, state=args.state)
    except KeyError as e:
        parser.error(f"argument --env: {e.args[0]}")
    return args


def _is_file(path: Path) -> bool:
    """Whether something other than a folder is at ``path`` (a folder that cannot be looked into counts as none:
    what reads or writes it reports that)."""
    try:
        return path.exists() and not path.is_dir()
    except OSError:
        return False


def only_with(parser: Parser, args: argparse.Namespace, flags: list[str], applies: bool, when: str) -> None:
    """A flag of ``flags`` set to other than its default where it does not apply (``applies`` is false)
    contradicts the others: one line naming it, exit 2."""
    for flag in flags:
        dest = flag.lstrip("-").replace("-", "_")
        if not applies and getattr(args, dest) != parser.get_default(dest):
            parser.error(f"argument {flag}: applies only {when}; drop it")


def add_backend_flags(parser: Parser) -> None:
    """``--backend``, ``--address`` and ``--task-timeout``, for the stages whose work spreads over a worker pool
    (01 and 04)."""
    parser.add_argument("--backend", choices=["local", "ray"], default="local",
                        help="where the workers run: local processes, or Ray actors (optional: pip install 'ray>=2.9'); "
                             "results are the same")
    parser.add_argument("--address", help="with --backend ray: the address of a running Ray cluster "
                                          "(e.g. 10.0.0.1:6379, or 'auto'); default: start a local Ray instance")
    parser.add_argument("--task-timeout", type=task_timeout, default=600.0,
                        help="seconds in which some task (an episode in 01, a candidate's trials in 04) must finish, "
                             "starting a fresh worker included; past it the busy workers count as hung and are "
                             "replaced, and their tasks are done again (as after a worker died); with --workers 1 "
                             "tasks run in this process")


def check_backend_flags(parser: Parser, args: argparse.Namespace) -> None:
    only_with(parser, args, ["--address"], args.backend == "ray", "with --backend ray")


def _terminate(signum, frame) -> None:
    """SIGTERM (a scheduler, ``kill``, ``timeout``) ends a stage exactly as Ctrl-C does: as KeyboardInterrupt, so
    the same cleanup runs (workers ended, temporary files removed). Further ones are ignored: the cleanup the
    first one started must not be cut short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _redeliver(unraisable) -> None:
    """``sys.unraisablehook``: a KeyboardInterrupt (Ctrl-C, or SIGTERM through ``_terminate``) that arrived while
    Python ran a finalizer or a weakref callback cannot propagate there, and would be lost, printed as "Exception
    ignored". Deliver it again to the main thread, where it ends the stage as any interrupt does."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt):
        # From another thread, a moment later: raised inside this hook, it would be as unraisable as the first.
        timer = threading.Timer(0.05, _interrupt_main_thread)
        timer.daemon = True
        timer.start()
        return
    sys.__unraisablehook__(unraisable)


def _interrupt_main_thread() -> None:
    """Raise KeyboardInterrupt in the main thread at its next bytecode, through CPython's
    ``PyThreadState_SetAsyncExc``, whatever the signal handlers are. (``_thread.interrupt_main`` runs SIGINT's
    handler, and a stage started in the background by a shell (``nohup … &``) inherits SIGINT ignored: there
    it would do nothing, and the interrupt would be lost.)"""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
    set_async_exc(threading.main_thread().ident, KeyboardInterrupt)


def run_main(main: Callable[[], None]) -> None:
    """Run a stage's ``main``: bad input or a full disk → one line and exit 2; a dead worker → one line
    and exit 1; Ctrl-C or SIGTERM → exit 130."""
    prog = Path(sys.argv[0]).name
    handler, hook = None, sys.unraisablehook
    if threading.current_thread() is threading.main_thread():
        handler = signal.signal(signal.SIGTERM, _terminate)
        sys.unraisablehook = _redeliver
    try:
        _run(main, prog)
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)
            sys.unraisablehook = hook


def _run(main: Callable[[], None], prog: str) -> None:
    try:
        main()
    except (UsageError, StoreError, EnvUnavailable, atomic.DiskFull) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        reason = atomic.no_space(e)
        if reason is None:
            raise
        print(f"{prog}: error: {atomic.DiskFull(e.filename or 'a file', reason)}", file=sys.stderr)
        sys.exit(2)
    except RunFailed as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; re-run the same command to resume", file=sys.stderr)
        sys.exit(130)
