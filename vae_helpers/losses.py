"""The two terms of the VAE objective, and the custom loss layer that adds them to a model.

All quantities are in nats per image. The reconstruction term is the Bernoulli negative
log-likelihood (binary cross-entropy) summed over pixels; the KL term is the closed form for a
diagonal Gaussian posterior against the standard normal prior:

    KL(q(z|x) || N(0, I)) = 1/2 * sum_j (exp(log_var_j) + mean_j**2 - 1 - log_var_j)

Their sum is the negative ELBO, an upper bound on -log p(x).

Two presets say how the model is trained:

* ``"elbo"`` (default): minimise the negative ELBO exactly (beta = 1), with the standard
  reparameterization ``z = mean + exp(0.5 * log_var) * eps``.
* ``"book"``: the 1st edition's recipe: per-pixel *mean* cross-entropy plus
  ``-5e-4 * mean(1 + log_var - mean**2 - exp(log_var))``, sampling ``z = mean + exp(log_var) * eps``.
  Relative to the summed ELBO this weights the KL by 784 * 1e-3 / latent_dim (0.39 at the book's
  latent_dim = 2), and its ``log_var`` is really a log *standard deviation*.
"""

import numpy as np

from vae_helpers._backend import keras
from vae_helpers.config import PRESETS, check_convention, get_preset  # noqa: F401  (re-exported)

ops = keras.ops
EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logs
BOOK_KL_WEIGHT = 5e-4


def posterior_std(z_log_var, convention="standard"):
    """Standard deviation of q(z|x) implied by the encoder's ``z_log_var`` output."""
    check_convention(convention)
    return ops.exp(z_log_var) if convention == "book" else ops.exp(0.5 * z_log_var)


def posterior_log_var(z_log_var, convention="standard"):
    """True log-variance of q(z|x): ``z_log_var`` itself, or twice it under the book's sampling."""
    check_convention(convention)
    return 2.0 * z_log_var if convention == "book" else z_log_var


def _flatten(x):
    return ops.reshape(x, (ops.shape(x)[0], -1))


def pixel_cross_entropy(x, x_decoded):
    """Binary cross-entropy of every pixel, shape (batch, pixels), in nats."""
    p = ops.clip(_flatten(x_decoded), EPSILON, 1.0 - EPSILON)
    x = ops.cast(_flatten(x), p.dtype)
    return -(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p))


def reconstruction_loss(x, x_decoded):
    """-log p(x|z) under independent Bernoulli pixels: BCE summed over pixels, per example."""
    return ops.sum(pixel_cross_entropy(x, x_decoded), axis=-1)


