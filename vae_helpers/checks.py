"""Check cells for the write-it-yourself parts of the VAE notebooks.

Each ``check_*`` function runs a learner's code on fixed inputs and compares it with a reference
computed independently here (NumPy in float64, or TensorFlow on our own forward pass). Right code
gets one line starting with "✓ "; wrong code raises ``CheckFailed`` whose message names the mistake
it recognised (wrong sign, missing 1/2, sum over the batch, ...) and says what to change.
"""

import itertools
import re
import warnings

import numpy as np

from vae_helpers._tf import keras, tf

SEED = 1234
EPSILON = 1e-7  # the reference clips probabilities to [EPSILON, 1 - EPSILON]
STUB = "returned None: write the body (replace the `...`)"
KL_FORMULA = "0.5 * sum(exp(z_log_var) + z_mean**2 - 1 - z_log_var) over the last axis"
KL_FIX = f"Use {KL_FORMULA}, one value per example."
BCE_FIX = ("Use -sum(x * log(x_decoded) + (1 - x) * log(1 - x_decoded)) over the pixel axes (1, 2, 3), "
           "one value per example.")
ELBO_FIX = ("The loss is the mean over the batch of (BCE summed over the pixels + "
            f"{KL_FORMULA}).")


class CheckFailed(AssertionError):
    """A check found a mistake; the message names it and says what to change."""


# Mistakes the checks can recognise: phrases that complete "<your function> ...".
SIGN = "has the wrong sign (it can never be negative)"
NO_HALF = "is missing the factor 1/2 (twice the right value)"
MEAN_DIMS = "takes the mean over the latent dimensions instead of the sum over the latent dimensions"
LOG_SIGMA = ("treats z_log_var as log-sigma, the book's convention (it is a log-variance: the variance "
             "is exp(z_log_var), not exp(2 * z_log_var))")
NO_MINUS_ONE = "is missing the -1 inside the sum"
BATCH_MEAN = "returns the mean over the batch (one number) instead of one value per example"
BATCH_SUM = "is summed over the batch instead of averaged (batch size times too large)"
BATCH_SUM_PER_EXAMPLE = "is summed over the batch (one number) instead of one value per example"
PIXEL_MEAN = ("takes the mean over the 784 pixels instead of the sum (keras.losses.binary_crossentropy "
              "averages over the last axis by default)")
SWAPPED = "has its arguments swapped (the target x comes first, the probabilities x_decoded second)"
LOG2 = "uses log base 2 instead of the natural log (nats need tf.math.log)"
NO_SECOND_TERM = "is missing the (1 - x) * log(1 - x_decoded) term"
KL_MISSING = "leaves out the KL term"
KL_SIGN = "subtracts the KL term instead of adding it (the KL has the wrong sign)"
KL_NO_HALF = "is missing the factor 1/2 in the KL"
KL_LOG_SIGMA = "computes the KL as if z_log_var were log-sigma (the book's convention)"


# Shared helpers ---------------------------------------------------------------------------------

def _name(fn):
    name = getattr(fn, "__name__", "")
    return name if name.isidentifier() else "your function"


def _brief(err):
    """The line of an exception's message that says what went wrong (Keras wraps errors raised in layers)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).split("Arguments received by")[0]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("Exception encountered when calling")]
    return f"{type(err).__name__}: {(lines or [''])[0][:200].rstrip('.')}"


def _call(name, fn, *args, hint=""):
    """Run learner code; turn any exception into a short CheckFailed chained to the original."""
    try:
        return fn(*args)
    except CheckFailed:
        raise
    except Exception as err:  # whatever the learner's code raises, report it briefly
        raise CheckFailed(f"{name} raised {_brief(err)}. {hint}".strip()) from err


def _array(name, value):
    """The learner's result as a float64 NumPy array (None means an unfilled stub)."""
    if value is None:
        raise CheckFailed(f"{name} {STUB}.")
    try:
        return np.asarray(keras.ops.convert_to_numpy(value) if tf.is_tensor(value) else value, np.float64)
    except Exception as err:
        raise CheckFailed(f"{name} returned a {type(value).__name__}, not a tensor of numbers.") from err


