"""The notebook check cells: right code passes with one line, each known mistake is named."""

import itertools

import numpy as np
import pytest

from vae_helpers import checks, losses, models
from vae_helpers._backend import BACKEND, keras, tf

ops = keras.ops
TENSORFLOW_ONLY = pytest.mark.backends("tensorflow")  # the checks not yet ported: sampling, train_step, my_vae


def on(**phrases):
    """What a mistake shows on each backend, for the few that fit treats differently: TensorFlow compiles with an
    unknown batch size, JAX compiles with a known one, PyTorch runs eagerly with gradients. ``None``: fit itself
    accepts the code on that backend, so the check must too."""
    return phrases[BACKEND]


def check_line(capsys):
    """The single line a passing check printed."""
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("✓ "), lines
    return lines[0]


def fails(check, code, *phrases):
    """Run ``check(code)``; assert CheckFailed naming every phrase; return the message."""
    with pytest.raises(checks.CheckFailed) as caught:
        check(code)
    message = str(caught.value)
    for phrase in phrases:
        assert phrase.lower() in message.lower(), message
    assert "Traceback" not in message and len(message) < 700, message
    return message


def stub(*args):
    ...


def raises(*args):
    raise ValueError("boom")


# Reference implementations, as a learner would write them ----------------------------------

def sampling(z_mean, z_log_var, seed=None):
    eps = keras.random.normal(ops.shape(z_mean), seed=seed)
    return z_mean + ops.exp(0.5 * z_log_var) * eps


def kl_divergence(z_mean, z_log_var):
    return 0.5 * ops.sum(ops.exp(z_log_var) + ops.square(z_mean) - 1 - z_log_var, axis=-1)


def reconstruction_loss(x, x_decoded):
    return ops.sum(keras.losses.binary_crossentropy(x, x_decoded), axis=(1, 2))


def pixel_bce(x, p, log=ops.log):
    p = ops.clip(p, 1e-7, 1 - 1e-7)
    return -(x * log(p) + (1 - x) * log(1 - p))


# 1. Sampling ------------------------------------------------------------------------------

def noise(shape):
    return lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * keras.random.normal(shape(m), seed=seed)


def numpy_sampling(m, lv, seed=None):
    return np.asarray(m) + np.exp(0.5 * np.asarray(lv)) * np.random.normal(size=m.shape)


def normal(m, seed):
    return keras.random.normal(ops.shape(m), seed=seed)


# Each takes the SeedGenerator the check passes (the way that runs on every backend); see below for sample(z_mean,
# z_log_var) without one.
WRONG_SAMPLING = {
    "book": (lambda m, lv, seed=None: m + ops.exp(lv) * normal(m, seed), "log-sigma", "1/2"),
    "no noise": (lambda m, lv, seed=None: m + 0 * lv, "no noise"),
    "noise (latent_dim,)": (noise(lambda m: (m.shape[1],)), "same noise", "whole batch"),
    "noise (1, latent_dim)": (noise(lambda m: (1, m.shape[1])), "same noise", "whole batch"),
    "noise (batch, 1)": (noise(lambda m: (m.shape[0], 1)), "same noise in every latent dimension"),
    "variance squared": (lambda m, lv, seed=None: m + ops.exp(2 * lv) * normal(m, seed), "square of the variance"),
    "no exp": (lambda m, lv, seed=None: m + lv * normal(m, seed), "exp is missing"),
    "uniform noise": (lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * keras.random.uniform(ops.shape(m), seed=seed),
                      "mean 0"),
    "centred uniform noise": (lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * (
        keras.random.uniform(ops.shape(m), seed=seed) - 0.5), "spread"),
    "uniform noise of unit variance": (lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * keras.random.uniform(
        ops.shape(m), -3**0.5, 3**0.5, seed=seed), "not normal", "kurtosis"),
    "truncated normal noise rescaled to unit variance": (lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * (
        keras.random.truncated_normal(ops.shape(m), seed=seed) / 0.8796), "not normal", "beyond 2.4"),
    "noise of random signs": (lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * ops.sign(normal(m, seed)), "not normal"),
    "NumPy noise (frozen in a graph)": (
        lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * np.random.normal(size=m.shape).astype("float32"),
        *on(tensorflow=("compiled function", "frozen", "NumPy"), jax=("compiled function", "frozen", "NumPy"),
            torch=("as fit runs it", "no NumPy"))),  # NumPy cannot multiply a torch tensor that carries gradients
    "fixed keras seed": (lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * normal(m, 42), "frozen", "seed"),
    "a new generator per call": (lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * normal(m, keras.random.SeedGenerator(1)),
                                 "frozen", "seed"),
    "a new seeded layer per call": (lambda m, lv, seed=None: models.Sampling(seed=0)([m, lv]), "frozen"),
    "static shape": (lambda m, lv, seed=None: m + ops.exp(0.5 * lv) * keras.random.normal(m.shape, seed=seed),
                     *on(tensorflow=("static shape", "keras.ops.shape(z_mean)"), jax=(None,), torch=(None,))),
    "arguments swapped": (lambda m, lv, seed=None: sampling(lv, m, seed), "swapped", "first output is z_mean"),
    "a bool tensor": (lambda m, lv, seed=None: sampling(m, lv, seed) > 0, "bool", "floating-point"),
    "changes floatx": (lambda m, lv, seed=None: (keras.config.set_floatx("float16"), sampling(m, lv, seed))[1],
                       "global settings", "floatx from 'float32' to 'float16'"),
    "wrong shape": (lambda m, lv, seed=None: sampling(m, lv, seed)[:, :2], "shape", "(4096, 3)"),
    "a tuple": (lambda m, lv, seed=None: (sampling(m, lv, seed), m), "shape"),
    "numpy": (numpy_sampling, *on(tensorflow=("gradient", "outside keras.ops"), jax=("as fit runs it", "no NumPy"),
                                  torch=("as fit runs it", "no NumPy"))),
    "stop_gradient": (lambda m, lv, seed=None: ops.stop_gradient(sampling(m, lv, seed)), "gradient", "stop_gradient"),
    "sigma outside keras.ops": (lambda m, lv, seed=None: m + ops.convert_to_tensor(np.exp(0.5 * ops.convert_to_numpy(lv)))
                                * normal(m, seed), *on(tensorflow=("no gradient reaches z_log_var",),
                                                       jax=("as fit runs it", "no NumPy"),
                                                       torch=("no gradient reaches z_log_var",))),
    "stub": (stub, "returned None: write the body (replace the `...`)"),
    "raises": (raises, "raised ValueError", "boom"),
}


def test_sampling_passes_and_prints_one_line(capsys):
    checks.check_sampling(sampling)
    assert "gradients reach z_mean and z_log_var" in check_line(capsys)


def test_sampling_without_a_seed_passes_where_fit_allows_it_and_is_named_on_jax(capsys):
    """keras.random.normal without a seed runs inside fit on TensorFlow and PyTorch, but not in JAX's compiled step."""
    def sample(z_mean, z_log_var):
        return z_mean + ops.exp(0.5 * z_log_var) * keras.random.normal(ops.shape(z_mean))

    if BACKEND == "jax":
        fails(checks.check_sampling, sample, "without a seed", "seed=seed", "SeedGenerator")
    else:
        checks.check_sampling(sample)
        check_line(capsys)


@TENSORFLOW_ONLY
def test_sampling_with_tf_random_normal_passes(capsys):
    checks.check_sampling(lambda m, lv: m + tf.exp(0.5 * lv) * tf.random.normal(tf.shape(m)))
    check_line(capsys)


@TENSORFLOW_ONLY
def test_an_exception_is_chained_not_shown():
    with pytest.raises(checks.CheckFailed) as caught:
        checks.check_sampling(lambda m, lv: tf.matmul(m, lv))  # incompatible shapes: a deep TF error
    assert "raised InvalidArgumentError" in str(caught.value)
    assert isinstance(caught.value.__cause__, tf.errors.InvalidArgumentError)


# 2. KL divergence ---------------------------------------------------------------------------

def kl_terms(m, lv):
    return ops.exp(lv) + ops.square(m) - 1 - lv


def zeroing_kl(m, lv):
    """Tries to change what the check compares against (issue 18: module constants could be zeroed)."""
    for attribute in ("KL_MEAN", "KL_LOG_VAR", "SAMPLING_MEAN"):
        setattr(checks, attribute, np.zeros((6, 3), np.float32))
    return ops.zeros((6,))


