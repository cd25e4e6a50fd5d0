"""Train M stage-wise and V, M and f_inv jointly on the same data, V, budget and seed, and compare them.

    python compare_joint.py --env carracing --run results/carracing --epochs 20 --seq-len 100 --batch 16

What it does and writes: pipeline/stages/compare_joint.py; every flag: --help.
"""
from pipeline.cli import run_main
from pipeline.stages import compare_joint

if __name__ == "__main__":
    run_main(lambda: compare_joint.run(compare_joint.parse_args()))