def _join(mistakes):
    return mistakes[0] if len(mistakes) == 1 else ", ".join(mistakes[:-1]) + " and " + mistakes[-1]


def _match(got, variants, rtol=1e-4, atol=1e-5):
    """The mistakes of the first variant whose values equal ``got`` (``()`` = right), or None."""
    for mistakes, expected in variants:
        if np.shape(got) == np.shape(expected) and np.allclose(got, expected, rtol=rtol, atol=atol):
            return mistakes
    return None


def _variants(build, *families):
    """Every combination of one choice per family (dicts {mistakes: choice}) as (mistakes, build(*choices)),
    the right one (no mistakes) first."""
    combos = itertools.product(*(family.items() for family in families))
    variants = [(sum((m for m, _ in combo), ()), build(*(c for _, c in combo))) for combo in combos]
    return sorted(variants, key=lambda v: len(v[0]))


def _per_example_check(name, got, variants, fix, n):
    """Compare a per-example result with its variants; also recognise a batch sum or mean."""
    if got.size == 1 and n > 1:
        scalar = [(m + (BATCH_MEAN,), v.mean()) for m, v in variants]
        scalar += [(m + (BATCH_SUM_PER_EXAMPLE,), v.sum()) for m, v in variants]
        mistakes = _match(got.reshape(()), scalar)
        if mistakes is None:
            raise CheckFailed(f"{name} returned one number for the whole batch: it must return one value "
                              f"per example, shape ({n},). {fix}")
        raise CheckFailed(f"{name} {_join(mistakes)}, shape ({n},). {fix}")
    if got.shape != (n,):
        why = " (a trailing axis of size 1 would broadcast wrongly later)" if got.shape == (n, 1) else ""
        raise CheckFailed(f"{name} returned shape {got.shape}, expected one value per example, shape ({n},)"
                          f"{why}. {fix}")
    mistakes = _match(got, variants)
    if mistakes:
        raise CheckFailed(f"{name} {_join(mistakes)}. {fix}")
    if mistakes is None:
        i = int(np.argmax(~np.isclose(got, variants[0][1], rtol=1e-4, atol=1e-5)))
        raise CheckFailed(f"{name} gives {got[i]:.5g} for example {i} where {variants[0][1][i]:.5g} is expected. {fix}")


# 1. Sampling ----------------------------------------------------------------------------------

SAMPLING_MEAN = np.array([0.5, -1.0, 2.0], np.float32)
SAMPLING_LOG_VAR = np.array([-1.2, 0.6, 1.4], np.float32)
# Spread of z - z_mean that a wrong scale rule produces, and what that rule is.
SCALE_RULES = [
    ("", lambda lv: np.exp(0.5 * lv)),
    ("uses sigma = exp(z_log_var): that is the book's convention, which treats z_log_var as log-sigma "
     "(or uses the variance as the std); the 1/2 is missing", np.exp),
    ("uses exp(2 * z_log_var), the square of the variance, as sigma", lambda lv: np.exp(2 * lv)),
    ("uses exp(-0.5 * z_log_var): the sign in the exponent is wrong", lambda lv: np.exp(-0.5 * lv)),
    ("multiplies the noise by z_log_var itself: the exp is missing", np.abs),
    ("multiplies the noise by 0.5 * z_log_var: the exp is missing", lambda lv: np.abs(0.5 * lv)),
]
SAMPLING_FIX = "Use z = z_mean + exp(0.5 * z_log_var) * eps with eps = keras.random.normal(tf.shape(z_mean))."