def counting_kl():
    calls = []

    def kl(m, lv):
        calls.append(1)
        return kl_divergence(m, lv) * len(calls)
    return kl


WRONG_KL = {
    "sign": (lambda m, lv: -kl_divergence(m, lv), "wrong sign"),
    "no half": (lambda m, lv: 2 * kl_divergence(m, lv), "1/2"),
    "sign and no half": (lambda m, lv: ops.sum(1 + lv - m**2 - ops.exp(lv), axis=-1), "wrong sign", "1/2"),
    "mean over dims": (lambda m, lv: 0.5 * ops.mean(kl_terms(m, lv), axis=-1), "sum over the latent"),
    "book's mean with 1/2 missing": (lambda m, lv: ops.mean(kl_terms(m, lv), axis=-1), "sum over the latent", "1/2"),
    "log-sigma": (lambda m, lv: kl_divergence(m, 2 * lv), "log-sigma", "book"),
    "no minus one": (lambda m, lv: 0.5 * ops.sum(ops.exp(lv) + m**2 - lv, axis=-1), "-1"),
    "batch mean": (lambda m, lv: ops.mean(kl_divergence(m, lv)), "mean over the batch", "shape (6,)"),
    "batch mean, shape (1,)": (lambda m, lv: ops.reshape(ops.mean(kl_divergence(m, lv)), (1,)), "mean over the batch"),
    "batch sum": (lambda m, lv: ops.sum(kl_divergence(m, lv)), "summed over the batch"),
    "batch mean and sign": (lambda m, lv: -ops.mean(kl_divergence(m, lv)), "mean over the batch", "wrong sign"),
    "not summed": (lambda m, lv: 0.5 * kl_terms(m, lv), "shape (6, 3)", "one value per example"),
    "keepdims": (lambda m, lv: 0.5 * ops.sum(kl_terms(m, lv), axis=-1, keepdims=True), "shape (6, 1)"),
    "something else": (lambda m, lv: ops.sum(m**2, axis=-1), "0.5 is expected", "for example 1"),
    "computed in NumPy": (lambda m, lv: ops.convert_to_tensor(0.5 * np.sum(np.exp(lv) + m**2 - 1 - lv, axis=-1)),
                          *on(tensorflow=("as fit runs it", "no NumPy"), jax=("as fit runs it", "no NumPy"),
                              torch=("raised TypeError",))),  # NumPy hands torch tensors back to torch's own sum
    "NumPy result wrapped as a tensor": (lambda m, lv: ops.convert_to_tensor(ops.convert_to_numpy(kl_divergence(m, lv))),
                                         *on(tensorflow=("as fit runs it",), jax=("as fit runs it",),
                                             torch=("no gradient reaches z_mean",))),  # torch's conversion detaches
    "behind stop_gradient": (lambda m, lv: ops.stop_gradient(kl_divergence(m, lv)), "no gradient reaches z_mean"),
    "static batch size": (lambda m, lv: ops.reshape(kl_divergence(m, lv), (m.shape[0],)),
                          *on(tensorflow=("as fit runs it", "t.shape"), jax=(None,), torch=(None,))),
    "zeroes the check's old constants": (zeroing_kl, "0.5 is expected"),
    "keeps state between calls": (counting_kl(), "second time"),
    "stub": (stub, "returned None: write the body (replace the `...`)"),
    "raises": (raises, "raised ValueError"),
}


def test_kl_passes_and_says_what_was_verified(capsys):
    checks.check_kl_divergence(kl_divergence)
    assert check_line(capsys) == ("✓ kl_divergence: matches the closed form on 6 test cases, per example, "
                                  f"shape (6,), also {checks.PASSED_AS_FIT}, with the right gradients")


@TENSORFLOW_ONLY
@pytest.mark.parametrize("convert", [lambda t: t.numpy(), lambda t: t.numpy().tolist()], ids=["numpy", "list"])
def test_kl_as_numpy_arrays_or_lists_fails_where_fit_would(convert):
    """Right values eagerly, but .numpy() cannot run in fit's graph: the check says so, in one line."""
    message = fails(checks.check_kl_divergence, lambda m, lv: convert(kl_divergence(m, lv)),
                    "inside a compiled function", "no .numpy()")
    assert "in user code" not in message and "'SymbolicTensor' object has no attribute 'numpy'" in message


def test_kl_mistakes_do_not_mention_the_ones_not_made():
    message = fails(checks.check_kl_divergence, WRONG_KL["sign"][0], "wrong sign")
    assert "1/2" not in message.split(".")[0] and "batch" not in message


@pytest.mark.parametrize("variants", [
    checks._kl_variants(*checks._kl_inputs()),
    checks._bce_variants(*checks._recon_inputs()),
    checks._loss_layer_batch(11)[1],
], ids=["kl", "bce", "elbo"])
def test_every_recognised_mistake_gives_different_numbers(variants):
    """Otherwise a message could name the wrong mistake."""
    assert variants[0][0] == ()
    for (a, va), (b, vb) in itertools.combinations(variants, 2):
        assert not np.allclose(va, vb, rtol=1e-3), (a, b)


# 3. Reconstruction loss ---------------------------------------------------------------------

def summed(per_pixel):
    return lambda x, p: ops.sum(per_pixel(x, p), axis=(1, 2, 3))


WRONG_RECONSTRUCTION = {
    "keras mean over pixels": (lambda x, p: keras.losses.binary_crossentropy(ops.reshape(x, (4, -1)), ops.reshape(p, (4, -1))),
                               "mean over the 784 pixels", "keras.losses.binary_crossentropy"),
    "mean over pixels": (lambda x, p: ops.mean(pixel_bce(x, p), axis=(1, 2, 3)), "mean over the 784 pixels"),
    "sign": (lambda x, p: -reconstruction_loss(x, p), "wrong sign"),
    "batch sum": (lambda x, p: ops.sum(reconstruction_loss(x, p)), "summed over the batch"),
    "batch mean": (lambda x, p: ops.mean(reconstruction_loss(x, p)), "mean over the batch"),
    "swapped": (lambda x, p: reconstruction_loss(p, x), "swapped", "target x comes first"),
    "log base 2": (summed(lambda x, p: pixel_bce(x, p, ops.log2)), "log base 2"),
    "missing (1 - x) term": (summed(lambda x, p: -x * ops.log(p)), "(1 - x) * log(1 - x_decoded)"),
    "per pixel": (lambda x, p: keras.losses.binary_crossentropy(x, p), "one value per pixel"),
    "no clipping": (summed(lambda x, p: -(x * ops.log(p) + (1 - x) * ops.log(1 - p))), "inf or nan", "clip"),
    "clipping too wide": (summed(lambda x, p: -(x * ops.log(ops.clip(p, 0.01, 0.99))
                                                + (1 - x) * ops.log(ops.clip(1 - p, 0.01, 0.99)))), "perfect reconstruction"),
    "behind stop_gradient": (lambda x, p: ops.stop_gradient(reconstruction_loss(x, p)), "no gradient reaches x_decoded"),
    "stub": (stub, "returned None: write the body (replace the `...`)"),
    "raises": (raises, "raised ValueError"),
}


@pytest.mark.parametrize("fn", [reconstruction_loss, summed(pixel_bce)], ids=["keras", "by hand"])
def test_reconstruction_passes(fn, capsys):
    checks.check_reconstruction_loss(fn)
    assert "summed over the 784 pixels" in check_line(capsys)


# 4. The custom loss layer -------------------------------------------------------------------

def loss_layer(per_example=None, reduce=ops.mean, returns=lambda x, p, m, lv, loss: p, adds=None):
    """A VAE loss layer class built from parts, each of which a test can get wrong."""
    per_example = per_example or (lambda x, p, m, lv: reconstruction_loss(x, p) + kl_divergence(m, lv))
    adds = adds or (lambda loss, x, p, m, lv: [loss])

    class VAELossLayer(keras.layers.Layer):
        def call(self, x, x_decoded, z_mean, z_log_var):
            loss = reduce(per_example(x, x_decoded, z_mean, z_log_var))
            for term in adds(loss, x, x_decoded, z_mean, z_log_var):
                self.add_loss(term)
            return returns(x, x_decoded, z_mean, z_log_var, loss)
    return VAELossLayer


class CachingLossLayer(keras.layers.Layer):
    """Keeps the first call's loss: right once, wrong on the next batch."""

    def call(self, x, x_decoded, z_mean, z_log_var):
        if not hasattr(self, "cached"):
            self.cached = ops.mean(reconstruction_loss(x, x_decoded) + kl_divergence(z_mean, z_log_var))
        self.add_loss(self.cached)
        return x_decoded


