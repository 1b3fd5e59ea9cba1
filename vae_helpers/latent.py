"""Moving around the latent space: encode, decode, interpolate and edit codes.

These functions take numpy arrays and return numpy arrays, so notebooks, widgets and tests can use
them without thinking about tensors. ``decode`` skips ``Model.predict`` (which sets up a data
pipeline on every call) and calls a compiled function directly (``_backend.inference_function``), so
a widget update stays fast.

The code arithmetic (``lerp``, ``slerp`` and its variant ``slerp_linear_norm``, ``concept_vector``, ``apply_concept`` and friends) is
pure numpy and vectorized: pass one code ``(latent_dim,)`` or a batch ``(n, latent_dim)``, and a
scalar or a 1-D array of fractions or strengths; a 1-D array adds a leading axis to the result.
``ink_amount`` and ``slant`` measure images, so attribute vectors can be found from the data.
"""

import weakref

import numpy as np

from vae_helpers._backend import inference_function
from vae_helpers.config import check_count, check_memory
from vae_helpers.data import check_images

_COMPILED = weakref.WeakKeyDictionary()  # network -> its compiled inference function
#: Decoder activations per image of a batch (the transposed convolution's 28x28x32 map and its neighbours)
DECODE_BATCH_BYTES_PER_IMAGE = 150_000


def _single_input(network, model):
    """``network`` itself; TypeError if it takes more than one input (a conditional VAE's also takes the label)."""
    if len(getattr(network, "inputs", None) or [None]) > 1:
        raise TypeError(f"{type(model).__name__} takes a label besides its images or codes: use "
                        "vae_helpers.conditional (conditional.decode(cvae, z, labels), conditional.encode(cvae, x, "
                        "labels), conditional.elbo(...)) instead of latent and evaluation")
    return network


def _decoder_of(model):
    return _single_input(getattr(model, "decoder", model), model)


def _encoder_of(model):
    return _single_input(getattr(model, "encoder", model), model)


def latent_dim_of(model):
    """Size of the latent code a VAE or decoder works with."""
    return int(_decoder_of(model).input_shape[-1])


def check_codes(z, latent_dim, name="z"):
    """Validate latent codes: shape (latent_dim,) or (n, latent_dim), finite. Returns (2-D float32, was_single)."""
    z = np.asarray(z, dtype=np.float32)
    single = z.ndim == 1
    if single:
        z = z[np.newaxis]
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"{name} must have shape ({latent_dim},) or (n, {latent_dim}) for this "
                         f"{latent_dim}-dimensional latent space, got {np.shape(z) if not single else z.shape[1:]}")
    if len(z) == 0:
        raise ValueError(f"{name} is empty: pass at least one code")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return z, single


def _compiled(network):
    fn = _COMPILED.get(network)
    if fn is None:
        fn = _COMPILED[network] = inference_function(network)
    return fn


def decode(model, z, batch_size=1024):
    """Decode one code (latent_dim,) or a batch (n, latent_dim) into numpy images.

    Returns shape (28, 28, 1) for one code and (n, 28, 28, 1) for a batch. ``model`` is a VAE or
    its decoder.
    """
    decoder = _decoder_of(model)
    z, single = check_codes(z, latent_dim_of(decoder))
    batch_size = check_count(batch_size, "batch_size")
    image_bytes = 4 * int(np.prod(decoder.output_shape[1:]))
    check_memory(2 * image_bytes * len(z) + DECODE_BATCH_BYTES_PER_IMAGE * min(batch_size, len(z)),
                 f"decoding {len(z):,} codes", "decode fewer codes at a time")
    fn = _compiled(decoder)
    images = np.concatenate([fn(z[i:i + batch_size]) for i in range(0, len(z), batch_size)])
    return images[0] if single else images


