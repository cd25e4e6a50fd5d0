"""Stage 03: encode every frame once with V, then train M (the MDN-RNN) on the latent sequences.

    python 03_train_mdnrnn.py --env carracing --core lstm --epochs 20 --seq-len 999

Writes <run>/latents.h5 (mu, logvar per frame; re-encoded only when V or the data changed),
<run>/mdnrnn.pt (checkpoint with optimiser every epoch; re-running resumes), metrics/mdnrnn.csv (the
losses and whatever the core reports, train and validation), plots/mdnrnn_loss.png and, for vsg and svsg,
plots/mdnrnn_update_fraction.png.
"""
from pipeline.cli import run_main
from pipeline.stages import mdnrnn

if __name__ == "__main__":
    run_main(lambda: mdnrnn.run(mdnrnn.parse_args()))