class StubLossLayer(keras.layers.Layer):
    def call(self, x, x_decoded, z_mean, z_log_var):
        ...


class RaisingLossLayer(keras.layers.Layer):
    def call(self, x, x_decoded, z_mean, z_log_var):
        return ops.matmul(x, z_mean)


class NeedsArgumentLayer(keras.layers.Layer):
    def __init__(self, beta, **kwargs):
        super().__init__(**kwargs)


def recon_and_kl(loss, x, p, m, lv):
    return [ops.mean(reconstruction_loss(x, p)), ops.mean(kl_divergence(m, lv))]


def elbo_with(recon=reconstruction_loss, kl=kl_divergence):
    return lambda x, p, m, lv: recon(x, p) + kl(m, lv)


def book_per_example(x, p, m, lv):
    """The 1st edition's loss: per-pixel mean cross-entropy + 5e-4 * the mean KL bracket over latent dimensions."""
    return ops.mean(pixel_bce(x, p), axis=(1, 2, 3)) - 5e-4 * ops.mean(1 + lv - ops.square(m) - ops.exp(lv), axis=-1)


WRONG_LAYER = {
    "forgot add_loss": (loss_layer(adds=lambda *a: []), "added no loss", "self.add_loss"),
    "returned the loss": (loss_layer(adds=lambda *a: [], returns=lambda *a: a[-1]), "returned the loss instead"),
    "adds and returns the loss": (loss_layer(returns=lambda *a: a[-1]), "return x_decoded"),
    "returns z_mean": (loss_layer(returns=lambda x, p, m, lv, loss: m), "return x_decoded"),
    "forgot return": (loss_layer(returns=lambda *a: None), "returned None", "return x_decoded"),
    "summed over the batch": (loss_layer(reduce=ops.sum), "summed over the batch"),
    "per-pixel mean": (loss_layer(elbo_with(recon=lambda x, p: ops.mean(pixel_bce(x, p), axis=(1, 2, 3)))),
                       "mean over the 784 pixels"),
    "KL missing": (loss_layer(lambda x, p, m, lv: reconstruction_loss(x, p)), "leaves out the KL"),
    "KL sign": (loss_layer(elbo_with(kl=lambda m, lv: -kl_divergence(m, lv))), "wrong sign"),
    "KL without 1/2": (loss_layer(elbo_with(kl=lambda m, lv: 2 * kl_divergence(m, lv))), "1/2"),
    "KL log-sigma": (loss_layer(elbo_with(kl=lambda m, lv: kl_divergence(m, 2 * lv))), "log-sigma"),
    "per-example loss": (loss_layer(reduce=lambda v: v), "not one number", "keras.ops.mean"),
    "two terms, one wrong": (loss_layer(adds=lambda *a: [recon_and_kl(*a)[0], -recon_and_kl(*a)[1]]),
                             "sum of the two losses you added", "wrong sign"),
    "three terms": (loss_layer(adds=lambda *a: recon_and_kl(*a) + [ops.zeros(())]), "added 3 losses"),
    "cached loss": (CachingLossLayer, "the loss is", "expected"),
    "stub": (StubLossLayer, "returned None: write the body (replace the `...`)"),
    "raises": (RaisingLossLayer, "raised", "layer(x, x_decoded, z_mean, z_log_var)"),
    "needs an argument": (NeedsArgumentLayer, "raised TypeError", "no arguments"),
    "an instance": (loss_layer()(), "pass the layer class itself"),
    "loss behind stop_gradient": (loss_layer(reduce=lambda v: ops.stop_gradient(ops.mean(v))), "no gradient flows"),
    "the book's whole loss": (loss_layer(book_per_example), "1st edition's loss", "Sum the cross-entropy"),
    "KL averaged over latent dimensions": (loss_layer(elbo_with(kl=lambda m, lv: ops.mean(kl_terms(m, lv), axis=-1) / 2)),
                                           "averages the KL"),
}


@pytest.mark.parametrize("layer_class, count", [(loss_layer(), "one loss"),
                                                (loss_layer(adds=recon_and_kl), "two losses")], ids=["one", "two"])
def test_loss_layer_passes(layer_class, count, capsys):
    checks.check_vae_loss_layer(layer_class)
    assert count in check_line(capsys)


def test_keras_replaces_a_layers_losses_on_each_call():
    """What the check relies on: in Keras 3 a layer's losses are cleared when it is called again."""
    layer = loss_layer()()
    for _ in range(2):
        layer(*(ops.convert_to_tensor(v) for v in checks._loss_layer_batch(11)[0]))
        assert len(layer.losses) == 1


# 5. train_step ------------------------------------------------------------------------------

class VAE(keras.Model):
    """The keras.io pattern; the class attributes are the parts a test can get wrong."""

    per_example = staticmethod(elbo_with())
    reduce = staticmethod(ops.mean)
    sample = staticmethod(sampling)
    sign = 1.0

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def weights_to_train(self):
        return self.trainable_weights

    def train_step(self, data):  # with fit(x), Keras 3 passes x itself
        with tf.GradientTape() as tape:
            z_mean, z_log_var = self.encoder(data)
            x_decoded = self.decoder(self.sample(z_mean, z_log_var))
            loss = self.reduce(self.per_example(data, x_decoded, z_mean, z_log_var))
            objective = self.sign * self.objective(loss, data, x_decoded, z_mean, z_log_var)
        weights = self.weights_to_train()
        self.apply(tape.gradient(objective, weights), weights)
        return self.report(loss)

    def apply(self, grads, weights):
        self.optimizer.apply_gradients(zip(grads, weights))

    def objective(self, loss, *args):
        return loss

    def report(self, loss):
        return {"loss": loss}


class ComputeLossVAE(keras.Model):
    """The route that runs on every backend (the book's 3rd edition): call() plus compute_loss(), Keras' own train_step,
    the noise drawn with the model's own SeedGenerator. The class attributes are the parts a test can get wrong."""

    per_example = staticmethod(elbo_with())
    reduce = staticmethod(ops.mean)
    sample = staticmethod(sampling)

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.seed_generator = keras.random.SeedGenerator(0)

    def call(self, x, training=False):
        z_mean, z_log_var = self.encoder(x)
        return self.decoder(self.sample(z_mean, z_log_var, self.seed_generator)), z_mean, z_log_var

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        x_decoded, z_mean, z_log_var = y_pred
        return self.reduce(self.per_example(x, x_decoded, z_mean, z_log_var))


def compute_loss_vae(**parts):
    return type("VAE", (ComputeLossVAE,), {k: staticmethod(v) for k, v in parts.items()})


class TrackedVAE(ComputeLossVAE):
    """ComputeLossVAE with notebook 3's two trackers; ``track(recon, kl)`` says what each is given (None: nothing)."""

    track = staticmethod(lambda recon, kl: (recon, kl))

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        x_decoded, z_mean, z_log_var = y_pred
        recon, kl = reconstruction_loss(x, x_decoded), kl_divergence(z_mean, z_log_var)
        for tracker, value in zip((self.reconstruction_tracker, self.kl_tracker), self.track(recon, kl)):
            if value is not None:
                tracker.update_state(value)
        return ops.mean(recon + kl)


class LossOnTargetsVAE(ComputeLossVAE):
    """The PyTorch habit loss(x_hat, y): fit(x) passes no targets, so y is None."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        x_decoded, z_mean, z_log_var = y_pred
        return self.reduce(self.per_example(y, x_decoded, z_mean, z_log_var))


def loss_only_train_step(self, x):
    """A TensorFlow train_step that reports the loss alone, whatever trackers the model has."""
    with tf.GradientTape() as tape:
        loss = self.compute_loss(x=x, y_pred=self(x, training=True))
    self.optimizer.apply_gradients(zip(tape.gradient(loss, self.trainable_weights), self.trainable_weights))
    return {"loss": loss}


def tracked_vae(track):
    return type("VAE", (TrackedVAE,), {"track": staticmethod(track)})


class MeanInLayer(keras.layers.Layer):
    """Updates a metric inside call, as the package's loss layer once did: fit cannot run it on JAX."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tracker = keras.metrics.Mean(name="z_mean_mean")

    def call(self, z_mean):
        self.tracker.update_state(z_mean)
        return z_mean