def encode(model, x, batch_size=500, return_log_var=False):
    """Codes of images ``x``: posterior means ``z_mean`` (n, latent_dim); with ``return_log_var`` also ``z_log_var``.

    ``model`` is a VAE, its encoder, or a plain autoencoder's single-output encoder.
    """
    encoder = _encoder_of(model)
    x = check_images(x, "x", tuple(encoder.input_shape[1:]))
    if return_log_var and len(encoder.outputs) < 2:
        raise ValueError("this encoder has no z_log_var output (it is a plain autoencoder's)")
    fn = _compiled(encoder)
    means, log_vars = [], []
    for start in range(0, len(x), batch_size):
        outputs = fn(x[start:start + batch_size])
        if not isinstance(outputs, (list, tuple)):
            outputs = (outputs,)
        means.append(outputs[0])
        if return_log_var:
            log_vars.append(outputs[1])
    z_mean = np.concatenate(means)
    return (z_mean, np.concatenate(log_vars)) if return_log_var else z_mean


# --- Code arithmetic: paths and concept vectors -------------------------------------------------

INTERPOLATION_METHODS = ("lerp", "slerp", "slerp_linear_norm")


def _codes_like(z, name, latent_dim=None):
    """``z`` as a finite float array of shape (d,) or (n, d); d must equal ``latent_dim`` if given."""
    array = np.asarray(z, dtype=np.float32)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (latent_dim,) or (n, latent_dim), got {array.shape}")
    if latent_dim is not None and array.shape[-1] != latent_dim:
        raise ValueError(f"{name} has latent dimension {array.shape[-1]} but {latent_dim} was expected "
                         "(codes from two different latent spaces?)")
    check_codes(array, array.shape[-1], name)
    return array


