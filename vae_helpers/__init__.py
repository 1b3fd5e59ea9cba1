"""vae_helpers: the shared, tested code behind the variational autoencoder notebooks.

Modules, one concept each: ``data`` (MNIST loaders), ``models`` (encoder, decoder, sampling, VAE),
``losses`` (reconstruction, KL, the custom loss layer), ``training`` (fitting with checkpoints),
``evaluation`` (ELBO, importance-weighted NLL, k-NN accuracy), ``plotting`` (manifold and figures),
``pretrained`` (shipped weights), ``latent`` and ``widgets`` (latent-space interaction), ``checks``
(self-checks for the write-it-yourself cells), ``quiz``, and ``files`` (atomic writes and checksums).

Importing the package loads nothing heavy. Keras and its backend (TensorFlow unless ``KERAS_BACKEND``
says ``jax`` or ``torch``) are loaded, without TensorFlow's C++ start-up log lines, by the first
module that needs them, or by ``from vae_helpers import keras``; ``BACKEND`` names the backend and
``tf`` is TensorFlow when it is the backend (``None`` otherwise).
"""

import importlib

__version__ = "1.0.0"


def __getattr__(name):
    if name in ("keras", "tf", "set_seed", "BACKEND"):
        importlib.import_module("vae_helpers.models")  # also registers the custom layers, so .keras files load
        return getattr(importlib.import_module("vae_helpers._backend"), name)
    if name == "quick_mode":
        return importlib.import_module("vae_helpers.config").quick_mode
    raise AttributeError(f"module 'vae_helpers' has no attribute {name!r}")