class MetricInLayerVAE(ComputeLossVAE):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        self.watch = MeanInLayer()

    def call(self, x, training=False):
        z_mean, z_log_var = self.encoder(x)
        z_mean = self.watch(z_mean)
        return self.decoder(sampling(z_mean, z_log_var, self.seed_generator)), z_mean, z_log_var


def vae(**parts):
    return type("VAE", (VAE,), {k: staticmethod(v) if callable(v) else v for k, v in parts.items()})


class StubVAE(ComputeLossVAE):
    def train_step(self, data):  # an unfilled cell of the learner notebook
        ...


class StubInitVAE(VAE):
    def __init__(self, encoder, decoder, **kwargs):
        ...


class NoOverrideVAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)


def numpy_noise(m, lv):
    return m.numpy() + np.exp(0.5 * lv.numpy()) * np.random.normal(size=m.shape)


class OutsideTapeVAE(VAE):
    """The loss is computed after the tape block has closed."""

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var = self.encoder(data)
        x_decoded = self.decoder(sampling(z_mean, z_log_var))
        loss = ops.mean(reconstruction_loss(data, x_decoded) + kl_divergence(z_mean, z_log_var))
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return {"loss": loss}


def apply_twice(self, grads, weights):
    self.optimizer.apply_gradients(zip(grads, weights))
    self.optimizer.apply_gradients(zip(grads, weights))


# Slips in the loss itself: the same whichever route (train_step or compute_loss) computes it.
LOSS_SLIPS = {
    "summed over the batch": ({"reduce": ops.sum}, "summed over the batch"),
    "per-pixel mean": ({"per_example": elbo_with(recon=lambda x, p: ops.mean(pixel_bce(x, p), axis=(1, 2, 3)))},
                       "mean over the 784 pixels"),
    "KL missing": ({"per_example": lambda x, p, m, lv: reconstruction_loss(x, p)}, "leaves out the KL"),
    "KL sign": ({"per_example": elbo_with(kl=lambda m, lv: -kl_divergence(m, lv))}, "wrong sign"),
    "KL halved a second time": ({"per_example": elbo_with(kl=lambda m, lv: 0.5 * kl_divergence(m, lv))},
                                "1/2 is applied twice"),
    "the book's beta": ({"per_example": elbo_with(kl=lambda m, lv: 0.392 * kl_divergence(m, lv))}, "0.784"),
    "the book's whole loss": ({"per_example": book_per_example}, "1st edition's loss"),
}


def with_loss_slips(build):
    """LOSS_SLIPS as catalogue entries, each model class made by ``build(**parts)``."""
    return {name: (build(**parts), *phrases) for name, (parts, *phrases) in LOSS_SLIPS.items()}


WRONG_TRAIN_STEP = {
    **with_loss_slips(vae),
    "no 'loss' key": (vae(report=lambda loss: {"total_loss": loss}), "'loss' entry", "total_loss"),
    "returns the loss tensor": (vae(report=lambda loss: loss), "returned a tensor, not a dict", "m.result()"),
    "per-example loss reported": (vae(report=lambda loss: {"loss": loss * ops.ones((checks.BATCH,))}), "not one number"),
    "no apply_gradients": (type("VAE", (VAE,), {"apply": lambda self, grads, weights: None}), "no weight changed", "apply_gradients"),
    "gradient ascent": (vae(sign=-1.0), "gradient ascent"),
    "gradient of the batch sum": (vae(objective=lambda loss, x, p, m, lv: ops.sum(elbo_with()(x, p, m, lv))),
                                  "batch size", "summed over the batch"),
    "stop_gradient on z": (vae(sample=lambda m, lv: tf.stop_gradient(sampling(m, lv))), "flow back through z"),
    "encoder frozen": (type("VAE", (VAE,), {"weights_to_train": lambda self: self.decoder.trainable_weights}),
                       "encoder's weights did not move", "gradients do not reach"),
    "decoder frozen": (type("VAE", (VAE,), {"weights_to_train": lambda self: self.encoder.trainable_weights}),
                       "decoder's weights did not move"),
    ".numpy() in the graph": (vae(sample=numpy_noise), "fit raised", "NumPy"),
    "never samples": (vae(sample=lambda m, lv: m), "never samples", "z = z_mean"),
    "the book's sigma": (vae(sample=lambda m, lv: m + ops.exp(lv) * keras.random.normal(ops.shape(m))), "book's convention"),
    "frozen NumPy noise": (vae(sample=lambda m, lv: m + ops.exp(0.5 * lv) * np.random.normal(size=(checks.BATCH, 2)).astype("float32")),
                           "same noise in two steps", "frozen"),
    "fixed seed": (vae(sample=lambda m, lv: m + ops.exp(0.5 * lv) * keras.random.normal(ops.shape(m), seed=42)),
                   "same noise in two steps", "seed"),
    "one draw for the batch": (vae(sample=lambda m, lv: m + ops.exp(0.5 * lv) * keras.random.normal((1, 2))), "whole batch"),
    "loss outside the tape": (OutsideTapeVAE, "GradientTape", "inside"),
    "gradients applied twice": (type("VAE", (VAE,), {"apply": apply_twice}), "twice", "once"),
    "hand-written SGD step": (type("VAE", (VAE,), {"apply": lambda self, grads, weights: [
        w.assign_sub(0.01 * g) for g, w in zip(grads, weights)]}), "0.01 times the gradient", "self.optimizer"),
    "weights and gradients swapped in zip": (type("VAE", (VAE,), {"apply": lambda self, grads, weights: (
        self.optimizer.apply_gradients(zip(weights, grads)))}), "gradients first"),
    "trackers not returned": (type("VAE", (TrackedVAE,), {"train_step": loss_only_train_step}),
                              "tracker named reconstruction_loss", "m.result()"),
    "KL averaged over latent dimensions": (vae(per_example=elbo_with(kl=lambda m, lv: kl_divergence(m, lv) / 2)),
                                           "averages the KL"),
    "KL reported but not differentiated": (vae(objective=lambda loss, x, p, m, lv: ops.mean(reconstruction_loss(x, p))),
                                           "reconstruction alone", "KL is missing"),
    "changes floatx": (vae(sample=lambda m, lv: (keras.config.set_floatx("float64"), sampling(m, lv))[1]),
                       "global settings"),
    "stub": (StubVAE, "train_step returned None: write the body (replace the `...`)"),
    "stub __init__": (StubInitVAE, "__init__", "replace the `...`"),
    "nothing overridden": (NoOverrideVAE, "overrides neither"),
}


def own_train_step(zero_grad=True, backward=True, apply=True, report_loss=True, new_state=True):
    """A train_step written for this backend around ComputeLossVAE's compute_loss, as notebook 03's learner writes it;
    each flag is a part a learner can leave out."""
    if BACKEND == "tensorflow":
        def train_step(self, x):
            with tf.GradientTape() as tape:
                loss = self.compute_loss(x=x, y_pred=self(x, training=True))
            if apply:
                self.optimizer.apply_gradients(zip(tape.gradient(loss, self.trainable_weights), self.trainable_weights))
            for metric in self.metrics:
                if metric.name == "loss" and report_loss:
                    metric.update_state(loss)
            return {metric.name: metric.result() for metric in self.metrics}
    elif BACKEND == "jax":
        import jax

        def train_step(self, state, x):
            trainable, non_trainable, optimizer_state, metrics_state = state

            def loss_and_updates(trainable, non_trainable, metrics_state):
                y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=True)
                loss, (_, non_trainable, metrics_state) = self.stateless_compute_loss(
                    trainable, non_trainable, metrics_state, x=x, y_pred=y_pred)
                return loss, (non_trainable, metrics_state)

            (loss, (non_trainable, metrics_state)), grads = jax.value_and_grad(loss_and_updates, has_aux=True)(
                trainable, non_trainable, metrics_state)
            new_trainable, optimizer_state = self.optimizer.stateless_apply(optimizer_state, grads, trainable)
            logs, updated = {}, []
            for metric in self.metrics:
                own = metrics_state[len(updated):len(updated) + len(metric.variables)]
                if metric.name == "loss" and report_loss:
                    own = metric.stateless_update_state(own, loss)
                logs[metric.name] = metric.stateless_result(own)
                updated += own
            return logs, (new_trainable if apply else trainable, non_trainable if new_state else state[1], optimizer_state,
                          updated)
    else:
        import torch

        def train_step(self, x):
            if zero_grad:
                self.zero_grad()
            loss = self.compute_loss(x=x, y_pred=self(x, training=True))
            if backward:
                loss.backward()
            if apply:
                with torch.no_grad():
                    self.optimizer.apply([w.value.grad for w in self.trainable_weights], self.trainable_weights)
            for metric in self.metrics:
                if metric.name == "loss" and report_loss:
                    metric.update_state(loss)
            return {metric.name: metric.result() for metric in self.metrics}
    return type("TrainStepVAE", (ComputeLossVAE,), {"train_step": train_step})


