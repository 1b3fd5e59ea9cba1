"""Weights shipped with the package, so every notebook is useful without a long training run.

Two models of the book's network, trained with ``python -m vae_helpers train`` on full MNIST:
a 2-D one (the latent manifold) and a 16-D one (latent arithmetic needs room); and a 2-D
conditional VAE (``vae_helpers.conditional``, ``conditional=True``), trained with
``scripts/train_conditional.py``. The exact command, settings, per-epoch history and test scores of
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
from vae_helpers.models import WeightsError, build_vae, load_vae_weights

SHIPPED = {2: "vae_mnist_z2", 16: "vae_mnist_z16"}
#: Conditional VAEs (``vae_helpers.conditional``) by latent_dim: ``load_pretrained(2, conditional=True)``.
SHIPPED_CONDITIONAL = {2: "cvae_mnist_z2"}


def _resource(name):
    return Path(str(resources.files("vae_helpers") / "resources" / "pretrained" / name))


def _name(latent_dim, conditional=False):
    if not isinstance(conditional, bool):
        raise ValueError(f"conditional must be True or False, got {conditional!r}")
    shipped, kind = (SHIPPED_CONDITIONAL, "conditional model") if conditional else (SHIPPED, "model")
    if isinstance(latent_dim, bool) or latent_dim not in shipped:
        raise WeightsError(f"no shipped {kind} with latent_dim={latent_dim!r}; choose one of {sorted(shipped)}")
    return shipped[latent_dim]


def _restore_hint(path):
    return (f"restore it: in a clone of the repository 'git checkout -- vae_helpers/resources/pretrained/{path.name}', "
            "otherwise reinstall the package ('pip install --force-reinstall vae-helpers')")


def pretrained_record(latent_dim=2, conditional=False):
    """The ``run.json`` of a shipped model: command, settings, per-epoch history, test scores, weights SHA-256.

    ``conditional=True`` gives the conditional VAE's record (its scores include the pixel judge's accuracy).
    """
    path = _resource(f"{_name(latent_dim, conditional)}.json")
    try:
        record = json.loads(path.read_text())
        record["settings"]["latent_dim"], record["weights_sha256"]
        if conditional:
            record["settings"]["n_classes"]
    except OSError as err:
        raise WeightsError(f"{read_error(path, err, 'record')}; {_restore_hint(path)}") from err
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"{path}: the record of the shipped model is damaged ({type(err).__name__}: {err}); "
                           f"{_restore_hint(path)}") from err
    return record


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
