"""Stage 02: train V, the convolutional VAE, on frames streamed from data/<env>/.

    python 02_train_vae.py --env carracing --epochs 1 --batch 100

Checkpoints (with the optimiser) go to <run>/vae.pt at every epoch end and every --checkpoint-minutes;
re-running the same command resumes. Writes metrics/vae.csv, plots/vae_loss.png and a reconstruction
grid per epoch (plots/vae_recon_epoch_NNN.png).
"""
from pipeline.cli import run_main
from pipeline.stages import vae

if __name__ == "__main__":
    run_main(lambda: vae.run(vae.parse_args()))
