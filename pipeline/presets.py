"""Named presets: the one place where a stage's defaults are shrunk for a smaller run.

A stage's own argparse defaults are the paper's full-scale settings; ``--preset NAME`` replaces those
defaults (flags given on the command line still win).
"""
from __future__ import annotations

PRESETS: dict[str, dict[str, dict]] = {
    # Minutes on a 2-core CPU: the whole pipeline of `make demo` in about 15.
    "demo": {
        "collect": {"episodes": 32, "steps": 250, "workers": 2},
        "vae": {"epochs": 6, "batch": 64},
        "mdnrnn": {"epochs": 30, "seq_len": 100, "batch": 16},
        "controller": {
            "pop": 16, "trials": 2, "generations": 12, "steps": 300, "workers": 2,
            "eval_every": 4, "eval_episodes": 8,
        },
    },
}
