"""Moving around the latent space: encode images to codes and decode codes to images.

These functions take numpy arrays and return numpy arrays, so notebooks, widgets and tests can use
them without thinking about tensors. ``decode`` skips ``Model.predict`` (which sets up a data
pipeline on every call) and calls a compiled function directly, so a widget update stays fast.
"""

import weakref

import numpy as np

from vae_helpers._tf import keras, tf
from vae_helpers.data import check_images

_COMPILED_DECODERS = weakref.WeakKeyDictionary()


def _decoder_of(model):
    return getattr(model, "decoder", model)


def _encoder_of(model):
    return getattr(model, "encoder", model)


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
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return z, single


def _compiled(decoder):
    fn = _COMPILED_DECODERS.get(decoder)
    if fn is None:
        signature = [tf.TensorSpec([None, latent_dim_of(decoder)], tf.float32)]
        fn = tf.function(lambda z: decoder(z, training=False), input_signature=signature, reduce_retracing=True)
        _COMPILED_DECODERS[decoder] = fn
    return fn


def decode(model, z, batch_size=1024):
    """Decode one code (latent_dim,) or a batch (n, latent_dim) into numpy images.

    Returns shape (28, 28, 1) for one code and (n, 28, 28, 1) for a batch. ``model`` is a VAE or
    its decoder.
    """
    decoder = _decoder_of(model)
    z, single = check_codes(z, latent_dim_of(decoder))
    fn = _compiled(decoder)
    images = np.concatenate([fn(tf.constant(z[i:i + batch_size])).numpy()
                             for i in range(0, len(z), batch_size)])
    return images[0] if single else images


def encode(model, x, batch_size=500, return_log_var=False):
    """Posterior means ``z_mean`` (n, latent_dim) of images ``x``; with ``return_log_var`` also ``z_log_var``."""
    encoder = _encoder_of(model)
    x = check_images(x, "x", tuple(encoder.input_shape[1:]))
    means, log_vars = [], []
    for start in range(0, len(x), batch_size):
        z_mean, z_log_var = encoder(x[start:start + batch_size], training=False)
        means.append(keras.ops.convert_to_numpy(z_mean))
        log_vars.append(keras.ops.convert_to_numpy(z_log_var))
    z_mean = np.concatenate(means)
    return (z_mean, np.concatenate(log_vars)) if return_log_var else z_mean
