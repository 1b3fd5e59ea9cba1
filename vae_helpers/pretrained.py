"""Weights shipped with the package, so every notebook is useful without a long training run.

They were made with ``python -m vae_helpers train`` on the bundled MNIST sample; the exact
command, settings and scores are in ``resources/pretrained/vae_mnist_sample.json`` (see
``pretrained_record``).
"""

import json
from importlib import resources
from pathlib import Path

from vae_helpers.models import build_vae, load_vae_weights

PRETRAINED_NAME = "vae_mnist_sample"


def _resource(name):
    return Path(str(resources.files("vae_helpers") / "resources" / "pretrained" / name))


def pretrained_record():
    """The ``run.json`` of the shipped weights: command, settings, per-epoch history, test ELBO."""
    return json.loads(_resource(f"{PRETRAINED_NAME}.json").read_text())


def load_pretrained():
    """A compiled 2-D VAE (the book's network, ``loss="elbo"``) with the shipped trained weights."""
    settings = pretrained_record()["settings"]
    vae = build_vae(settings["latent_dim"], settings["loss"], seed=settings["seed"])
    return load_vae_weights(vae, _resource(f"{PRETRAINED_NAME}.weights.h5"))
