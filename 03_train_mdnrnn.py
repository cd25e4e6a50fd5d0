"""Stage 03: encode every frame once with V, then train M (the MDN-RNN) on the latent sequences.

    python 03_train_mdnrnn.py --env carracing --core lstm --epochs 20 --seq-len 999

What it does and writes: pipeline/stages/stage03_mdnrnn.py; every flag: --help.
"""
from pipeline.contract.cli import run_main
from pipeline.stages import stage03_mdnrnn

if __name__ == "__main__":
    run_main(lambda: stage03_mdnrnn.run(stage03_mdnrnn.parse_args()))
