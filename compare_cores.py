"""Train every recurrent core of M on the same data, budget and seed, and compare them.

    python compare_cores.py --env carracing --cores lstm,attention,vsg,svsg --epochs 20

What it does and writes: pipeline/stages/compare_cores.py; every flag: --help.
"""
from pipeline.cli import run_main
from pipeline.stages import compare_cores

if __name__ == "__main__":
    run_main(lambda: compare_cores.run(compare_cores.parse_args()))
