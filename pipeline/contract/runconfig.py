"""A run folder's ``config.json``: each stage's resolved settings, which later stages read back.

A leaf module: it imports only the atomic writer, so anything may read a run's config.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from data import atomic
from pipeline.contract.errors import UsageError


def atomic_write_text(path: Path, text: str) -> None:
    atomic.write_bytes(path, text.encode())


def load_config(run: Path) -> dict:
    """The run's config.json as a dict of stage entries ({} when there is none yet)."""
    path = run / "config.json"
    if not path.exists():
        return {}
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UsageError(f"{path} is not valid JSON: fix or delete it") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text file: fix or delete it") from None
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise UsageError(f"{path} does not hold a run's config (an object of one object per stage): fix or delete it")
    return config


# The stages in pipeline order: a setting is looked up in the latest stage that recorded it.
STAGES = ("collect", "vae", "mdnrnn", "controller", "dream")


def recorded(config: dict, key: str, kind=None):
    """The value of setting ``key`` that the latest stage of ``config`` recorded (None if none did), as ``kind``."""
    for stage in reversed(STAGES):
        value = config.get(stage, {}).get(key)
        if value is not None:
            return kind(value) if kind else value
    return None


def latents_path(run: Path) -> Path:
    """The latents.h5 that M of ``run`` was trained on (compare_cores' cores share their parent run's)."""
    path = load_config(run).get("mdnrnn", {}).get("latents")  # relative to the run folder
    return Path(os.path.normpath(run / path)) if path else run / "latents.h5"


def _same(recorded, value) -> bool:
    if isinstance(value, Path):
        return Path(recorded).resolve() == value.resolve()
    return recorded == value


# Where things are, not what they are: a run or dataset may be moved or copied and still resume. What the data
# holds is compared instead, through the ``dataset`` digest the stages record (data.store.index_hash).
_LOCATIONS = {"preset", "source", "run", "data", "vae", "latents"}


_parser: argparse.ArgumentParser | None = None  # the parser of this process's stage, which hints are written for


def use_parser(parser: argparse.ArgumentParser) -> None:
    """The parser whose flags ``check_resume``'s hints are written in (``cli.parse_stage_args`` sets it)."""
    global _parser
    _parser = parser


def _action(name: str) -> argparse.Action | None:
    return next((a for a in _parser._actions if a.dest == name), None) if _parser is not None else None


def _as_flags(name: str, value) -> str | None:
    """Setting ``name`` = ``value`` as the stage's parser takes it on a command line: ``--flag value``, ``--flag``
    for a switch that is on, "" for a switch that is off or a value left unset; None when the parser would
    reject the value (a config.json edited by hand, or written by an older version)."""
    flag = "--" + name.replace("_", "-")
    action = _action(name)
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or isinstance(value, bool):
        on = value == (action.const if action is not None else True)
        return flag if on else ""
    if value is None or value == []:
        return ""
    values = value if isinstance(value, list) else [value]
    if action is not None:
        for item in values:
            try:
                parsed = action.type(str(item)) if action.type else str(item)
            except (argparse.ArgumentTypeError, TypeError, ValueError):
                return None
            if action.choices is not None and parsed not in action.choices:
                return None
    return " ".join(f"{flag} {item}" for item in values)


def _resume_hint(run: Path, name: str, recorded, value) -> str:
    """One line: ``run`` was started with the setting ``name`` at ``recorded``, not ``value``; and how to resume it."""
    flag = "--" + name.replace("_", "-")
    was, now = _as_flags(name, recorded), _as_flags(name, value)
    if was is None:
        return (f"{run} was started with {flag} {recorded} (its config.json says), which {flag} does not accept: pass "
                "a new --run to start over")
    shown = lambda flags: f"with {flags}" if flags else f"without {flag}"  # noqa: E731
    instead = value if now is None or (was and now and " " in was) else shown(now)  # "--lr 0.1, not 0.2"
    fix = f"pass {was}" if was else f"drop {flag}"
    return f"{run} was started {shown(was)}, not {instead}: {fix} to resume it, or a new --run to start over"


def check_resume(run: Path, stage: str, args: argparse.Namespace, may_change: set[str], **derived) -> None:
    """Resuming ``stage`` of ``run`` with other settings than it started with would mix results of different
    meaning: every setting outside ``may_change``, and every ``derived`` value (e.g. ``dataset``), must equal the
    one recorded, or it is one line naming the flag, its recorded value and the command line that resumes."""
    recorded = load_config(run).get(stage, {})
    for name, value in {**vars(args), **derived}.items():
        if name in may_change or name in _LOCATIONS or name not in recorded:
            continue
        if not _same(recorded[name], value):
            if name in derived:
                raise UsageError(f"{run} was trained on other {name} contents than --data {args.data} holds now: pass "
                                 "the data it was trained on, or a new --run to start over")
            raise UsageError(_resume_hint(run, name, recorded[name], value))


def save_stage_config(run: Path, stage: str, args: argparse.Namespace, **extra) -> dict:
    """Record the stage's resolved settings under ``config.json[stage]``; returns that entry."""
    run.mkdir(parents=True, exist_ok=True)
    config = load_config(run)
    entry = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "source"}
    entry.update(extra)
    config[stage] = entry
    atomic_write_text(run / "config.json", json.dumps(config, indent=2, sort_keys=True))
    return entry
