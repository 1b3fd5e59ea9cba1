"""What the KL's weight beta trades: short fine-tunes of the shipped 2-D model at other betas (notebook 6).

The objective ``reconstruction + beta * KL`` is the ELBO only at beta = 1. Below 1 the model may
spend more nats on its code (the *rate*, the KL) to reconstruct better (the *distortion*, the
reconstruction term); above 1 it saves on the code and reconstructs worse, and far above 1 the
code carries nothing at all: posterior collapse. ``from_shipped`` makes a model for one setting and
``fine_tune`` trains it; the sweep over
``SWEEP_BETAS`` is run by ``scripts/beta_sweep.py`` and shipped as ``resources/beta_sweep.json``
(numbers) and ``resources/beta_sweep.npz`` (each model's manifold), because it takes longer than
a notebook should. ``load_sweep`` reads both.
"""

import json
import math
from importlib import resources
from pathlib import Path

import numpy as np

from vae_helpers._backend import BACKEND, keras
from vae_helpers.config import check_count
from vae_helpers.data import check_images
from vae_helpers.models import build_vae
from vae_helpers.optimizers import Adam
from vae_helpers.pretrained import load_pretrained
from vae_helpers.training import EpochBatches, EpochDataset, TrainingDiverged, start_warmup

#: The betas of the shipped sweep: from 0.1 to collapse, with the book's implicit 0.784 / 2 and the later editions' 1 / 2.
SWEEP_BETAS = (0.1, 0.25, 0.392, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
#: The 1st edition's KL weight relative to the summed ELBO at latent_dim = 2 (784 * 5e-4 * 2 / 2 / 2: 0.784 / d)
BOOK_BETA = 0.784 / 2
#: The 2nd and 3rd editions' KL weight at latent_dim = 2 (their KL is a mean over the d dimensions: 1 / d)
LATER_EDITIONS_BETA = 1 / 2
FINE_TUNE_LEARNING_RATE = 2e-3


def _resource(name):
    return Path(str(resources.files("vae_helpers") / "resources" / name))


def _check_beta(beta, name="beta"):
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < math.inf:
        raise ValueError(f"{name} must be a number, 0 or more, got {beta!r}")
    return float(beta)


def from_shipped(beta, kl_penalty=None, learning_rate=FINE_TUNE_LEARNING_RATE, seed=0):
    """A copy of the shipped 2-D VAE whose objective weighs the KL by ``beta``, compiled with Adam, ready for ``fine_tune``.

    ``kl_penalty`` replaces the batch's mean KL in the objective (free bits: see ``losses.VAELoss``).
    A ``widgets.LiveTraining`` view made for this model can then watch its training.
    """
    beta = _check_beta(beta)
    shipped = load_pretrained(2)
    vae = build_vae(2, seed=seed, compile=False, kl_penalty=kl_penalty)
    vae.set_weights(shipped.get_weights())
    vae.compile(Adam(learning_rate))
    vae.vae_loss.kl_weight.assign(beta)
    return vae


def fine_tune(vae, x, steps=200, batch_size=128, seed=0, warmup_steps=0, callbacks=(), verbose=0):
    """Train ``vae`` (from ``from_shipped``) for ``steps`` steps at its beta; return the Keras history (a dict).

    The batches are ``steps * batch_size`` digits of ``x`` chosen and shuffled by ``seed`` (fed as uint8 codes,
    as ``training.train_vae`` feeds them).
    ``warmup_steps`` raise the KL's weight from near 0 to the model's beta over the first steps (a
    KL warm-up). The model keeps its weight beta afterwards, so ``vae.evaluate`` gives this run's
    objective. ``TrainingDiverged`` if the loss became NaN or infinite.
    """
    steps, batch_size = check_count(steps, "steps"), check_count(batch_size, "batch_size")
    warmup_steps = check_count(warmup_steps, "warmup_steps", minimum=0)
    if not hasattr(vae, "vae_loss") or getattr(vae, "optimizer", None) is None:
        raise ValueError("vae must be a compiled models.VAE: make it with beta.from_shipped(beta)")
    x = check_images(x, "x", vae.image_shape)
    if steps * batch_size > len(x):
        raise ValueError(f"{steps} steps of {batch_size} digits need {steps * batch_size:,} digits; x has {len(x):,}. "
                         "Use fewer steps or a smaller batch_size")
    beta = float(keras.ops.convert_to_numpy(vae.vae_loss.kl_weight))
    start_warmup(vae, warmup_steps, target=beta).set_epoch(0, steps, vae.vae_loss.kl_weight)
    picked = np.sort(np.random.default_rng(seed).permutation(len(x))[:steps * batch_size])
    if BACKEND == "tensorflow":
        batches = EpochDataset(x[picked], batch_size, seed)  # uint8 codes in TensorFlow: a quarter of float32's memory
        batches.epoch, data, steps_per_epoch = 0, batches.dataset, None
    else:
        data, steps_per_epoch = EpochBatches(x[picked], batch_size, seed), steps  # endless: fit counts the steps
    try:
        history = vae.fit(data, epochs=1, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=verbose,
                          callbacks=list(callbacks)).history
    finally:
        start_warmup(vae, 0)
    vae.vae_loss.kl_weight.assign(beta)
    if not np.all(np.isfinite(history["loss"])):
        raise TrainingDiverged(f"the loss became {history['loss'][-1]} at beta={beta:g}: lower the learning rate")
    return history


def load_sweep():
    """The shipped sweep: a dict with its ``runs`` (one per beta: rate, distortion, KL per dimension, active
    units...), how it was made (``command``, ``settings``) and ``manifolds`` {(beta, variant): (n, n, 28, 28)
    floats}; ``variant`` is "plain", or "kl_warmup" and "free_bits" for the two extra runs at the largest beta."""
    record = json.loads(_resource("beta_sweep.json").read_text())
    with np.load(_resource("beta_sweep.npz")) as grids:
        record["manifolds"] = {(run["beta"], run["variant"]): grids[run["key"]].astype(np.float32) / 255.0
                               for run in record["runs"]}
    return record
