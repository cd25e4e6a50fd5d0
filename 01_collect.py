"""Stage 01: random rollouts → HDF5 shards in data/<env>/; the layout: docs/data-format.md.

    python 01_collect.py --env carracing --episodes 10000 --workers 16

What it does and writes: pipeline/stages/stage01_collect.py; every flag: --help.
"""
from pipeline.contract.cli import run_main
from pipeline.stages import stage01_collect

if __name__ == "__main__":
    run_main(lambda: stage01_collect.run(stage01_collect.parse_args()))
