"""V, M and C as pure torch modules: no file, env or device policy in here."""
from models.controller import LinearController
from models.mdnrnn import MDNRNN, MDNRNNConfig
from models.vae import ConvVAE, VAEConfig

__all__ = ["ConvVAE", "LinearController", "MDNRNN", "MDNRNNConfig", "VAEConfig"]
