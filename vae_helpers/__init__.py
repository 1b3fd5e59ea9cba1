"""vae_helpers: the shared, tested code behind the variational autoencoder notebooks.

Modules, one concept each: ``data`` (MNIST loaders), ``models`` (encoder, decoder, sampling, VAE),
``losses`` (reconstruction, KL, the custom loss layer), ``training`` (fitting with checkpoints),
``evaluation`` (ELBO, importance-weighted NLL, k-NN accuracy), ``plotting`` (manifold and figures),
``pretrained`` (shipped weights), ``latent`` and ``widgets`` (latent-space interaction).
"""

from vae_helpers._tf import keras, tf  # noqa: F401  (imported first: keeps TensorFlow quiet)
from vae_helpers.config import quick_mode, set_seed  # noqa: F401
from vae_helpers import models  # noqa: F401  (registers the custom layers for loading .keras files)

__version__ = "1.0.0"
