"""Stage 02: train V, the convolutional VAE, on frames streamed from data/<env>/.

    python 02_train_vae.py --env carracing --epochs 1 --batch 100

What it does and writes: pipeline/stages/stage02_vae.py; every flag: --help.
"""
from pipeline.contract.cli import run_main
from pipeline.stages import stage02_vae

if __name__ == "__main__":
    run_main(lambda: stage02_vae.run(stage02_vae.parse_args()))
