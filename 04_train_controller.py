"""Stage 04: evolve C, the linear controller on [z, h], with CMA-ES in the real environment or in M's dream.

    python 04_train_controller.py --env carracing --pop 64 --trials 16 --workers 64
    python 04_train_controller.py --env carracing --in dream --temperature 1.15 --real-every 25
    python 04_train_controller.py --env carracing --evaluate 100      # mean ± std over 100 fresh episodes

What it does and writes: pipeline/stages/stage04_controller.py; every flag: --help.
"""
from pipeline.contract.cli import run_main
from pipeline.stages import stage04_controller

if __name__ == "__main__":
    run_main(lambda: stage04_controller.run(stage04_controller.parse_args()))
