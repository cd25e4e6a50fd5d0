"""compare_cores.py: every core trained by the real stage 03 on the same data, then scored side by side."""
from __future__ import annotations

import json
import shutil

from conftest import run_stage


def test_compare_cores_end_to_end(tiny_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("vae.pt", "config.json", "latents.h5"):
        shutil.copy2(tiny_run["run"] / name, run / name)
    out = run_stage("compare_cores.py", "--data", tiny_run["data"], "--run", run, "--epochs", "1", "--seq-len", "12",
                    "--batch", "4", "--hidden", "16", "--horizons", "1,3,5", "--starts", "2", "--device", "cpu")
    assert "comparison:" in out.stdout
    result = json.loads((run / "cores" / "comparison.json").read_text())
    rows = {r["core"]: r for r in result["rows"]}
    assert set(rows) == {"lstm", "attention", "vsg", "svsg"}
    for core, row in rows.items():
        assert (run / "cores" / core / "mdnrnn.pt").exists()
        assert row["params"] > 0 and row["steps_per_s"] > 0
        assert all(0 < row[f"open_loop_{k}"] < 1 for k in (1, 3, 5)), row
        gated = core in ("vsg", "svsg")
        assert (0 < row["val_update_fraction"] < 1) if gated else row["val_update_fraction"] != row["val_update_fraction"]
    table = (run / "cores" / "comparison.md").read_text()
    assert "| lstm |" in table and "open-loop k=5" in table and "Command: `python compare_cores.py" in table
    assert (run / "cores" / "comparison.png").stat().st_size > 10_000


def test_compare_cores_rejects_unknown_cores(tmp_path):
    proc = run_stage("compare_cores.py", "--run", tmp_path, "--cores", "lstm,gru", check=False)
    assert proc.returncode == 2 and "gru" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
