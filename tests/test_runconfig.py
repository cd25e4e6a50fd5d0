"""A run folder remembers what it was made from: later stages given only --run find env, data and latents."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.contract import runconfig
from pipeline.contract.errors import UsageError
from pipeline.stages import stage02_vae, stage04_controller


def write_config(run: Path, config) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(config))


def test_a_later_stage_reads_env_and_data_from_the_run(tmp_path):
    run = tmp_path / "run"
    write_config(run, {"collect": {"env": "shapeherd", "data": "/data/a"}, "vae": {"env": "shapeherd", "data": "/data/b"}})
    args = stage02_vae.parse_args(["--run", str(run)])
    assert args.env == "shapeherd" and args.data == Path("/data/b")  # the latest stage's record
    args = stage04_controller.parse_args(["--run", str(run), "--env", "carracing", "--data", "/mine"])
    assert args.env == "carracing" and args.data == Path("/mine")  # the command line wins
    args = stage02_vae.parse_args(["--run", str(tmp_path / "new")])
    assert args.env == "carracing" and args.data == Path("data/carracing")


def test_latents_follow_what_m_was_trained_on(tmp_path):
    run = tmp_path / "run"
    assert runconfig.latents_path(run) == run / "latents.h5"
    write_config(run, {"mdnrnn": {"latents": "../../latents.h5"}})
    assert runconfig.latents_path(run) == tmp_path.parent / "latents.h5"


@pytest.mark.parametrize("text", ["[1, 2]", '{"vae": 3}', "nonsense", '"a string"'])
def test_a_config_of_the_wrong_shape_is_one_clear_error(tmp_path, text):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(UsageError, match="config.json"):
        runconfig.load_config(tmp_path)