# The train_step each backend's learner writes in notebook 03, and what each leaves out.
WRONG_OWN_TRAIN_STEP = {
    "weights not updated": (own_train_step(apply=False), "no weight changed",
                            on(tensorflow="apply_gradients", jax="stateless_apply", torch="optimizer.apply")),
    "'loss' tracker not updated": (own_train_step(report_loss=False), "loss of exactly 0", "'loss'"),
}
if BACKEND == "jax":
    WRONG_OWN_TRAIN_STEP["the state it was given returned"] = (own_train_step(new_state=False), "non-trainable state",
                                                               "stateless_call", "noise repeats")
if BACKEND == "torch":
    WRONG_OWN_TRAIN_STEP.update({
        "no zero_grad": (own_train_step(zero_grad=False), "accumulate", "self.zero_grad()"),
        "no backward": (own_train_step(backward=False), "loss.backward()"),
    })


@pytest.mark.parametrize("model_class", [pytest.param(VAE, marks=TENSORFLOW_ONLY), ComputeLossVAE, own_train_step(),
                                         TrackedVAE], ids=["GradientTape", "compute_loss", "own train_step", "trackers"])
def test_train_step_passes(model_class, capsys):
    checks.check_train_step(model_class)
    assert "mean negative ELBO" in check_line(capsys)


@pytest.mark.parametrize("model_class, phrases", [(v[0], v[1:]) for v in WRONG_OWN_TRAIN_STEP.values()],
                         ids=WRONG_OWN_TRAIN_STEP)
def test_own_train_step_mistakes_are_named(model_class, phrases):
    fails(checks.check_train_step, model_class, *phrases)


class HandsOverVAE(ComputeLossVAE):
    def train_step(self, *args):  # the exercise left to Keras
        return super().train_step(*args)


def test_the_train_step_exercise_must_write_its_own_step(capsys):
    """own_train_step=True: a class that inherits Keras' step, or hands over to it, has not done the exercise."""
    checks.check_train_step(own_train_step(), own_train_step=True)
    assert "mean negative ELBO" in check_line(capsys)
    for lazy in (type("TrainStepVAE", (ComputeLossVAE,), {}), HandsOverVAE):
        checks.check_train_step(lazy)  # a right step: it passes where the exercise is not asked for
        check_line(capsys)
        fails(lambda c: checks.check_train_step(c, own_train_step=True), lazy, "no train_step of its own", "Keras'")


def unseeded(m, lv, seed=None):
    return sampling(m, lv)  # the model's generator is not passed on


# compute_loss with Keras' own train_step: the same code on every backend, so the same mistakes everywhere.
WRONG_COMPUTE_LOSS = {
    **with_loss_slips(compute_loss_vae),
    "never samples": (compute_loss_vae(sample=lambda m, lv, seed: m), "never samples", "z = z_mean"),
    "the book's sigma": (compute_loss_vae(sample=lambda m, lv, seed: m + ops.exp(lv) * normal(m, seed)), "book's convention"),
    "fixed seed": (compute_loss_vae(sample=lambda m, lv, seed: m + ops.exp(0.5 * lv) * normal(m, 42)),
                   "same noise in two steps", "seed"),
    "one draw for the batch": (compute_loss_vae(sample=lambda m, lv, seed: m + ops.exp(0.5 * lv) * keras.random.normal(
        (1, 2), seed=seed)), "whole batch"),
    "stop_gradient on z": (compute_loss_vae(sample=lambda m, lv, seed: ops.stop_gradient(sampling(m, lv, seed))),
                           "flow back through z"),
    # A model with a self.seed_generator that draws elsewhere: right in law, but its run cannot repeat, nor take
    # the package model's noise (training.epoch_feed), so check_my_vae's comparison would be left to chance.
    "no seed": (compute_loss_vae(sample=unseeded),
                *on(tensorflow=("draws its noise elsewhere", "seed=self.seed_generator"),
                    jax=("without a seed", "SeedGenerator()"),
                    torch=("draws its noise elsewhere", "seed=self.seed_generator"))),
    "noise shared by the latent dimensions": (compute_loss_vae(sample=lambda m, lv, seed: m + ops.exp(0.5 * lv) * keras.random.normal(
        (ops.shape(m)[0], 1), seed=seed)), "latent dimensions of an example the same noise", "(batch, 1)"),
    "truncated normal noise": (compute_loss_vae(sample=lambda m, lv, seed: m + ops.exp(0.5 * lv) * keras.random.truncated_normal(
        ops.shape(m), seed=seed)), "the noise in z", "truncated_normal"),
    "truncated normal noise rescaled to unit variance": (compute_loss_vae(sample=lambda m, lv, seed: m + ops.exp(0.5 * lv) * (
        keras.random.truncated_normal(ops.shape(m), seed=seed) / 0.8796)), "not normal", "beyond 2.4"),
    "uniform noise of unit variance": (compute_loss_vae(sample=lambda m, lv, seed: m + ops.exp(0.5 * lv) * keras.random.uniform(
        ops.shape(m), -3**0.5, 3**0.5, seed=seed)), "not normal", "kurtosis"),
    "noise of standard deviation 1.3": (compute_loss_vae(sample=lambda m, lv, seed: m + ops.exp(0.5 * lv) * keras.random.normal(
        ops.shape(m), stddev=1.3, seed=seed)), "standard deviation", "1.3"),
    "noise of standard deviation 0.01": (compute_loss_vae(sample=lambda m, lv, seed: m + ops.exp(0.5 * lv) * keras.random.normal(
        ops.shape(m), stddev=0.01, seed=seed)), "standard deviation of about", "stddev"),
    "a loss divided by a batch size of 64": (compute_loss_vae(reduce=lambda v: ops.sum(v) / 64.0), "the loss is", "expected"),
    "trackers swapped": (tracked_vae(lambda recon, kl: (kl, recon)), "reports reconstruction_loss", "swapped"),
    "KL tracker given the whole loss": (tracked_vae(lambda recon, kl: (recon, recon + kl)), "reports kl_loss",
                                        "whole loss"),
    "trackers never updated": (tracked_vae(lambda recon, kl: (None, None)), "never updated", "update_state"),
    "the loss computed on y": (LossOnTargetsVAE, "y, which is None", "use x"),
    "a new SeedGenerator at every call": (compute_loss_vae(sample=lambda m, lv, seed: sampling(m, lv, keras.random.SeedGenerator(0))),
                                          *on(tensorflow=("creates a variable at every call", "__init__"),
                                              jax=("same noise in two steps",), torch=("same noise in two steps",))),
    "metric updated in a layer's call": (MetricInLayerVAE, *on(tensorflow=(None,), jax=("compute_loss", "not in a layer's call"),
                                                               torch=(None,))),
}


@TENSORFLOW_ONLY
def test_fit_passes_x_itself_to_train_step():
    """What the test models rely on: Keras 3's fit(x) hands train_step the batch of x, not a tuple."""
    seen = []

    class Probe(keras.Model):
        def train_step(self, data):
            seen.append(data)
            return {"loss": 0.0}

    model = Probe()
    model.compile(optimizer="sgd")
    model.fit(np.zeros((4, 3), np.float32), batch_size=4, verbose=0)
    assert ops.is_tensor(seen[0]) and tuple(seen[0].shape) == (4, 3)


@TENSORFLOW_ONLY
def test_fit_history_ignores_a_lone_loss_returned_by_train_step():
    """Why check_train_step reads the step's own logs: when train_step returns only {"loss": ...}, Keras 3
    reports its untouched built-in loss tracker (0.0) at the end of the epoch instead."""
    class LoneLoss(keras.Model):
        def train_step(self, data):
            return {"loss": ops.sum(data) + 5.0}

    model = LoneLoss()
    model.compile(optimizer="sgd")
    assert model.fit(np.zeros((4, 3), np.float32), batch_size=4, verbose=0).history["loss"] == [0.0]