def check_sampling(fn, n=4096):
    """Check ``fn(z_mean, z_log_var) -> z`` draws z ~ N(z_mean, exp(z_log_var)) with gradients to both inputs.

    Uses n x 3 draws at fixed means and log-variances with tolerances of six standard errors, so the
    statistics cannot flake; it calls ``keras.utils.set_random_seed`` first, which reseeds the session.
    """
    name = _name(fn)
    mean = tf.constant(np.tile(SAMPLING_MEAN, (n, 1)))
    log_var = tf.constant(np.tile(SAMPLING_LOG_VAR, (n, 1)))
    keras.utils.set_random_seed(SEED)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([mean, log_var])
        z = _call(name, fn, mean, log_var, hint="It receives two float32 tensors of shape (batch, "
                                                "latent_dim); use TensorFlow or keras.ops functions on them.")
        total = tf.reduce_sum(z) if tf.is_tensor(z) else None
    values = _array(name, z)
    if values.shape != (n, 3):
        raise CheckFailed(f"{name} returned shape {values.shape}; z must have the shape of z_mean, ({n}, 3). "
                          f"{SAMPLING_FIX}")
    if not np.all(np.isfinite(values)):
        raise CheckFailed(f"{name} returned inf or NaN. {SAMPLING_FIX}")
    noise = values - SAMPLING_MEAN
    if np.allclose(noise, 0, atol=1e-6):
        raise CheckFailed(f"{name} returned z_mean itself: no noise was added. {SAMPLING_FIX}")
    if np.allclose(noise, noise[:1], atol=1e-6):
        raise CheckFailed(f"{name} gives every example the same noise (one draw shared by the whole batch): "
                          f"draw eps with the full shape tf.shape(z_mean), not (latent_dim,) or (1, latent_dim).")
    if np.all(np.abs(np.corrcoef(noise.T)[np.triu_indices(3, 1)]) > 0.999):
        raise CheckFailed(f"{name} uses the same noise in every latent dimension (shared across columns): "
                          f"draw eps with the full shape tf.shape(z_mean), not (batch, 1).")
    spread, tolerance = noise.std(axis=0), 6 / np.sqrt(2 * n)
    rule = next((text for text, scale in SCALE_RULES
                 if np.all(np.abs(spread / scale(SAMPLING_LOG_VAR.astype(np.float64)) - 1) < tolerance)), None)
    expected = np.exp(0.5 * SAMPLING_LOG_VAR.astype(np.float64))
    if rule is None:
        raise CheckFailed(f"{name}: the spread of z - z_mean per dimension is {np.round(spread, 3)} but "
                          f"sigma = exp(0.5 * z_log_var) = {np.round(expected, 3)}. {SAMPLING_FIX}")
    if rule:
        raise CheckFailed(f"{name} {rule}. {SAMPLING_FIX}")
    if np.any(np.abs(noise.mean(axis=0)) > 6 * expected / np.sqrt(n)):
        raise CheckFailed(f"{name}: z is not centred on z_mean (mean of z - z_mean is "
                          f"{np.round(noise.mean(axis=0), 3)}); eps must have mean 0. {SAMPLING_FIX}")
    _check_sampling_gradients(name, tape, total, mean, log_var, noise)
    print(f"✓ {name}: z ~ N(z_mean, exp(z_log_var)) on {n} x 3 draws (right mean and spread, fresh noise "
          "per example and dimension), gradients reach z_mean and z_log_var")


def _check_sampling_gradients(name, tape, total, mean, log_var, noise):
    outside = (f"{name}: no gradient reaches {{}}, so the encoder could not learn: the sample was drawn "
               "outside TensorFlow (NumPy) or with stop_gradient. Compute z with TensorFlow ops "
               "from the tensors you receive.")
    if total is None:
        raise CheckFailed(outside.format("z_mean and z_log_var (z is not a TensorFlow tensor)"))
    d_mean, d_log_var = tape.gradient(total, [mean, log_var])
    if d_mean is None:
        raise CheckFailed(outside.format("z_mean"))
    if d_log_var is None or not np.any(d_log_var.numpy()):
        raise CheckFailed(outside.format("z_log_var"))
    if not (np.allclose(d_mean.numpy(), 1.0, rtol=1e-4, atol=1e-5)
            and np.allclose(d_log_var.numpy(), 0.5 * noise, rtol=1e-3, atol=1e-4)):
        raise CheckFailed(f"{name}: dz/dz_mean should be 1 and dz/dz_log_var 0.5 * sigma * eps; is eps itself "
                          f"computed from the inputs? {SAMPLING_FIX}")


# 2. KL divergence -----------------------------------------------------------------------------

KL_MEAN = np.array([[0, 0, 0], [1, 0, 0], [0.5, -1, 2], [0, 0, 0], [-1.5, 0.3, 0.8], [0.2, 0.4, -0.6]],
                   np.float32)
KL_LOG_VAR = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [-1, 0.5, 1], [0.7, -0.4, -2], [1.5, -1.2, 0.3]],
                      np.float32)


