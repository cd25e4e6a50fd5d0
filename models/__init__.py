"""V, M and C as pure torch modules: no file, env or device policy in here."""
from models.mdnrnn import MDNRNN, MDNRNNConfig
from models.vae import ConvVAE, VAEConfig

__all__ = ["ConvVAE", "MDNRNN", "MDNRNNConfig", "VAEConfig"]