def _as_float(x, name):
    """``x`` as floats: whole numbers and booleans are converted to ``keras.config.floatx()``, anything else is refused."""
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    try:
        dtype = keras.backend.standardize_dtype(x.dtype)
    except ValueError:  # strings, objects
        dtype = str(x.dtype)
    if "float" in dtype:
        return x
    if dtype == "bool" or "int" in dtype:
        return ops.cast(x, keras.config.floatx())
    raise ValueError(f"{name} must hold numbers, got dtype {dtype}")


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) in closed form, summed over latent dims, per example.

    Arrays of whole numbers are converted to floats (``keras.config.floatx()``) first.
    """
    mean_shape, log_var_shape = (tuple(getattr(t, "shape", None) or np.shape(t)) for t in (z_mean, z_log_var))
    if mean_shape != log_var_shape:
        raise ValueError(f"z_mean and z_log_var must have the same shape, got {mean_shape} and {log_var_shape}")
    z_mean, z_log_var = (ops.convert_to_tensor(_as_float(t, name)) for t, name in ((z_mean, "z_mean"),
                                                                                 (z_log_var, "z_log_var")))
    return 0.5 * ops.sum(ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var, axis=-1)


def book_kl_term(z_mean, z_log_var):
    """The 1st edition's KL part, per example: ``-5e-4 * mean(1 + z_log_var - z_mean**2 - exp(z_log_var))``."""
    z_mean, z_log_var = ops.convert_to_tensor(z_mean), ops.convert_to_tensor(z_log_var)
    return -BOOK_KL_WEIGHT * ops.mean(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


def book_terms(x, x_decoded, z_mean, z_log_var):
    """The 1st edition's per-example objective in two parts: mean-over-pixels BCE, and its 5e-4-weighted KL mean."""
    return ops.mean(pixel_cross_entropy(x, x_decoded), axis=-1), book_kl_term(z_mean, z_log_var)


def book_loss(x, x_decoded, z_mean, z_log_var):
    """The 1st edition's per-example objective: mean-over-pixels BCE plus its 5e-4-weighted KL mean."""
    xent, kl = book_terms(x, x_decoded, z_mean, z_log_var)
    return xent + kl


def elbo_loss(x, x_decoded, z_mean, z_log_var):
    """Negative ELBO per example (single z sample): reconstruction plus KL, in nats."""
    return reconstruction_loss(x, x_decoded) + kl_divergence(z_mean, z_log_var)


def free_bits_kl(z_mean, z_log_var, free_bits):
    """The batch's KL with a floor of ``free_bits`` nats per latent dimension (Kingma et al., 2016), one number.

    Each dimension's KL is averaged over the batch, then raised to at least ``free_bits``: below the
    floor a dimension costs a constant, so nothing pushes it further towards the prior, and a code
    cannot collapse to less than ``free_bits`` nats per dimension. Notebook 6's learners write it.
    """
    per_dimension = 0.5 * (ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var)
    return ops.sum(ops.maximum(free_bits, ops.mean(per_dimension, axis=0)))


class KLWarmupSchedule:
    """The KL weight of each training step, computed inside the compiled step from the weight of the step before.

    A warm-up over ``steps`` training steps weighs step ``s`` of the run (counted from its first step)
    by ``target * min(1, (s + 1) / steps)``. The loss layer's ``kl_weight`` holds the weight of the
    step just taken and is the only state: the number of steps taken is ``round(kl_weight * steps /
    target)``, so the next weight follows from it. The schedule needs no counter of its own and no
    access to the optimizer's, which a layer's ``call`` does not have on JAX. At the start of each
    epoch ``set_epoch`` sets ``kl_weight`` to the weight of the step before the epoch's first, so a run
    resumed at any epoch goes on with exactly the same weights. ``steps`` and ``target`` are constants
    of the compiled step: ``start`` says whether they changed, and the step must then be traced
    again. With ``steps`` at 0 the loss layer's ``kl_weight`` is left as it is.
    """

    def __init__(self):
        self.steps, self.target = 0.0, 1.0

    def start(self, steps, target=1.0):
        """Warm up over ``steps`` training steps (0: no warm-up) to a KL weight of ``target`` (beta; 1 by default).

        Returns whether the schedule changed (a training step traced before must be traced again).
        """
        steps, target = float(steps), float(target)
        if steps and not target > 0.0:
            raise ValueError(f"a KL warm-up needs a target weight above 0, got {target}")
        changed = (steps, target) != (self.steps, self.target)
        self.steps, self.target = steps, target
        return changed

    def set_epoch(self, epoch, steps_per_epoch, kl_weight):
        """Before epoch ``epoch``: set ``kl_weight`` to the weight of the step before the epoch's first."""
        if self.steps:
            kl_weight.assign(self.target * min(1.0, epoch * steps_per_epoch / self.steps))

    def __call__(self, kl_weight):
        """The weight for the step about to be taken, from ``kl_weight``, the weight of the step before."""
        taken = ops.round(kl_weight * (self.steps / self.target))
        return ops.cast(self.target * ops.minimum(1.0, (taken + 1.0) / self.steps), kl_weight.dtype)


@keras.saving.register_keras_serializable(package="vae_helpers")
class VAELoss(keras.layers.Layer):
    """The custom loss layer: adds the VAE objective with ``add_loss`` and passes the images on.

    Its ``kl_weight`` (1 by default) multiplies the KL part of the objective; KL warm-up raises it
    from 0 to 1 during the first epochs (``training.train_vae(kl_warmup=...)``), and notebook 6 sets
    it to beta. ``kl_penalty``, a function ``(z_mean, z_log_var) -> one number for the batch``,
    replaces the batch's mean KL in the objective (free bits in notebook 6); it is code, so it is not
    saved with the model's config: a reloaded model trains with the plain KL unless it is given again.

    Each call also leaves its per-image terms in ``terms``: ``reconstruction_loss`` and ``kl_loss``
    in nats (the KL of the posterior the sampler really uses, so both presets report comparable,
    honest numbers). The model's ``compute_loss`` reads them into its trackers: a metric updated
    inside a layer's ``call`` fails on the JAX backend, where ``call`` runs without state.
    """

    def __init__(self, preset="elbo", kl_penalty=None, **kwargs):
        super().__init__(**kwargs)
        self.preset = get_preset(preset)
        if kl_penalty is not None and (not callable(kl_penalty) or self.preset.name != "elbo"):
            raise ValueError("kl_penalty must be a function (z_mean, z_log_var) -> one number, with the 'elbo' preset; "
                             f"got {kl_penalty!r} with the {self.preset.name!r} preset")
        self.kl_penalty = kl_penalty
        self.kl_weight = self.add_weight(shape=(), initializer="ones", trainable=False, name="kl_weight")
        self.terms = None

    def call(self, x, x_decoded, z_mean, z_log_var):
        # Each term is computed once and serves both the objective and the model's trackers.
        pixels = pixel_cross_entropy(x, x_decoded)
        reconstruction = ops.sum(pixels, axis=-1)
        kl = kl_divergence(z_mean, posterior_log_var(z_log_var, self.preset.sampling))
        if self.preset.name == "book":
            fit_term, kl_term = ops.mean(pixels, axis=-1), book_kl_term(z_mean, z_log_var)
        else:
            fit_term, kl_term = reconstruction, kl
        if self.kl_penalty is None:
            self.add_loss(ops.mean(fit_term + self.kl_weight * kl_term))
        else:  # a batch-level penalty in place of the KL (free bits, say); the trackers still report the KL itself
            self.add_loss(ops.mean(fit_term) + self.kl_weight * self.kl_penalty(z_mean, z_log_var))
        self.terms = {"reconstruction_loss": reconstruction, "kl_loss": kl}
        return x_decoded

    def get_config(self):
        return {**super().get_config(), "preset": self.preset.name}
