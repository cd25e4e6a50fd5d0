"""Stage 02: train V, the convolutional VAE, on frames streamed from data/<env>/.

    python 02_train_vae.py --env carracing --epochs 1 --batch 100

What it does and writes: pipeline/stages/vae.py; every flag: --help.
"""
from pipeline.cli import run_main
from pipeline.stages import vae

if __name__ == "__main__":
    run_main(lambda: vae.run(vae.parse_args()))