@pytest.mark.parametrize("check, code", [
    pytest.param(checks.check_sampling, lambda m, lv: PACKAGE_SAMPLING([m, lv]), marks=TENSORFLOW_ONLY),
    (checks.check_sampling, lambda m, lv, seed: losses.posterior_std(lv) * keras.random.normal(ops.shape(m), seed=seed) + m),
    (checks.check_kl_divergence, losses.kl_divergence),
    (checks.check_reconstruction_loss, losses.reconstruction_loss),
    (checks.check_vae_loss_layer, losses.VAELoss),
    (checks.check_train_step, models.VAE),  # the add_loss route: a loss layer inside call()
], ids=["sampling layer", "sampling", "kl", "reconstruction", "loss layer", "VAE"])
def test_the_packages_own_implementations_pass(check, code, capsys):
    """The checks' independent references agree with vae_helpers.losses and models."""
    check(code)
    check_line(capsys)


def test_check_number_passes_within_tolerance_and_says_how_far_off(capsys):
    checks.check_number("the answer", np.float32(2.3), expected=2.30259, tolerance=0.01)
    assert capsys.readouterr().out.startswith("✓ the answer: 2.3")
    with pytest.raises(checks.CheckFailed, match="2.4 is not within 0.01 of the expected value. Use ln"):
        checks.check_number("the answer", 2.4, expected=2.30259, tolerance=0.01, hint="Use ln, not log10.")
    with pytest.raises(checks.CheckFailed, match="replace the `...`"):
        checks.check_number("the answer", ..., expected=1.0, tolerance=0.1)
    with pytest.raises(checks.CheckFailed, match="expected one number"):
        checks.check_number("the answer", [1.0, 2.0], expected=1.0, tolerance=0.1)


PACKAGE_SAMPLING = models.Sampling(seed=0)  # one layer: its seed generator moves on at every call


MISTAKES = [pytest.param(check, entry[0], entry[1:], id=f"{label}: {name}",
                         marks=[TENSORFLOW_ONLY] if table is WRONG_TRAIN_STEP else [])
            for check, label, table in (
                (checks.check_sampling, "check_sampling", WRONG_SAMPLING),
                (checks.check_kl_divergence, "check_kl_divergence", WRONG_KL),
                (checks.check_reconstruction_loss, "check_reconstruction_loss", WRONG_RECONSTRUCTION),
                (checks.check_vae_loss_layer, "check_vae_loss_layer", WRONG_LAYER),
                (checks.check_train_step, "check_train_step (GradientTape)", WRONG_TRAIN_STEP),
                (checks.check_train_step, "check_train_step (compute_loss)", WRONG_COMPUTE_LOSS))
            for name, entry in table.items()]


def fails_or_passes(check, code, phrases, capsys):
    """``fails(check, code, *phrases)``; where the phrases are ``(None,)`` (fit accepts the code on this backend), the
    check must pass instead."""
    if phrases == (None,):
        check(code)
        check_line(capsys)
    else:
        fails(check, code, *phrases)


@pytest.mark.parametrize("check, code, phrases", MISTAKES)
def test_each_check_names_each_mistake(check, code, phrases, capsys):
    fails_or_passes(check, code, phrases, capsys)
    assert keras.config.floatx() == "float32", "a check must leave Keras' settings as they were"


def test_a_check_cannot_be_fooled_by_changing_the_module(capsys):
    """After an answer that rewrites module attributes, right answers still pass and zero answers still fail."""
    fails(checks.check_kl_divergence, zeroing_kl, "0.5 is expected")
    checks.check_kl_divergence(kl_divergence)
    check_line(capsys)
    fails(checks.check_kl_divergence, lambda m, lv: ops.zeros((6,)), "0.5 is expected")


def test_a_failure_renders_as_a_short_message_with_the_learners_line():
    def sample(z_mean, z_log_var, seed=None):
        return z_mean + ops.exp(z_log_var) * keras.random.normal(ops.shape(z_mean), seed=seed)  # the book's sigma

    with pytest.raises(checks.CheckFailed) as caught:
        checks.check_sampling(sample)
    shown = caught.value._render_traceback_()
    assert 2 <= len(shown) <= 8, shown
    assert "log-sigma" in shown[0] + shown[1] and "vae_helpers" not in "".join(shown)
    assert shown[-1].endswith("def sample(z_mean, z_log_var, seed=None):"), shown[-1]


def test_a_failing_check_shows_at_most_8_lines_in_a_kernel():
    """In Jupyter the learner sees the message and their own line, not a traceback through checks.py."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from vae_helpers import checks, keras\n"
        "def kl_divergence(z_mean, z_log_var):\n"
        "    return keras.ops.sum(keras.ops.exp(z_log_var) + z_mean**2 - 1 - z_log_var, axis=-1)\n"
        "checks.check_kl_divergence(kl_divergence)")])
    NotebookClient(notebook, timeout=300, allow_errors=True, kernel_name="python3").execute()
    error = next(out for out in notebook.cells[0].outputs if out.output_type == "error")
    shown = "\n".join(error.traceback).splitlines()
    assert error.ename == "CheckFailed" and len(shown) <= 8, shown
    text = "\n".join(shown)
    assert "missing the factor 1/2" in text and "vae_helpers" not in text and "raise" not in text
    assert "def kl_divergence(z_mean, z_log_var):" in shown[-1]


def trained(model, x, steps=None, epochs=1, seed=0):
    """``model`` compiled with Adam 1e-3 and trained like 03's cells: batch 16, from ``set_seed(seed)``."""
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = x if steps is None else x[: 16 * steps]
    model.fit(x, epochs=epochs, batch_size=16, shuffle=True, verbose=0)
    return model


@pytest.fixture(scope="module")
def loop_data(sample):
    """2,000 training digits (125 steps per epoch) and 500 validation digits from the bundled sample."""
    (x_train, _), _ = sample
    return x_train[:2000], x_train[2000:2500]


@pytest.fixture(scope="module")
def reference_vae(loop_data):
    """models.VAE trained by train_vae as notebook 3 trains vae: from set_seed(0), Adam 1e-3, batch 16, two epochs."""
    from vae_helpers import set_seed, training

    set_seed(0)
    reference = models.build_vae(2)
    reference.compile(optimizer=keras.optimizers.Adam(1e-3))
    training.train_vae(reference, loop_data[0], epochs=2, batch_size=16, seed=0, progress=None)
    return reference


def fed_like_the_reference(model, x, steps=None):
    """``model`` trained as notebook 3 trains MyVAE: Adam 1e-3, fit on epoch_feed's batches and noise for seed 0."""
    from vae_helpers import training

    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    feed = training.epoch_feed(x if steps is None else x[: 16 * steps], 16, seed=0)
    model.fit(feed.data, steps_per_epoch=feed.steps_per_epoch, epochs=2 if steps is None else 1, shuffle=False,
              verbose=0, callbacks=[feed.callback])
    return model


