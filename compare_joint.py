"""Train M stage-wise and V, M and f_inv jointly on the same data, V, budget and seed, and compare them.

    python compare_joint.py --env carracing --run results/carracing --epochs 20 --seq-len 100 --batch 16

What it does and writes: pipeline/stages/joint_comparison.py; every flag: --help.
"""
from pipeline.contract.cli import run_main
from pipeline.stages import joint_comparison

if __name__ == "__main__":
    run_main(lambda: joint_comparison.run(joint_comparison.parse_args()))