def _scalars(values, name, low=None, high=None):
    """A finite scalar or 1-D array of floats (fractions or strengths), optionally within [low, high]."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim > 1:
        raise ValueError(f"{name} must be a number or a 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if low is not None and (np.any(array < low) or np.any(array > high)):
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got values from "
                         f"{array.min():g} to {array.max():g}")
    return array


def _endpoints(z0, z1):
    z0 = _codes_like(z0, "z0")
    z1 = _codes_like(z1, "z1", latent_dim=z0.shape[-1])
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {z0.shape} and {z1.shape}")
    return z0.astype(np.float64), z1.astype(np.float64)


def _along(t, codes):
    """Reshape fractions ``t`` (scalar or (m,)) so they broadcast against ``codes`` as a leading axis."""
    return t.reshape(t.shape + (1,) * codes.ndim)


def lerp(z0, z1, t):
    """Straight-line interpolation ``(1 - t) * z0 + t * z1`` for fractions ``t`` in [0, 1].

    ``z0`` and ``z1`` are codes of the same shape, (d,) or (n, d). A scalar ``t`` gives a result of
    that shape; a 1-D ``t`` of length m gives (m, d) or (m, n, d), one row per fraction.
    """
    z0, z1 = _endpoints(z0, z1)
    t = _along(_scalars(t, "t", 0.0, 1.0), z0)
    return ((1.0 - t) * z0 + t * z1).astype(np.float32)


def _angles(z0, z1):
    """Lengths of the codes, their unit directions, and the angle between them (keepdims shapes)."""
    r0 = np.linalg.norm(z0, axis=-1, keepdims=True)
    r1 = np.linalg.norm(z1, axis=-1, keepdims=True)
    u0 = z0 / np.where(r0 > 0, r0, 1.0)
    u1 = z1 / np.where(r1 > 0, r1, 1.0)
    return r0, r1, u0, u1, np.arccos(np.clip(np.sum(u0 * u1, axis=-1, keepdims=True), -1.0, 1.0))


def _along_arc(z0, z1, t, eps, keep_length):
    """The arc between the codes at fractions ``t``; ``keep_length`` picks the variant (see ``slerp_linear_norm``)."""
    z0, z1 = _endpoints(z0, z1)
    t = _along(_scalars(t, "t", 0.0, 1.0), z0)
    r0, r1, u0, u1, angle = _angles(z0, z1)
    sin = np.sin(angle)
    degenerate = (r0 <= eps) | (r1 <= eps) | (sin <= eps)
    safe_sin = np.where(degenerate, 1.0, sin)
    a, b = np.sin((1.0 - t) * angle) / safe_sin, np.sin(t * angle) / safe_sin
    arc = ((1.0 - t) * r0 + t * r1) * (a * u0 + b * u1) if keep_length else a * z0 + b * z1
    return np.where(degenerate, (1.0 - t) * z0 + t * z1, arc).astype(np.float32)


def slerp(z0, z1, t, eps=1e-7):
    """Spherical linear interpolation (Shoemake, 1985), as White (2016) proposed it for generative models.

    ``sin((1 - t) w) / sin(w) * z0 + sin(t w) / sin(w) * z1`` with ``w`` the angle between the codes:
    it turns from one code to the other at a constant rate. Two codes of equal length keep that
    length all along the path, where lerp cuts towards the origin (and a Gaussian prior in many
    dimensions has almost no codes near the origin). Shapes as in ``lerp``. Where the angle is
    undefined (a zero code, or parallel or exactly opposite codes) it falls back to ``lerp``.
    """
    return _along_arc(z0, z1, t, eps, keep_length=False)


def slerp_linear_norm(z0, z1, t, eps=1e-7):
    """A variant of ``slerp``: the direction turns along the arc, while the length changes linearly.

    For codes of different lengths the textbook slerp bulges (for nearly opposite codes, far out);
    this variant moves the length steadily from one code's to the other's. For codes of equal
    length the two agree. Shapes and fallbacks as in ``slerp``.
    """
    return _along_arc(z0, z1, t, eps, keep_length=True)


def interpolate(z0, z1, n_steps=10, method="lerp"):
    """``n_steps`` evenly spaced codes from ``z0`` to ``z1`` (both included), by a method of INTERPOLATION_METHODS."""
    n_steps = check_count(n_steps, "n_steps", minimum=2)  # the two end points at least
    if method not in INTERPOLATION_METHODS:
        raise ValueError(f"unknown interpolation method {method!r}; choose one of {INTERPOLATION_METHODS}")
    path = {"lerp": lerp, "slerp": slerp, "slerp_linear_norm": slerp_linear_norm}[method]
    return path(z0, z1, np.linspace(0.0, 1.0, n_steps))


def _group(z, name):
    """A non-empty (n, d) batch of finite codes (one code counts as a group of one)."""
    z = _codes_like(z, name)
    z = z[np.newaxis] if z.ndim == 1 else z
    if len(z) == 0:
        raise ValueError(f"{name} is empty: a concept needs at least one code on each side")
    return z


def concept_vector(z_from, z_to):
    """Mean of the codes ``z_to`` minus the mean of the codes ``z_from``: the direction from one group to the other.

    Adding it to a code of the first group moves that code, on average, to the second group
    ("from 1 to 7" when the groups are the codes of 1s and of 7s).
    """
    z_from = _group(z_from, "z_from")
    z_to = _group(z_to, "z_to")
    if z_from.shape[1] != z_to.shape[1]:
        raise ValueError(f"z_from and z_to come from different latent spaces "
                         f"({z_from.shape[1]} and {z_to.shape[1]} dimensions)")
    return (z_to.astype(np.float64).mean(axis=0) - z_from.astype(np.float64).mean(axis=0)).astype(np.float32)


def _labels_for(labels, z, name="labels"):
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(z):
        raise ValueError(f"{name} must be 1-D with one entry per code ({len(z)}), got shape {labels.shape}")
    return labels


def class_concept(z, labels, source, target):
    """The concept "from class ``source`` to class ``target``": mean target code minus mean source code."""
    z = _group(z, "z")
    labels = _labels_for(labels, z)
    if source == target:
        raise ValueError(f"source and target are the same class ({source!r}); the vector would be zero")
    for label in (source, target):
        if not np.any(labels == label):
            raise ValueError(f"no codes with label {label!r}; labels present: {sorted(np.unique(labels).tolist())}")
    return concept_vector(z[labels == source], z[labels == target])


def attribute_concept(z, scores, labels=None, fraction=0.25):
    """Direction of a measured attribute (e.g. ``ink_amount``): mean code of the highest-scoring
    ``fraction`` of images minus the mean code of the lowest-scoring ``fraction``.

    With ``labels`` the split is made inside each class and the per-class vectors are averaged, so
    the vector does not simply point from thin digits (1s) to heavy ones (0s and 8s): it changes the
    attribute while keeping the digit.
    """
    z = _group(z, "z")
    scores = _scalars(scores, "scores")
    if scores.ndim != 1 or len(scores) != len(z):
        raise ValueError(f"scores must be 1-D with one value per code ({len(z)}), got shape {scores.shape}")
    if not 0.0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5] so the low and high groups do not overlap, got {fraction}")
    groups = [np.arange(len(z))] if labels is None else \
        [np.flatnonzero(labels == label) for label in np.unique(_labels_for(labels, z))]
    vectors = [_high_minus_low(z[members], scores[members], fraction) for members in groups if len(members) >= 2]
    if not vectors:
        raise ValueError("attribute_concept needs at least two codes (per class, with labels)")
    return np.mean(vectors, axis=0).astype(np.float32)


def _high_minus_low(z, scores, fraction):
    order = np.argsort(scores, kind="stable")
    k = max(1, int(fraction * len(z)))
    return concept_vector(z[order[:k]], z[order[-k:]])


def apply_concept(z, vector, strength=1.0):
    """Edit codes along a concept: ``z + strength * vector``.

    ``z`` is (d,) or (n, d) and ``vector`` is (d,). A scalar ``strength`` keeps the shape of ``z``;
    a 1-D ``strength`` of length m gives (m, d) or (m, n, d), one edit per strength. Negative
    strengths move the other way.
    """
    z = _codes_like(z, "z")
    vector = _codes_like(vector, "vector", latent_dim=z.shape[-1])
    if vector.ndim != 1:
        raise ValueError(f"vector must be one direction of shape ({z.shape[-1]},), got {vector.shape}")
    strength = _along(_scalars(strength, "strength"), z)
    return (z + strength * vector).astype(np.float32)


# --- Holes: how far codes are from the data -----------------------------------------------------


def nearest_distance(points, codes):
    """Euclidean distance from each of ``points`` (n, d) to the closest of ``codes`` (m, d), by a k-d tree."""
    from scipy.spatial import cKDTree

    points, codes = np.asarray(points, np.float64), np.asarray(codes, np.float64)
    if points.ndim != 2 or codes.ndim != 2 or points.shape[1] != codes.shape[1]:
        raise ValueError(f"points and codes must be (n, d) and (m, d) with the same d, got {points.shape} and {codes.shape}")
    return cKDTree(codes).query(points)[0]


def hole_ratio(z_train, z_test, z_random):
    """How much further random codes lie from the training codes than real (test) codes do: a ratio of median distances.

    Near 1 when random codes land where the data is; much larger when most of the space they are
    drawn from is empty (holes).
    """
    return float(np.median(nearest_distance(z_random, z_train)) / np.median(nearest_distance(z_test, z_train)))


# --- Attributes measured on images ---------------------------------------------------------------


def _image_batch(x):
    """Grey images (n, h, w) or (n, h, w, 1) in [0, 1], checked, as (n, h, w) float64."""
    shape = np.shape(x)
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[-1] != 1):
        raise ValueError(f"x must be a batch of grey images (n, height, width[, 1]), got shape {shape}")
    return check_images(x, "x", shape[1:3] + (1,))[..., 0].astype(np.float64)


def ink_amount(x):
    """Mean pixel intensity of each image (n,): a stroke-thickness score, higher for bolder digits."""
    return _image_batch(x).mean(axis=(1, 2))


def slant(x):
    """How far each digit leans to the right (n,): horizontal shift of the ink per row of height.

    Computed from the image moments: the intensity-weighted covariance of column and (upward) row
    divided by the row variance. 0 means upright, positive leans like "/", negative like "\\".
    Blank images score 0.
    """
    x = _image_batch(x)
    height, width = x.shape[1:]
    up = (height - 1 - np.arange(height, dtype=np.float64))[:, np.newaxis]
    right = np.arange(width, dtype=np.float64)[np.newaxis, :]
    mass = x.sum(axis=(1, 2))
    safe_mass = np.where(mass > 0, mass, 1.0)
    mean_up = (x * up).sum(axis=(1, 2)) / safe_mass
    mean_right = (x * right).sum(axis=(1, 2)) / safe_mass
    du = up - mean_up[:, None, None]
    dr = right - mean_right[:, None, None]
    covariance = (x * du * dr).sum(axis=(1, 2))
    variance = (x * du * du).sum(axis=(1, 2))
    return np.where(variance > 0, covariance / np.where(variance > 0, variance, 1.0), 0.0)