class OtherGeneratorVAE(ComputeLossVAE):
    """A right VAE whose generator is not called seed_generator: training.epoch_feed could not give it any noise."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(encoder, decoder, **kwargs)
        self.rng = self.seed_generator
        del self.seed_generator

    def call(self, x, training=False):
        z_mean, z_log_var = self.encoder(x)
        return self.decoder(self.sample(z_mean, z_log_var, self.rng)), z_mean, z_log_var


def test_check_my_vae_refuses_an_untrained_model_and_names_a_broken_class(reference_vae, loop_data):
    untrained = ComputeLossVAE(models.build_encoder(2), models.build_decoder(2))
    fails(lambda m: checks.check_my_vae(m, reference_vae, loop_data[1]), untrained, "not been trained")
    fails(lambda m: checks.check_my_vae(reference_vae, m, loop_data[1]), untrained, "reference", "not been trained")
    fails(lambda m: checks.check_my_vae(m, reference_vae, loop_data[1]), keras.Sequential([keras.Input((2,))]),
          "no encoder and decoder")
    broken = compute_loss_vae(sample=lambda m, lv, seed: m)(models.build_encoder(2), models.build_decoder(2))
    broken.compile(optimizer=keras.optimizers.SGD(1e-3))
    broken.fit(np.zeros((16, 28, 28, 1), np.float32), batch_size=16, verbose=0)
    fails(lambda m: checks.check_my_vae(m, reference_vae, loop_data[1]), broken, "one-step check", "never samples")
    fails(lambda m: checks.check_my_vae(m, reference_vae, loop_data[1]), trained(
        OtherGeneratorVAE(models.build_encoder(2), models.build_decoder(2)), loop_data[0], steps=1),
        "no self.seed_generator", "epoch_feed")
    wider = trained(ComputeLossVAE(models.build_encoder(3), models.build_decoder(3)), loop_data[0], steps=1)
    fails(lambda m: checks.check_my_vae(m, reference_vae, loop_data[1]), wider, "3 latent dimensions", "same size")


def test_check_my_vae_passes_a_right_model_trained_alike_and_fails_one_trained_less(reference_vae, loop_data,
                                                                                   capsys):
    """From the reference's first weights, on the same batches and noise: a right model ends within rounding of it
    and passes. One step of training: far below, and said so."""
    from vae_helpers import set_seed

    set_seed(0)
    mine = fed_like_the_reference(ComputeLossVAE(models.build_encoder(2), models.build_decoder(2)), loop_data[0])
    checks.check_my_vae(mine, reference_vae, loop_data[1], seed=0)
    line = check_line(capsys)
    assert "validation ELBO" in line and "models.VAE" in line, line
    scores = [float(v) for v in __import__("re").findall(r"ELBO (-?[\d.]+) nats against (-?[\d.]+)", line)[0]]
    assert abs(scores[0] - scores[1]) < 0.5, line
    set_seed(0)
    barely = fed_like_the_reference(ComputeLossVAE(models.build_encoder(2), models.build_decoder(2)), loop_data[0],
                                    steps=1)
    message = fails(lambda m: checks.check_my_vae(m, reference_vae, loop_data[1], seed=0), barely, "validation ELBO")
    gap = [float(v) for v in __import__("re").findall(r"ELBO (-?[\d.]+) nats against (-?[\d.]+)", message)[0]]
    assert gap[0] < gap[1] - checks.MY_VAE_TOLERANCE, message


# Exercise 3 of notebook 3: active units ------------------------------------------------------

@pytest.fixture(scope="module")
def activity(reference_vae, loop_data):
    """The posterior means and log-variances of 500 digits under a trained model, and its true variances."""
    from vae_helpers import latent

    x = loop_data[1]
    z_mean, z_log_var = (np.asarray(a, np.float64) for a in latent.encode(reference_vae, x, return_log_var=True))
    return reference_vae, x, z_mean, z_log_var


def test_active_units_passes_the_variances_of_the_posterior_means(activity, capsys):
    model, x, z_mean, _ = activity
    variances = ((z_mean - z_mean.mean(axis=0)) ** 2).mean(axis=0)  # by hand, not np.var
    count = int(sum(v > 0.01 for v in variances))
    checks.check_active_units(variances, count, model, x)
    assert f"{count} of 2 dimensions are active on these 500 digits" in check_line(capsys)
    checks.check_active_units(ops.convert_to_tensor(variances.astype("float32")), np.int64(count), model, x)
    check_line(capsys)


def test_active_units_names_each_mistake(activity):
    model, x, z_mean, z_log_var = activity
    right = z_mean.var(axis=0)
    count = int(np.sum(right > 0.01))
    check = lambda v, c=count: checks.check_active_units(v, c, model, x)  # noqa: E731
    fails(lambda v: check(v), ..., "no answer yet")
    fails(lambda v: check(v), z_log_var.var(axis=0), "z_log_var", "posterior *mean*")
    fails(lambda v: check(v), z_mean.std(axis=0), "standard deviations")
    fails(lambda v: check(v), np.exp(z_log_var).mean(axis=0), "posterior variances exp(z_log_var)")
    fails(lambda v: check(v), z_mean.var(axis=1), "one variance per digit", "axis=0")
    fails(lambda v: check(v), right[:1], "not the variances")
    for wrong in (str(count), count + 0.5, [count], True, None):
        fails(lambda c: check(right, c), wrong, "count")
    fails(lambda c: check(right, c), str(count), "one whole number")
    fails(lambda c: check(right, c), count + 1, f"{count} of 2")
    fails(lambda v: check(v), np.sort(right)[::-1] if right[0] < right[1] else np.sort(right), "another order")
    fails(lambda v: check(v), dict(enumerate(right)), "one per latent dimension")


def test_active_units_accepts_the_unbiased_variance_on_few_digits(activity, capsys):
    """ddof=1 (torch's and pandas' default) differs by n/(n-1): 0.2 % on these 500 digits, beyond rtol 1e-3."""
    model, x, z_mean, _ = activity
    unbiased = np.var(z_mean, axis=0, ddof=1)
    assert not np.allclose(unbiased, z_mean.var(axis=0), rtol=1e-3)
    checks.check_active_units(unbiased, int(np.sum(unbiased > 0.01)), model, x)
    check_line(capsys)


def test_active_units_names_the_inactive_count_and_the_square_root_slip(activity):
    """Thresholds chosen on this model so that each slip gives a count of its own."""
    model, x, z_mean, _ = activity
    right = z_mean.var(axis=0)
    low, high = np.sort(right)
    check = lambda c, t: checks.check_active_units(right, c, model, x, threshold=t)  # noqa: E731
    fails(lambda c: check(c, low / 2), 0, "0 is not", "2 of 2", "*inactive*")
    assert low < 1, right  # so that sqrt(low) > low and a threshold fits between them
    between = float((low + np.sqrt(low)) / 2)
    assert high > between, right
    fails(lambda c: check(c, between), 2, "1 of 2", "square roots")


# Exercise 4 of notebook 3: log-mean-exp by hand ------------------------------------------------

def log_mean_exp(log_w):
    top = np.max(log_w, axis=0)
    return top + np.log(np.mean(np.exp(log_w - top), axis=0))


def shift_in_place(log_w):
    top = log_w.max(axis=0)
    log_w -= top
    return top + np.log(np.exp(log_w).mean(axis=0))


RIGHT_LOG_MEAN_EXP = {
    "by hand": log_mean_exp,
    "scipy": lambda w: __import__("scipy.special", fromlist=["logsumexp"]).logsumexp(w, axis=0) - np.log(len(w)),
    "keras.ops, float32": lambda w: ops.logsumexp(ops.convert_to_tensor(w, "float32"), axis=0) - np.log(w.shape[0]),
}

WRONG_LOG_MEAN_EXP = {
    "naive exp": (lambda w: np.log(np.mean(np.exp(w), axis=0)), "inf or nan", "largest log-weight"),
    "mean of logs": (lambda w: w.mean(axis=0), "mean of the log-weights", "ELBO"),
    "no -log k": (lambda w: log_mean_exp(w) + np.log(len(w)), "too high by log k"),
    "max only": (lambda w: w.max(axis=0), "largest log-weight alone"),
    "wrong axis": (lambda w: log_mean_exp(w.T), "shape (6,)", "axis 0"),
    "one number": (lambda w: log_mean_exp(w).mean(), "shape ()", "one value per image"),
    "in place": (shift_in_place, "changed the array it was given"),
    "largest of the whole array": (lambda w: w.max() + np.log(np.mean(np.exp(w - w.max()), axis=0)),
                                   "nats apart", "axis 0, not over the whole array"),
    "largest of the whole array, float32": (
        lambda w: (lambda v: v.max() + np.log(np.mean(np.exp(v - v.max()), axis=0)))(w.astype("float32")), "inf or nan"),
    "smallest per image": (lambda w: w.min(0) + np.log(np.mean(np.exp(w - w.min(0)), axis=0)), "1,500 nats"),
    "mean per image": (lambda w: w.mean(0) + np.log(np.mean(np.exp(w - w.mean(0)), axis=0)), "1,500 nats"),
    "keepdims": (lambda w: log_mean_exp(w)[None, :], "shape (1, 5)", "keepdims"),
    "log k twice": (lambda w: log_mean_exp(w) - np.log(len(w)), "subtracts log k twice"),
    "stub": (stub, "returned None"),
    "raises": (raises, "raised ValueError", "boom"),
    "ellipsis": (lambda w: ..., "no answer yet"),
}


@pytest.mark.parametrize("fn", RIGHT_LOG_MEAN_EXP.values(), ids=RIGHT_LOG_MEAN_EXP)
def test_log_mean_exp_passes(fn, capsys):
    checks.check_log_mean_exp(fn)
    assert "no overflow" in check_line(capsys)


@pytest.mark.parametrize("fn, phrases", [(v[0], v[1:]) for v in WRONG_LOG_MEAN_EXP.values()], ids=WRONG_LOG_MEAN_EXP)
def test_log_mean_exp_names_each_mistake(fn, phrases):
    fails(checks.check_log_mean_exp, fn, *phrases)


# 8. Free bits (notebook 6) ----------------------------------------------------------------------

def kl_per_dimension(z_mean, z_log_var):
    return 0.5 * (ops.exp(z_log_var) + ops.square(z_mean) - 1 - z_log_var)


def free_bits_kl(z_mean, z_log_var, free_bits):
    return ops.sum(ops.maximum(free_bits, ops.mean(kl_per_dimension(z_mean, z_log_var), axis=0)))


def free_bits_where(z_mean, z_log_var, free_bits):
    kl = ops.mean(kl_per_dimension(z_mean, z_log_var), axis=0)
    return ops.sum(ops.where(kl > free_bits, kl, free_bits * ops.ones_like(kl)))


def free_bits_leaky(z_mean, z_log_var, free_bits):
    """Right values, but the floored dimensions still pass the KL's gradient (a straight-through floor)."""
    kl = ops.mean(kl_per_dimension(z_mean, z_log_var), axis=0)
    return ops.sum(ops.where(kl > free_bits, kl, free_bits + kl - ops.stop_gradient(kl)))


