"""package_run.py moves the training machine's paths to the package's: in config.json and in report.html, whose
tables show the config as the run had it."""
from __future__ import annotations

from pathlib import Path

from conftest import ROOT  # noqa: F401  (puts the project on sys.path)
from pipeline.package import relocation


def test_paths_move_to_the_package_and_a_longer_name_is_its_own():
    run, dest = Path("/root/runs/dream"), Path("pretrained/carracing-dream")
    config = {"collect": {"data": "/root/runs/dream-data", "run": "/root/runs/dream"},
              "mdnrnn": {"data": "/root/runs/dream-data", "vae": "/root/runs/dream/vae.pt"}}
    move = relocation(run, dest, "data/dream-carracing", config)
    assert move("/root/runs/dream") == "pretrained/carracing-dream"
    assert move("/root/runs/dream/vae.pt") == "pretrained/carracing-dream/vae.pt"
    assert move("/root/runs/dream-data") == "data/dream-carracing"  # not the run folder with "-data" after it
    assert move("<td>/root/runs/dream-data</td><td>/root/runs/dream</td>") == \
        "<td>data/dream-carracing</td><td>pretrained/carracing-dream</td>"
    assert move("/root/runs/dreamer and /root/runs/dream.old") == "/root/runs/dreamer and /root/runs/dream.old"
