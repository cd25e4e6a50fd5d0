"""One stage-like process timing its worker pool's start: ``python bench/pool_start.py METHOD WORKERS`` prints the
wall seconds from the pool's creation to every worker's first answer (one CarRacing episode of 5 steps each), and
the CPU seconds the pool's start cost: this process's from that moment, its workers' and the fork server's.

Run by ``bench/bench.py --only pool``, a fresh process per measurement, as a stage starts its pool: this script
imports what stage 04 imports first, and the workers are the collection's (``pipeline.collect.Collector``).
"""
from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from multiprocessing import forkserver
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.collect import CollectJob, Collector  # noqa: E402
from pipeline.compute.pool import LocalPool  # noqa: E402
from pipeline.stages import stage04_controller  # noqa: E402, F401  (a stage's imports, as its workers inherit them)


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def server_cpu() -> float:
    """The fork server's CPU seconds and its ended children's (its workers), from /proc; 0 without a server."""
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def main() -> None:
    method, workers = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        job = CollectJob(env="carracing", state=None, data=tmp, seed=0, policy="brownian", max_steps=5, shard_size=100)
        start, start_cpu = time.perf_counter(), cpu(resource.RUSAGE_SELF)
        with LocalPool(Collector, (job,), workers, timeout=600, what="episode", start_method=method) as pool:
            pool.run([("play", (i,)) for i in range(workers)])
            wall = time.perf_counter() - start
        time.sleep(0.5)  # the server has waited for its ended workers
        used = cpu(resource.RUSAGE_SELF) - start_cpu + cpu(resource.RUSAGE_CHILDREN) + server_cpu()
        print(f"{wall:.3f} {used:.3f}")


if __name__ == "__main__":
    main()
