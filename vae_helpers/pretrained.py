"""Weights shipped with the package, so every notebook is useful without a long training run.

Two models of the book's network, trained with ``python -m vae_helpers train`` on full MNIST:
a 2-D one (the latent manifold) and a 16-D one (latent arithmetic needs room); a 2-D
conditional VAE (``vae_helpers.conditional``, ``conditional=True``), trained with
``scripts/train_conditional.py``; and notebook 1's plain 2-D autoencoder (``load_autoencoder``),
trained by ``scripts/ship_autoencoder.py`` exactly as notebook 1 trains it, so that notebook 4 can
measure its holes beside the VAE's without training it again. The exact command, settings, per-epoch history and test scores of
each are in ``resources/pretrained/<name>.json`` (``pretrained_record``). The files hold no
optimizer state: they are for use, not for resuming.

Each record also holds the SHA-256 of its weights file, checked on every load: a file damaged on
disk or in a copy (even where its values stay plausible numbers) is refused with a ``WeightsError``
that says how to restore it.
"""

import json
from importlib import resources
from pathlib import Path

from vae_helpers.files import read_error, sha256_of
from vae_helpers.models import WeightsError, build_autoencoder, build_vae, load_checked, load_vae_weights

SHIPPED = {2: "vae_mnist_z2", 16: "vae_mnist_z16"}
#: Conditional VAEs (``vae_helpers.conditional``) by latent_dim: ``load_pretrained(2, conditional=True)``.
SHIPPED_CONDITIONAL = {2: "cvae_mnist_z2"}
#: Plain autoencoders (``models.build_autoencoder``) by latent_dim: ``load_autoencoder(2)``.
SHIPPED_AUTOENCODER = {2: "ae_mnist_z2"}


def _resource(name):
    return Path(str(resources.files("vae_helpers") / "resources" / "pretrained" / name))


def _pick(shipped, latent_dim, kind):
    """The file name (without suffix) of the shipped ``kind`` with ``latent_dim``; WeightsError listing the choices."""
    if isinstance(latent_dim, bool) or latent_dim not in shipped:
        raise WeightsError(f"no shipped {kind} with latent_dim={latent_dim!r}; choose one of {sorted(shipped)}")
    return shipped[latent_dim]


def _name(latent_dim, conditional=False):
    if not isinstance(conditional, bool):
        raise ValueError(f"conditional must be True or False, got {conditional!r}")
    if conditional:
        return _pick(SHIPPED_CONDITIONAL, latent_dim, "conditional model")
    return _pick(SHIPPED, latent_dim, "model")


def _restore_hint(path):
    return (f"restore it: in a clone of the repository 'git checkout -- vae_helpers/resources/pretrained/{path.name}', "
            "otherwise reinstall the package ('pip install --force-reinstall vae-helpers')")


def _read_record(name, *required):
    """The record ``<name>.json``, with ``required`` settings present; WeightsError saying how to restore it."""
    path = _resource(f"{name}.json")
    try:
        record = json.loads(path.read_text())
        record["weights_sha256"]
        for key in ("latent_dim", *required):
            record["settings"][key]
    except OSError as err:
        raise WeightsError(f"{read_error(path, err, 'record')}; {_restore_hint(path)}") from err
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"{path}: the record of the shipped model is damaged ({type(err).__name__}: {err}); "
                           f"{_restore_hint(path)}") from err
    return record


def pretrained_record(latent_dim=2, conditional=False):
    """The ``run.json`` of a shipped model: command, settings, per-epoch history, test scores, weights SHA-256.

    ``conditional=True`` gives the conditional VAE's record (its scores include the pixel judge's accuracy).
    """
    return _read_record(_name(latent_dim, conditional), *(("n_classes",) if conditional else ()))


def verify_shipped_file(path, sha256):
    """WeightsError unless the file at ``path`` has the SHA-256 ``sha256`` (what its record says)."""
    try:
        found = sha256_of(path)
    except OSError as err:
        raise WeightsError(f"{read_error(path, err, 'weights file')}; {_restore_hint(path)}") from err
    if found != sha256:
        raise WeightsError(f"{path}: the shipped weights file is damaged: its SHA-256 is {found[:16]}..., "
                           f"its record says {sha256[:16]}...; {_restore_hint(path)}")


def load_pretrained(latent_dim=2, conditional=False):
    """A compiled VAE (the book's network, ``loss="elbo"``) with the shipped weights for ``latent_dim`` (2 or 16).

    ``conditional=True`` gives the shipped ``conditional.ConditionalVAE`` instead (latent_dim 2 only).
    The file's SHA-256 is checked against its record first, so a damaged copy is refused, never loaded.
    """
    record = pretrained_record(latent_dim, conditional)
    path = _resource(f"{_name(latent_dim, conditional)}.weights.h5")
    verify_shipped_file(path, record["weights_sha256"])
    settings = record["settings"]
    if conditional:
        from vae_helpers.conditional import build_conditional_vae  # only when asked: a plain VAE needs none of it

        vae = build_conditional_vae(settings["latent_dim"], settings["n_classes"], seed=settings["seed"])
    else:
        vae = build_vae(settings["latent_dim"], settings["loss"], seed=settings["seed"])
    return load_vae_weights(vae, path)


def autoencoder_record(latent_dim=2):
    """The record of the shipped plain autoencoder: how it was trained, its test loss, its weights' SHA-256."""
    return _read_record(_pick(SHIPPED_AUTOENCODER, latent_dim, "autoencoder"))


def load_autoencoder(latent_dim=2):
    """Notebook 1's plain autoencoder, trained: ``(autoencoder, encoder, decoder)``, as ``models.build_autoencoder`` gives.

    Its record (``autoencoder_record``) says how: one epoch of batch 64 on MNIST's first 30,000
    training digits, with seed 0. The file's SHA-256 is checked against the record first.
    """
    record = autoencoder_record(latent_dim)
    path = _resource(f"{SHIPPED_AUTOENCODER[latent_dim]}.weights.h5")
    verify_shipped_file(path, record["weights_sha256"])
    autoencoder, encoder, decoder = build_autoencoder(latent_dim)
    load_checked(autoencoder, path, f"the plain autoencoder (latent_dim={latent_dim})")
    return autoencoder, encoder, decoder