def _kl_variants(mu, lv):
    """(mistakes, per-example KL) for the right closed form (mistakes ``()``, first) and its usual slips."""
    mu, lv = np.asarray(mu, np.float64), np.asarray(lv, np.float64)
    terms = {(): np.exp(lv) + mu**2 - 1 - lv, (LOG_SIGMA,): np.exp(2 * lv) + mu**2 - 1 - 2 * lv,
             (NO_MINUS_ONE,): np.exp(lv) + mu**2 - lv}
    factors = {(): 0.5, (NO_HALF,): 1.0, (SIGN,): -0.5, (SIGN, NO_HALF): -1.0}
    return _variants(lambda t, reduce, f: f * reduce(t, axis=-1), terms, {(): np.sum, (MEAN_DIMS,): np.mean}, factors)


def check_kl_divergence(fn):
    """Check ``fn(z_mean, z_log_var)`` returns KL(N(z_mean, exp(z_log_var)) || N(0, I)) per example.

    Six fixed examples (the first is the prior itself, KL 0) are compared with the closed form and
    with its usual slips, so a wrong answer is named.
    """
    name = _name(fn)
    got = _array(name, _call(name, fn, tf.constant(KL_MEAN), tf.constant(KL_LOG_VAR),
                             hint="It receives two float32 tensors of shape (batch, latent_dim)."))
    _per_example_check(name, got, _kl_variants(KL_MEAN, KL_LOG_VAR), KL_FIX, len(KL_MEAN))
    print(f"✓ {name}: matches the closed form on {len(KL_MEAN)} test cases, per example, shape ({len(KL_MEAN)},)")


# 3. Reconstruction loss -----------------------------------------------------------------------

def _recon_inputs():
    """Four soft-target images (grey pixels and near-black/white ones) and interior probabilities."""
    rng = np.random.default_rng(7)
    shape = (28, 28, 1)
    x = np.stack([np.where(rng.uniform(size=shape) < 0.3, 0.98, 0.02), rng.uniform(0.02, 0.98, shape),
                  np.full(shape, 0.5), np.where(rng.uniform(size=shape) < 0.5, 0.95, 0.05)])
    p = rng.uniform(0.05, 0.95, x.shape)
    p[3] = np.clip(x[3] + rng.normal(0, 0.05, shape), 0.01, 0.99)
    return x.astype(np.float32), p.astype(np.float32)


