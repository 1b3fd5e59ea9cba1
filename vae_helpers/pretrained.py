"""Weights shipped with the package, so every notebook is useful without a long training run.

Two models of the book's network, trained with ``python -m vae_helpers train`` on full MNIST:
a 2-D one (the latent manifold) and a 16-D one (latent arithmetic needs room). The exact command,
settings, per-epoch history and test scores of each are in ``resources/pretrained/<name>.json``
(``pretrained_record``). The files hold no optimizer state: they are for use, not for resuming.
"""

import json
from importlib import resources
from pathlib import Path

from vae_helpers.models import WeightsError, build_vae, load_vae_weights

SHIPPED = {2: "vae_mnist_z2", 16: "vae_mnist_z16"}


def _resource(name):
    return Path(str(resources.files("vae_helpers") / "resources" / "pretrained" / name))


def _name(latent_dim):
    if latent_dim not in SHIPPED:
        raise WeightsError(f"no shipped model with latent_dim={latent_dim!r}; choose one of {sorted(SHIPPED)}")
    return SHIPPED[latent_dim]


def pretrained_record(latent_dim=2):
    """The ``run.json`` of a shipped model: command, settings, per-epoch history, test scores."""
    return json.loads(_resource(f"{_name(latent_dim)}.json").read_text())


def load_pretrained(latent_dim=2):
    """A compiled VAE (the book's network, ``loss="elbo"``) with the shipped weights for ``latent_dim`` (2 or 16)."""
    settings = pretrained_record(latent_dim)["settings"]
    vae = build_vae(settings["latent_dim"], settings["loss"], seed=settings["seed"])
    return load_vae_weights(vae, _resource(f"{_name(latent_dim)}.weights.h5"))
