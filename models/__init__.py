"""V, M and C as torch modules, and the sampler that draws M's mixture as torch would (``mixture_sampler``): no
file, env or device policy in here."""
from models.mdnrnn import MDNRNN, MDNRNNConfig
from models.vae import ConvVAE, VAEConfig

__all__ = ["ConvVAE", "MDNRNN", "MDNRNNConfig", "VAEConfig"]