def _bce_variants(x, p):
    """(mistakes, per-example loss) for binary cross-entropy summed over pixels (first) and its slips."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    p = np.clip(np.asarray(p, np.float64).reshape(len(p), -1), EPSILON, 1 - EPSILON)
    xc = np.clip(x, EPSILON, 1 - EPSILON)  # swapped arguments: x is then clipped like probabilities
    terms = {(): -(x * np.log(p) + (1 - x) * np.log(1 - p)), (SWAPPED,): -(p * np.log(xc) + (1 - p) * np.log(1 - xc)),
             (NO_SECOND_TERM,): -x * np.log(p)}
    factors = {(): 1.0, (LOG2,): 1 / np.log(2), (SIGN,): -1.0, (SIGN, LOG2): -1 / np.log(2)}
    return _variants(lambda t, reduce, f: f * reduce(t, axis=-1), terms, {(): np.sum, (PIXEL_MEAN,): np.mean}, factors)


def check_reconstruction_loss(fn):
    """Check ``fn(x, x_decoded)`` is the binary cross-entropy summed over the 784 pixels, in nats per example.

    Fixed grey and near-binary images find the usual slips; a last case with probabilities of
    exactly 0 and 1 checks that x_decoded is clipped before the log.
    """
    name = _name(fn)
    hint = "It receives x and x_decoded as float32 tensors of shape (batch, 28, 28, 1)."
    x, p = _recon_inputs()
    got = _array(name, _call(name, fn, tf.constant(x), tf.constant(p), hint=hint))
    if got.ndim > 1 and got.shape[0] == len(x) and got.size > len(x):
        raise CheckFailed(f"{name} returned one value per pixel (shape {got.shape}) instead of one per example: "
                          f"sum over the pixel axes. {BCE_FIX}")
    _per_example_check(name, got, _bce_variants(x, p), BCE_FIX, len(x))
    binary = (np.random.default_rng(8).uniform(size=(2, 28, 28, 1)) < 0.3).astype(np.float32)
    extreme = binary.copy()
    extreme[1, :2] = 1 - extreme[1, :2]  # 56 confidently wrong pixels
    got = _array(name, _call(name, fn, tf.constant(binary), tf.constant(extreme), hint=hint)).reshape(-1)
    if not np.all(np.isfinite(got)):
        raise CheckFailed(f"{name} gives inf or NaN when x_decoded is exactly 0 or 1 (log(0)): clip x_decoded "
                          f"to [1e-7, 1 - 1e-7] before the log (keras.ops.clip).")
    if abs(got[0]) > 0.1:
        raise CheckFailed(f"{name} gives {got[0]:.4g} nats for a perfect reconstruction (x_decoded == x, "
                          "pixels exactly 0 or 1) where about 0 is expected: clip with a small epsilon, 1e-7.")
    print(f"✓ {name}: binary cross-entropy summed over the 784 pixels on {len(x)} test images, per example, "
          f"shape ({len(x)},), finite when x_decoded is exactly 0 or 1")


# 4. The custom loss layer ---------------------------------------------------------------------

def _elbo_variants(recon, kl, kl_log_sigma):
    """(mistakes, scalar) for the batch-mean negative ELBO (first) and its usual slips."""
    kls = {(): kl, (KL_MISSING,): 0 * kl, (KL_SIGN,): -kl, (KL_NO_HALF,): 2 * kl, (KL_LOG_SIGMA,): kl_log_sigma}
    return _variants(lambda r, k, reduce: reduce(r + k), {(): recon, (PIXEL_MEAN,): recon / 784}, kls,
                     {(): np.mean, (BATCH_SUM,): np.sum})


def _loss_layer_batch(seed):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(size=(4, 28, 28, 1)) < 0.3).astype(np.float32)
    p = rng.uniform(0.05, 0.95, x.shape).astype(np.float32)
    mu, lv = rng.normal(size=(4, 2)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    recon = _bce_variants(x, p)[0][1]
    kl = _kl_variants(mu, lv)[0][1]
    kl_log_sigma = next(v for m, v in _kl_variants(mu, lv) if m == (LOG_SIGMA,))
    return (x, p, mu, lv), _elbo_variants(recon, kl, kl_log_sigma)


def _check_loss_layer_call(name, layer, inputs, variants):
    """One call of the layer: returns x_decoded unchanged and adds the right loss; returns its value."""
    x_decoded = inputs[1]
    out = _call(name, layer, *map(tf.constant, inputs),
                hint="The check calls layer(x, x_decoded, z_mean, z_log_var) with four float32 tensors.")
    added = [_array(name, loss) for loss in layer.losses]
    if out is None and not added:
        raise CheckFailed(f"{name}.call {STUB}; add the loss with self.add_loss(...) and return x_decoded.")
    if not added:
        got = "returned the loss instead of adding it" if np.size(_array(name, out)) == 1 else "added no loss"
        raise CheckFailed(f"{name} {got}: call self.add_loss(loss) inside call, then return x_decoded. {ELBO_FIX}")
    if out is None or _array(name, out).shape != x_decoded.shape or not np.allclose(_array(name, out), x_decoded):
        what = ("None" if out is None else "one number (the loss?)" if np.size(_array(name, out)) == 1
                else f"something else (shape {_array(name, out).shape})")
        raise CheckFailed(f"{name} returned {what}: call must end with `return x_decoded`, unchanged.")
    if any(loss.size != 1 for loss in added):
        shapes = [loss.shape for loss in added]
        raise CheckFailed(f"{name} added a loss of shape {shapes[0] if len(shapes) == 1 else shapes}, not one "
                          f"number: average the per-example loss over the batch (keras.ops.mean). {ELBO_FIX}")
    if len(added) > 2:
        raise CheckFailed(f"{name} added {len(added)} losses ({[round(float(v), 3) for v in added]}): add one "
                          f"loss (or reconstruction and KL as two) per call. {ELBO_FIX}")
    total = float(sum(float(v) for v in added))
    mistakes = _match(total, variants)
    terms = "" if len(added) == 1 else f" (the sum of the two losses you added, {float(added[0]):.4g} and " \
                                       f"{float(added[1]):.4g})"
    if mistakes is None:
        raise CheckFailed(f"{name}: the loss is {total:.5g}{terms} but {variants[0][1]:.5g} is expected. {ELBO_FIX}")
    if mistakes:
        raise CheckFailed(f"{name}: the loss{terms} {_join(mistakes)}. {ELBO_FIX}")
    return total, len(added)


def check_vae_loss_layer(layer_class):
    """Check a custom loss layer: ``layer_class()(x, x_decoded, z_mean, z_log_var)`` adds the batch-mean
    negative ELBO with ``add_loss`` (one loss, or reconstruction and KL as two that sum to it) and
    returns x_decoded unchanged; a second call must replace, not accumulate, the loss.
    """
    name = getattr(layer_class, "__name__", "your layer")
    if isinstance(layer_class, keras.layers.Layer):
        raise CheckFailed(f"pass the layer class itself, e.g. check_vae_loss_layer({type(layer_class).__name__}), "
                          "not an instance.")
    layer = _call(name, layer_class, hint="The check creates the layer with no arguments.")
    if layer is None or not callable(layer):
        raise CheckFailed(f"{name}() did not give a Keras layer: pass the class itself, e.g. check(VAELossLayer).")
    for seed in (11, 12):  # the second call, on other numbers, must not see the first call's loss
        inputs, variants = _loss_layer_batch(seed)
        value, count = _check_loss_layer_call(name, layer, inputs, variants)
    terms = "one loss equal to" if count == 1 else "two losses that sum to"
    print(f"✓ {name}: adds {terms} the batch mean of reconstruction + KL ({value:.2f} nats on the test batch), "
          "returns x_decoded unchanged, and the loss is replaced on each call")


# 5. train_step --------------------------------------------------------------------------------

LATENT_DIM, BATCH, LEARNING_RATE = 2, 8, 1e-2
LOG_VAR_BIAS = -30.0  # sigma ~ 3e-7: z equals z_mean whatever sampling rule the learner wrote


def _tiny_vae_parts():
    """A tiny encoder (with a constant, frozen z_log_var head) and decoder, their trainable weights in
    the order of ``_reference_step`` (encoder's first, values fixed), and a batch of binary images."""
    rng = np.random.default_rng(5)
    layers = keras.layers
    hidden, mean_head, pixels = layers.Dense(8, "relu"), layers.Dense(LATENT_DIM), layers.Dense(784, "sigmoid")
    log_var_head = layers.Dense(LATENT_DIM, kernel_initializer="zeros", trainable=False,
                                bias_initializer=keras.initializers.Constant(LOG_VAR_BIAS))
    images, codes = keras.Input((28, 28, 1)), keras.Input((LATENT_DIM,))
    features = hidden(layers.Flatten()(images))
    encoder = keras.Model(images, [mean_head(features), log_var_head(features)])
    decoder = keras.Model(codes, layers.Reshape((28, 28, 1))(pixels(codes)))
    weights = [w for layer in (hidden, mean_head, pixels) for w in (layer.kernel, layer.bias)]
    for w in weights:
        w.assign(rng.normal(0, 0.3 if w.shape[-1] == 784 else 0.1, w.shape).astype(np.float32))
    x = (rng.uniform(size=(BATCH, 28, 28, 1)) < 0.3).astype(np.float32)
    return encoder, decoder, weights, x


def _reference_step(weights, x):
    """Per-example reconstruction and KL (float64) and the gradient of the mean negative ELBO, our own forward pass."""
    w = [tf.Variable(np.asarray(v, np.float64)) for v in weights]  # hidden W, b; mean W, b; decoder W, b
    xs = tf.constant(x.reshape(len(x), -1), tf.float64)
    with tf.GradientTape() as tape:
        mu = tf.nn.relu(xs @ w[0] + w[1]) @ w[2] + w[3]
        p = tf.sigmoid(mu @ w[4] + w[5])
        recon = -tf.reduce_sum(xs * tf.math.log(p) + (1 - xs) * tf.math.log(1 - p), axis=-1)
        lv = tf.fill(tf.shape(mu), tf.constant(LOG_VAR_BIAS, tf.float64))
        kl = 0.5 * tf.reduce_sum(tf.exp(lv) + mu**2 - 1 - lv, axis=-1)
        kl_log_sigma = 0.5 * tf.reduce_sum(tf.exp(2 * lv) + mu**2 - 1 - 2 * lv, axis=-1)
        loss = tf.reduce_mean(recon + kl)
    grads = tape.gradient(loss, w)
    return recon.numpy(), kl.numpy(), kl_log_sigma.numpy(), [g.numpy() for g in grads]


class _BadReturn(Exception):
    pass


def _probe_class(model_class):
    """A subclass that notices train_step or compute_loss returning None (an unfilled stub) or
    train_step returning something other than a dict."""
    def not_none(method):
        def wrapper(self, *args, **kwargs):
            result = getattr(super(Probe, self), method)(*args, **kwargs)
            if result is None:
                raise _BadReturn(f"{method} {STUB}")
            if method == "train_step" and not isinstance(result, dict):
                what = "a tensor" if tf.is_tensor(result) else f"a {type(result).__name__}"
                raise _BadReturn(f"train_step returned {what}, not a dict")
            return result
        return wrapper
    Probe = type(model_class.__name__, (model_class,), {m: not_none(m) for m in ("train_step", "compute_loss")})
    return Probe


class _BatchLogs(keras.callbacks.Callback):
    """Keeps what train_step returned (fit's epoch history may show its own, untouched loss tracker)."""

    def on_train_batch_end(self, batch, logs=None):
        self.logs = logs


def check_train_step(model_class):
    """Check a ``keras.Model`` subclass ``model_class(encoder, decoder)`` whose train_step (or compute_loss)
    trains a VAE: one SGD step on a fixed batch must report the mean negative ELBO as "loss" and move
    every weight by exactly -learning_rate * gradient.
    """
    name = getattr(model_class, "__name__", "your model")
    if not isinstance(model_class, type) or not issubclass(model_class, keras.Model):
        raise CheckFailed(f"{name} is not a keras.Model subclass: pass the class itself, e.g. check(VAE).")
    if all(getattr(model_class, m) is getattr(keras.Model, m) for m in ("train_step", "compute_loss", "call")):
        raise CheckFailed(f"{name} overrides neither train_step nor compute_loss: write train_step (replace the `...`).")
    encoder, decoder, variables, x = _tiny_vae_parts()
    before = [v.numpy() for v in variables]
    model = _call(name, _probe_class(model_class), encoder, decoder,
                  hint="The check creates it as model_class(encoder, decoder).")
    try:
        tracked = {id(v) for v in model.trainable_weights}
    except Exception:
        tracked = set()
    if not {id(v) for v in variables} <= tracked:
        raise CheckFailed(f"{name}.__init__ must call super().__init__(**kwargs) and keep the encoder and decoder "
                          "(self.encoder = encoder; self.decoder = decoder): write its body (replace the `...`).")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LEARNING_RATE))
    record = _BatchLogs()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Gradients do not exist ...": explained below instead
            model.fit(x, epochs=1, batch_size=BATCH, shuffle=False, verbose=0, callbacks=[record])
    except _BadReturn as err:
        raise CheckFailed(f"{name}.{err}; return a dict such as {{'loss': loss}}.") from None
    except Exception as err:
        graph = ("numpy" in str(err).lower() or "SymbolicTensor" in str(err)) and (
            " fit runs train_step as a TensorFlow graph: use TensorFlow ops only (no NumPy or .numpy() on tensors).")
        raise CheckFailed(f"fit raised {_brief(err)} in {name}.{graph or ''}") from err
    recon, kl, kl_log_sigma, grads = _reference_step(before, x)
    _check_reported_loss(name, getattr(record, "logs", None), _elbo_variants(recon, kl, kl_log_sigma))
    _check_update(name, before, [v.numpy() for v in variables], grads, n_encoder=4)
    print(f"✓ {name}: one SGD step reports the mean negative ELBO as 'loss' and moves encoder and decoder "
          "weights by -learning_rate * gradient")


