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
    # The CarRacing driver recipe (docs/driver.md; `make driver` runs all of it): V and M on 48 Brownian rollouts
    # of 1000 steps, then C evolved in the real env on full-length episodes, each cut short once it has earned
    # nothing for 100 steps; the CMA mean is scored on 8 fresh episodes every 10 generations and the best kept.
    # These are the first phase's settings (generations 1–65); the Makefile's driver target continues to 85 with
    # 4 episodes a candidate, then chooses among the scored means again (--reselect 32).
    "driver": {
        "collect": {"episodes": 48, "steps": 1000, "workers": 2},
        "vae": {"epochs": 3, "batch": 64},
        "mdnrnn": {"epochs": 20, "seq_len": 100, "batch": 16},
        "controller": {
            "pop": 16, "trials": 2, "generations": 65, "steps": 1000, "workers": 2, "patience": 100,
            "eval_every": 10, "eval_episodes": 8,
        },
    },
}
