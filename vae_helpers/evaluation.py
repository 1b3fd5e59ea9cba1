"""Honest numbers for a trained VAE: the ELBO and -log p(x) in nats, and k-NN accuracy on codes.

Both likelihood estimates use the posterior the model's sampler really draws from, so a VAE
trained with the book's preset (sigma = exp(z_log_var)) is scored correctly too.

``likelihood`` says how a decoded image scores the pixels it is compared with:

* ``"bernoulli"`` (default, what the models are trained with): each pixel value x in [0, 1] is
  scored with x log p + (1 - x) log(1 - p). On black-and-white (binarized) digits that is a true
  log-probability; on greyscale digits it is not, since x is not 0 or 1.
* ``"continuous_bernoulli"``: the same plus log C(p) per pixel, the normalizing constant that makes
  C(p) p^x (1 - p)^(1 - x) a proper density on [0, 1] (Loaiza-Ganem and Cunningham, 2019). Densities
  can exceed 1, so these log-likelihoods are larger, and often positive.
"""

import numpy as np
from scipy.special import logsumexp

from vae_helpers._backend import keras
from vae_helpers.config import SCORE_BYTES_PER_PIXEL, check_count, check_memory, memory_limit_bytes
from vae_helpers.data import check_images
from vae_helpers.latent import decode, encode
from vae_helpers.losses import kl_divergence, posterior_log_var, reconstruction_loss

LOG_2PI = np.log(2.0 * np.pi)
#: Burda et al. (2016): latent dimension j is active when the variance over digits of its posterior mean exceeds this
ACTIVE_THRESHOLD = 0.01
LIKELIHOODS = ("bernoulli", "continuous_bernoulli")
#: below this distance from 1/2, log C(p) uses its Taylor series (the closed form divides 0 by 0 at p = 1/2)
_CB_TAYLOR = 1e-3


def _check_likelihood(likelihood):
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def continuous_bernoulli_log_norm(p):
    """log C(p) for pixel probabilities ``p`` (any shape), where C(p) = 2 atanh(1 - 2p) / (1 - 2p), C(1/2) = 2.

    C(p) is what makes C(p) p^x (1 - p)^(1 - x) integrate to 1 over x in [0, 1]. It is at least 2
    (log 2 = 0.69 nats per pixel) and grows towards p = 0 or 1; ``p`` is clipped to [1e-7, 1 - 1e-7],
    as the reconstruction term clips it, so log C stays below 2.8.
    """
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1.0 - 1e-7)
    u = 1.0 - 2.0 * p
    near_half = np.abs(u) < _CB_TAYLOR
    safe = np.where(near_half, 0.5, u)
    exact = np.log(2.0 * np.arctanh(safe) / safe)
    # atanh(u)/u = 1 + u^2/3 + u^4/5 + ...: log C = log 2 + u^2/3 + (1/5 - 1/18) u^4 near p = 1/2
    series = np.log(2.0) + u ** 2 / 3.0 + (1.0 / 5.0 - 1.0 / 18.0) * u ** 4
    return np.where(near_half, series, exact)


def _sampling_convention(vae):
    """The sampler's convention: a ``models.VAE`` knows its preset; any other model with an encoder and a
    decoder (a learner's own ``train_step`` model, say) is taken to sample the standard way."""
    preset = getattr(vae, "preset", None)
    return preset.sampling if preset is not None else "standard"


def _image_shape(vae):
    shape = getattr(vae, "image_shape", None)
    return tuple(shape) if shape is not None else tuple(vae.encoder.input_shape[1:])


def _posterior(vae, x):
    """Mean and true log-variance of q(z|x) for each image, float64."""
    z_mean, z_log_var = encode(vae, x, return_log_var=True)
    log_var = keras.ops.convert_to_numpy(posterior_log_var(z_log_var, _sampling_convention(vae)))
    return z_mean.astype(np.float64), log_var.astype(np.float64)


def _log_likelihood(vae, x, z, likelihood="bernoulli"):
    """log p(x|z) under the decoder's pixels (see ``likelihood`` above); x and z have matching first axes."""
    probs = decode(vae, z.astype(np.float32))
    log_px = -keras.ops.convert_to_numpy(reconstruction_loss(x, probs)).astype(np.float64)
    if likelihood == "continuous_bernoulli":
        log_px += continuous_bernoulli_log_norm(probs).reshape(len(probs), -1).sum(axis=1)
    return log_px


