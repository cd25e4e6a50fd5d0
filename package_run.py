"""Package a finished run for shipping: weights only, its config, metrics, plots, report and a few latents.

    python package_run.py --run results/driver-carracing --to pretrained/carracing
"""
from pipeline.contract.cli import run_main
from pipeline.package import main

if __name__ == "__main__":
    run_main(main)