def free_bits_python_loop(z_mean, z_log_var, free_bits):
    kl = ops.mean(kl_per_dimension(z_mean, z_log_var), axis=0)
    total = 0.0
    for j in range(z_mean.shape[1]):
        total += kl[j] if kl[j] > free_bits else free_bits
    return total


def free_bits_from(kl_terms, reduce):
    return lambda z_mean, z_log_var, free_bits: reduce(kl_terms(z_mean, z_log_var), free_bits)


RIGHT_FREE_BITS = {
    "maximum": free_bits_kl,
    "where": free_bits_where,
    "clip": lambda m, lv, free_bits: ops.sum(ops.clip(ops.mean(kl_per_dimension(m, lv), axis=0), free_bits, 1e9)),
    "hinge, lower by a constant": lambda m, lv, free_bits: ops.sum(ops.relu(ops.mean(kl_per_dimension(m, lv), axis=0) - free_bits)),
}
if BACKEND == "tensorflow":
    RIGHT_FREE_BITS["tensorflow"] = lambda m, lv, free_bits: tf.reduce_sum(tf.maximum(free_bits, tf.reduce_mean(
        0.5 * (tf.exp(lv) + m ** 2 - 1 - lv), axis=0)))
WRONG_FREE_BITS = {
    "floor per example": (free_bits_from(kl_per_dimension, lambda k, fb: ops.mean(ops.sum(ops.maximum(fb, k), axis=1))),
                          "each example's KL"),
    "floor on the total": (free_bits_from(kl_per_dimension, lambda k, fb: ops.maximum(fb, ops.mean(ops.sum(k, axis=1)))),
                           "total KL"),
    "minimum": (free_bits_from(kl_per_dimension, lambda k, fb: ops.sum(ops.minimum(fb, ops.mean(k, axis=0)))),
                "minimum with free_bits"),
    "drops the floored dimensions": (free_bits_from(kl_per_dimension, lambda k, fb: ops.sum(ops.where(
        ops.mean(k, axis=0) > fb, ops.mean(k, axis=0), 0.0))), "drops the dimensions"),
    "no floor": (free_bits_from(kl_per_dimension, lambda k, fb: ops.sum(ops.mean(k, axis=0))), "floor free_bits is missing"),
    "mean over dimensions": (free_bits_from(kl_per_dimension, lambda k, fb: ops.mean(ops.maximum(fb, ops.mean(k, axis=0)))),
                             "averages over the latent dimensions"),
    "sum over the batch": (free_bits_from(kl_per_dimension, lambda k, fb: ops.sum(ops.maximum(fb, ops.sum(k, axis=0)))),
                           "sums over the batch"),
    "no 1/2": (free_bits_from(lambda m, lv: 2 * kl_per_dimension(m, lv),
                              lambda k, fb: ops.sum(ops.maximum(fb, ops.mean(k, axis=0)))), "1/2"),
    "log-sigma": (free_bits_from(lambda m, lv: kl_per_dimension(m, 2 * lv),
                                 lambda k, fb: ops.sum(ops.maximum(fb, ops.mean(k, axis=0)))), "log-sigma"),
    "fixed floor": (lambda m, lv, free_bits: free_bits_kl(m, lv, 1.0), "whatever free_bits", "ignores the argument"),
    "a global floor": (lambda m, lv, free_bits: free_bits_kl(m, lv, 1.5), "ignores the argument"),
    "negative KL": (free_bits_from(lambda m, lv: -kl_per_dimension(m, lv),
                                   lambda k, fb: ops.sum(ops.maximum(fb, ops.mean(k, axis=0)))), "wrong sign"),
    "floor on each example's total": (free_bits_from(kl_per_dimension, lambda k, fb: ops.mean(ops.maximum(
        fb, ops.sum(k, axis=1)))), "each example's total KL"),
    "hinge, floor per example": (free_bits_from(kl_per_dimension, lambda k, fb: ops.mean(ops.sum(
        ops.relu(k - fb), axis=1))), "each example's KL"),
    "hinge without 1/2": (free_bits_from(lambda m, lv: 2 * kl_per_dimension(m, lv),
                                         lambda k, fb: ops.sum(ops.relu(ops.mean(k, axis=0) - fb))), "1/2"),
    "float64 result": (lambda m, lv, free_bits: free_bits_kl(ops.cast(m, "float64"), ops.cast(lv, "float64"), free_bits),
                       *on(tensorflow=("float64", "float32"), jax=(None,), torch=(None,))),  # JAX computes in float32
    "renamed argument": (lambda m, lv, lam: free_bits_kl(m, lv, lam), "unexpected keyword argument 'free_bits'"),
    "python float": (lambda m, lv, free_bits: float(free_bits_kl(m, lv, free_bits)),
                     *on(tensorflow=("as fit runs it",), jax=("as fit runs it",), torch=("no gradient reaches",))),
    "python loop": (free_bits_python_loop, *on(tensorflow=("python if, for, max", "keras.ops.maximum"),
                                               jax=("python if, for, max", "keras.ops.maximum"), torch=(None,))),
    "max that reduces": (free_bits_from(kl_per_dimension, lambda k, fb: ops.sum(ops.max(ops.mean(k, axis=0), fb))),
                         "keras.ops.max reduces along an axis"),
    "per example": (free_bits_from(kl_per_dimension, lambda k, fb: ops.sum(ops.maximum(fb, k), axis=1)),
                    "one value per example"),
    "per dimension": (free_bits_from(kl_per_dimension, lambda k, fb: ops.maximum(fb, ops.mean(k, axis=0))),
                      "one value per latent dimension", "sum them"),
    "straight-through floor": (free_bits_leaky, "gradient still reaches", "below the floor"),
    "numpy": (lambda m, lv, free_bits: np.sum(np.maximum(free_bits, np.mean(np.asarray(kl_per_dimension(m, lv)), axis=0))),
              "as fit runs it", "no NumPy"),
    "frozen gradient": (lambda m, lv, free_bits: ops.stop_gradient(free_bits_kl(m, lv, free_bits)), "no gradient reaches"),
    "stub": (lambda z_mean, z_log_var, free_bits: None, "returned None"),
    "raises": (lambda z_mean, z_log_var, free_bits: raises(), "raised ValueError", "boom"),
}


@pytest.mark.parametrize("fn", RIGHT_FREE_BITS.values(), ids=RIGHT_FREE_BITS)
def test_free_bits_passes(fn, capsys):
    checks.check_free_bits(fn)
    line = check_line(capsys)
    assert "no gradient reaches the floored dimensions" in line
    assert ("a constant" in line) == (fn is RIGHT_FREE_BITS["hinge, lower by a constant"])


@pytest.mark.parametrize("fn, phrases", [(v[0], v[1:]) for v in WRONG_FREE_BITS.values()], ids=WRONG_FREE_BITS)
def test_free_bits_names_each_mistake(fn, phrases, capsys):
    fails_or_passes(checks.check_free_bits, fn, phrases, capsys)


def test_free_bits_inputs_straddle_the_floor():
    """The check's batch is only a test of the per-example and per-dimension slips if it has these properties."""
    z_mean, z_log_var = checks._free_bits_inputs()
    kl = 0.5 * (np.exp(z_log_var) + z_mean ** 2 - 1 - z_log_var)
    below, above = kl.mean(axis=0) < 1.0, kl.mean(axis=0) > 1.0
    assert list(below) == [True, True, False, False] and list(above) == [False, False, True, True]
    assert np.any(kl[:, below] > 1.0) and np.any(kl[:, above] < 1.0)