def _sampled_batches(vae, x, n_samples, batch_size, seed, likelihood="bernoulli"):
    """For each batch of ``x``: its posterior (mean, log-variance), the noise ``eps`` (n_samples, batch, d),
    the codes ``z = mean + sigma * eps`` and log p(x|z) for every code (n_samples, batch).

    A batch decodes ``n_samples * batch_size`` codes at once, so the scores' default batch sizes keep
    that near 500: at 2,000 (the ELBO's former 250 images x 8 draws) a kernel peaked 175 MiB higher, at
    5,000 (IWAE's 50 x 100) 227 MiB higher, for the same time (BENCHMARKS.md).
    """
    x = check_images(x, "x", _image_shape(vae))
    batch_size = check_count(batch_size, "batch_size")
    _check_likelihood(likelihood)
    per_batch = n_samples * min(batch_size, len(x))
    per_sample = SCORE_BYTES_PER_PIXEL * int(np.prod(x.shape[1:]))
    fits = max(1, memory_limit_bytes() // (per_sample * n_samples))
    check_memory(per_sample * per_batch,
                 f"{n_samples} samples for each of {min(batch_size, len(x))} images at a time ({per_batch:,} decoded)",
                 f"lower batch_size to {fits} or fewer, or use fewer samples")
    rng = np.random.default_rng(seed)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        mean, log_var = _posterior(vae, xb)
        eps = rng.standard_normal((n_samples, *mean.shape))
        z = mean + np.exp(0.5 * log_var) * eps
        log_px = _log_likelihood(vae, np.tile(xb, (n_samples, 1, 1, 1)), z.reshape(-1, mean.shape[1]), likelihood)
        yield mean, log_var, eps, z, log_px.reshape(n_samples, -1)


def elbo(vae, x, n_samples=8, batch_size=50, seed=0, likelihood="bernoulli"):
    """Mean evidence lower bound in nats per image (higher is better; -165 beats -170).

    The KL term is exact (closed form); the reconstruction term averages ``n_samples`` draws of z
    per image, scored under ``likelihood`` (see the module's docstring).
    """
    n_samples = check_count(n_samples, "n_samples")
    total = sum(float(np.sum(log_px.mean(axis=0) - keras.ops.convert_to_numpy(kl_divergence(mean, log_var))))
                for mean, log_var, _, _, log_px in _sampled_batches(vae, x, n_samples, batch_size, seed, likelihood))
    return total / len(x)


def rate_distortion(vae, x, n_samples=8, batch_size=50, seed=0):
    """The two terms of the ELBO on ``x``, in nats per image, and how the code is used; a dict.

    ``rate``: the mean KL (closed form), what the codes cost; ``distortion``: the mean of
    -log p(x|z) over ``n_samples`` draws of z, what is lost in reconstruction; ``elbo`` is
    -(rate + distortion). ``kl_per_dim`` (latent_dim,) splits the rate by dimension, and
    ``active_units`` counts the dimensions whose posterior mean varies across digits by more than
    ``ACTIVE_THRESHOLD`` (a collapsed dimension has a KL near 0 and does not vary).
    """
    n_samples = check_count(n_samples, "n_samples")
    kl_sum, distortion_sum, means = 0.0, 0.0, []
    for mean, log_var, _, _, log_px in _sampled_batches(vae, x, n_samples, batch_size, seed):
        kl_sum = kl_sum + np.sum(0.5 * (np.exp(log_var) + mean ** 2 - 1.0 - log_var), axis=0)
        distortion_sum -= float(np.sum(log_px.mean(axis=0)))
        means.append(mean)
    n = len(x)
    kl_per_dim = kl_sum / n
    means = np.concatenate(means)
    variances = means.var(axis=0)
    return {"rate": float(kl_per_dim.sum()), "distortion": distortion_sum / n,
            "elbo": -(float(kl_per_dim.sum()) + distortion_sum / n), "kl_per_dim": kl_per_dim,
            "active_units": int(np.sum(variances > ACTIVE_THRESHOLD)), "mean_variances": variances}


def log_weights(vae, x, k=100, batch_size=10, seed=0, likelihood="bernoulli"):
    """The importance log-weights log p(x|z_i) + log p(z_i) - log q(z_i|x), shape (k, n), float64.

    ``z_i`` are ``k`` draws from each image's posterior q(z|x). Their mean over the draws is a one-sample
    ELBO estimate per image; log of the mean of their exponentials is the importance-weighted bound.
    """
    k = check_count(k, "k")
    blocks = []
    for _, log_var, eps, z, log_px in _sampled_batches(vae, x, k, batch_size, seed, likelihood):
        log_prior = -0.5 * np.sum(z ** 2 + LOG_2PI, axis=-1)
        log_q = -0.5 * np.sum(eps ** 2 + LOG_2PI + log_var, axis=-1)
        blocks.append(log_px + log_prior - log_q)
    return np.concatenate(blocks, axis=1)


def importance_weighted_nll(vae, x, k=100, batch_size=10, seed=0, likelihood="bernoulli"):
    """IWAE estimate of -log p(x) in nats per image, with ``k`` importance samples from q(z|x).

    log p(x) ~= logsumexp_i[log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k. It is never
    looser than the ELBO in expectation and tightens as ``k`` grows.
    """
    log_w = log_weights(vae, x, k, batch_size, seed, likelihood)
    return -float(np.mean(logsumexp(log_w, axis=0) - np.log(log_w.shape[0])))


def knn_latent_accuracy(vae, x_train, y_train, x_test, y_test, k=5):
    """Accuracy of a k-nearest-neighbour classifier on the posterior means (how well classes separate).

    Encodes both sets of images, then votes with ``knn_accuracy``.
    """
    if check_count(k, "k") > len(x_train):
        raise ValueError(f"k must be between 1 and the number of training images, got {k}")
    return knn_accuracy(encode(vae, x_train), y_train, encode(vae, x_test), y_test, k=k)


def knn_accuracy(z_train, y_train, z_test, y_test, k=5):
    """Accuracy of a k-nearest-neighbour vote among codes ``z_train`` for the codes ``z_test`` (already encoded).

    Uses a k-d tree (``scipy.spatial.cKDTree``): on full MNIST's 2-D codes it takes a fraction of a
    second and a few MB, where a distance matrix would need gigabytes.
    """
    from scipy.spatial import cKDTree

    z_train, z_test = np.asarray(z_train), np.asarray(z_test)
    if check_count(k, "k") > len(z_train):
        raise ValueError(f"k must be between 1 and the number of training codes, got {k}")
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    for name, z, y in (("train", z_train, y_train), ("test", z_test, y_test)):
        if z.ndim != 2 or z.shape[1] != z_train.shape[1]:
            raise ValueError(f"z_{name} must be codes of shape (n, {z_train.shape[-1]}), got shape {z.shape}")
        if y.shape != (len(z),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise ValueError(f"y_{name} must hold one non-negative integer label per image "
                             f"({len(z)}), got shape {y.shape} and dtype {y.dtype}")
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    _, nearest = cKDTree(z_train).query(z_test, k=k)
    nearest = np.asarray(nearest).reshape(len(z_test), k)
    votes = np.zeros((len(z_test), n_classes), dtype=np.int64)
    np.add.at(votes, (np.arange(len(z_test))[:, None], y_train[nearest]), 1)
    return float(np.mean(votes.argmax(axis=1) == y_test))


def classify_digits(images, x_train, y_train, k=3, batch_size=100):
    """Labels for ``images`` by a k-nearest-neighbour vote on raw pixels among ``x_train`` (a judge of generated digits).

    On MNIST a 3-NN on pixels is right for about 96% of the real test digits; here it says which
    digit a decoded image looks most like. Each batch of ``batch_size`` images holds a few
    (batch_size, len(x_train)) arrays: about 100 MB at 100 images against 60,000 digits.
    """
    k, batch_size = check_count(k, "k"), check_count(batch_size, "batch_size")
    check_memory(3 * 4 * batch_size * len(x_train), f"comparing {batch_size} images at a time with {len(x_train):,} "
                 "training digits", "lower batch_size")
    train = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
    images = np.asarray(images, np.float32).reshape(len(images), -1)
    if images.shape[1] != train.shape[1]:
        raise ValueError(f"images have {images.shape[1]} pixels but the training digits {train.shape[1]}")
    squared = np.sum(train ** 2, axis=1)
    labels = np.asarray(y_train)
    votes = []
    for start in range(0, len(images), batch_size):
        distances = squared - 2.0 * images[start:start + batch_size] @ train.T  # + |image|^2, the same for every row
        nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
        votes.append([np.bincount(labels[row], minlength=10).argmax() for row in nearest])
    return np.concatenate(votes).astype(np.int64)
