"""Train every recurrent core of M on the same data, budget and seed, and compare them.

    python compare_cores.py --env carracing --cores lstm,attention,vsg,svsg --epochs 20

What it does and writes: pipeline/stages/cores_comparison.py; every flag: --help.
"""
from pipeline.contract.cli import run_main
from pipeline.stages import cores_comparison

if __name__ == "__main__":
    run_main(lambda: cores_comparison.run(cores_comparison.parse_args()))