def _check_reported_loss(name, logs, variants):
    if not isinstance(logs, dict) or "loss" not in logs:
        keys = sorted(logs) if isinstance(logs, dict) else type(logs).__name__
        raise CheckFailed(f"{name}.train_step must return a dict with a 'loss' entry (got {keys}).")
    loss = np.asarray(logs["loss"], np.float64)
    if loss.size != 1:
        raise CheckFailed(f"{name}: the loss has shape {loss.shape}, not one number: average the per-example "
                          f"loss over the batch (keras.ops.mean). {ELBO_FIX}")
    mistakes = _match(float(loss), variants)
    if mistakes is None:
        raise CheckFailed(f"{name}: the loss is {float(loss):.5g} but {variants[0][1]:.5g} is expected. {ELBO_FIX}")
    if mistakes:
        raise CheckFailed(f"{name}: the loss {_join(mistakes)}. {ELBO_FIX}")


def _check_update(name, before, after, grads, n_encoder):
    """Compare the weight change with -learning_rate * gradient: all weights, then decoder and encoder."""
    flat = lambda arrays: np.concatenate([a.ravel() for a in arrays])  # noqa: E731
    moved, want = flat(after) - flat(before), -LEARNING_RATE * flat(grads)
    close = lambda got, ref: np.linalg.norm(got - ref) <= 1e-3 * np.linalg.norm(ref) + 1e-8  # noqa: E731
    encoder = slice(0, sum(g.size for g in grads[:n_encoder]))
    decoder = slice(encoder.stop, None)
    if close(moved, want):
        return
    if not moved.any():
        raise CheckFailed(f"{name}: no weight changed: call self.optimizer.apply_gradients(zip(grads, "
                          "self.trainable_weights)) with grads = tape.gradient(loss, self.trainable_weights).")
    if close(moved, -want):
        raise CheckFailed(f"{name}: the weights moved up the gradient (gradient ascent): apply the gradient of "
                          "+loss, the quantity to minimise.")
    if close(moved, BATCH * want):
        raise CheckFailed(f"{name}: the update is {BATCH} (the batch size) times too large: the loss you "
                          f"differentiate is summed over the batch instead of averaged. {ELBO_FIX}")
    if not moved[decoder].any():
        raise CheckFailed(f"{name}: the decoder's weights did not move: apply the gradients to "
                          "self.trainable_weights (encoder and decoder).")
    if not close(moved[decoder], want[decoder]):
        raise CheckFailed(f"{name}: the weight update is not -learning_rate * gradient of the loss you report: "
                          f"differentiate that same loss. {ELBO_FIX}")
    if not moved[encoder].any():
        raise CheckFailed(f"{name}: the encoder's weights did not move: gradients do not reach z_mean and "
                          "z_log_var. Call self.encoder inside the GradientTape, sample z with TensorFlow ops "
                          "(no NumPy, no stop_gradient) and apply the gradients to self.trainable_weights.")
    raise CheckFailed(f"{name}: the decoder learns correctly but the encoder's update is wrong: the "
                      "reconstruction's gradient does not flow back through z to z_mean (sample z with "
                      "TensorFlow ops inside the tape, no NumPy, no stop_gradient).")


# Exercise answers --------------------------------------------------------------------------------

def check_number(name, got, expected, tolerance, hint="", reduce=None):
    """For an exercise whose answer is a number: one "✓" line when ``got`` is within ``tolerance`` of ``expected``.

    Otherwise CheckFailed saying how far off it is, with ``hint`` (what to reconsider). ``reduce``
    (e.g. ``np.mean``) first turns an array of results into the number to check.
    """
    if got is None or got is Ellipsis:
        raise CheckFailed(f"{name}: no answer yet: replace the `...` with your answer")
    try:
        value = float(np.asarray(got if reduce is None else reduce(np.asarray(got, np.float64)), dtype=np.float64).squeeze())
    except (TypeError, ValueError) as err:
        raise CheckFailed(f"{name}: expected one number, got {type(got).__name__} {np.shape(got)}") from err
    if not abs(value - expected) <= tolerance:
        raise CheckFailed(f"{name}: {value:.4g} is not within {tolerance:g} of the expected value. {hint}".strip())
    print(f"✓ {name}: {value:.4g} (expected {expected:.4g} ± {tolerance:g})")
