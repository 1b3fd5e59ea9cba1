"""The conditional VAE: the book's network, told which digit it is looking at and which one to draw.

The encoder reads an image *and* its class label, the decoder a latent code *and* the label. The
code then no longer has to say which digit it is, only how it is written (slant, stroke width,
size, loops): decode one code with each of the ten labels and the same "handwriting" writes every
digit, and ``generate(cvae, 7)`` draws a 7 on request, which the plain VAE cannot do.

The label enters where it is simplest and works: as a one-hot vector (made inside the model from an
integer class id with ``keras.ops.one_hot``) concatenated to the encoder's flattened convolution
features before its Dense 32, and to z before the decoder's Dense. Everything else is the 1st
edition's network from ``models`` (the same convolutions, Dense 32 and decoder), trained with the
same sampling layer (``models.Sampling``) and loss layer (``losses.VAELoss``: the negative ELBO in
nats, beta = 1, standard sampling). The label adds 10 x 32 weights to the encoder and
10 x 12,544 to the decoder.

Labels are integer class ids 0..n_classes-1 (an int, or one per image or code). Every public
function checks its arguments once, with a ValueError that names the argument and says what to pass
(a one-hot matrix, a float array or a label out of range is refused: inside the model an id out of
range would silently become a row of zeros). The functions take and return NumPy arrays and are
written with ``keras.ops`` and ``keras.random`` so that they do not depend on TensorFlow.
"""

import dataclasses
import numbers

import numpy as np

from vae_helpers._backend import keras
from vae_helpers.config import (SCORE_BYTES_PER_PIXEL, check_count, check_memory,
                                memory_limit_bytes)
from vae_helpers.data import check_images
from vae_helpers.evaluation import classify_digits
from vae_helpers.files import atomic_write
from vae_helpers.latent import DECODE_BATCH_BYTES_PER_IMAGE, check_codes
from vae_helpers.losses import VAELoss, kl_divergence, reconstruction_loss
from vae_helpers.models import (DECODER_FILTERS, ENCODER_CONVOLUTIONS, ENCODER_HIDDEN_UNITS, IMAGE_SHAPE, AdamByDefault,
                                Sampling, SavesEncoderDecoder, TracksLossTerms, _relu_conv, load_vae_weights)

layers, ops = keras.layers, keras.ops
N_CLASSES = 10  # MNIST's digits
JUDGE_K = 3  # neighbours of the pixel judge (evaluation.classify_digits)


# --- Labels: one check for every entry point ---------------------------------------------------------


def check_labels(labels, n_classes, count=None, name="labels", what="codes"):
    """``labels`` as a 1-D int32 array of class ids in 0..n_classes-1; ValueError naming ``name`` otherwise.

    An int (Python or NumPy) is repeated ``count`` times (once if ``count`` is None); an array must
    be 1-D and of an integer dtype, with ``count`` entries if ``count`` is given (``what`` names
    those ``count`` things in the message). Booleans, floats, strings and one-hot rows are refused
    with a message that says how to turn them into class ids.
    """
    n_classes = check_count(n_classes, "n_classes")
    span = f"whole numbers from 0 to {n_classes - 1}"
    if isinstance(labels, (bool, np.bool_)):
        raise ValueError(f"{name} must be class ids ({span}), got the boolean {labels!r}")
    if isinstance(labels, numbers.Integral):
        if not 0 <= labels < n_classes:
            raise ValueError(f"{name} must be class ids ({span}), got {labels!r}")
        return np.full(1 if count is None else count, labels, dtype=np.int32)
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError) as err:  # ragged lists
        raise ValueError(f"{name} must be an int or a 1-D array of class ids ({span}): {err}") from None
    if array.size == 0:
        raise ValueError(f"{name} is empty: pass at least one class id")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be class ids ({span}), got an array of dtype {array.dtype}")
    if array.ndim == 2 and array.shape[1] == n_classes:
        raise ValueError(f"{name} looks like one-hot rows, shape {array.shape}: pass class ids instead, "
                         f"e.g. {name}.argmax(axis=1)")
    if not np.issubdtype(array.dtype, np.integer):
        whole = array.size and np.all(np.isfinite(array)) and np.all(array == np.round(array))
        hint = f"; they are whole numbers, so convert them with {name}.astype(int)" if whole else ""
        raise ValueError(f"{name} must be integer class ids ({span}), got dtype {array.dtype}{hint}")
    if array.ndim == 0:
        return check_labels(int(array), n_classes, count, name, what)
    if array.ndim != 1:
        raise ValueError(f"{name} must be an int or a 1-D array of class ids, got shape {array.shape}")
    bad = np.flatnonzero((array < 0) | (array >= n_classes))
    if bad.size:
        raise ValueError(f"{name} must be class ids ({span}), got {array[bad[0]]} at position {bad[0]}"
                         + (f" and {bad.size - 1} more out of range" if bad.size > 1 else ""))
    if count is not None and len(array) != count:
        raise ValueError(f"{name} has {len(array)} class ids but there are {count} {what}: pass one class id "
                         f"for each, or a single int for all of them")
    return array.astype(np.int32)


# --- The network --------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="vae_helpers")
class OneHot(layers.Layer):
    """Integer class ids (batch,) -> one-hot rows (batch, n_classes) in the layer's float dtype; no weights.

    An id outside 0..n_classes-1 becomes a row of zeros here (``keras.ops.one_hot``), which is why
    the public functions check labels (``check_labels``) before they reach a model.
    """

    def __init__(self, n_classes=N_CLASSES, **kwargs):
        super().__init__(**kwargs)
        self.n_classes = check_count(n_classes, "n_classes")

    def call(self, labels):
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        return ops.one_hot(labels, self.n_classes, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_classes)

    def get_config(self):
        return {**super().get_config(), "n_classes": self.n_classes}


def _label_input():
    return keras.Input(shape=(), dtype="int32", name="label")


def build_conditional_encoder(latent_dim=2, n_classes=N_CLASSES, image_shape=IMAGE_SHAPE):
    """(image, label) -> (z_mean, z_log_var): the book's four convolutions, then the one-hot label beside their
    flattened features, Dense 32 and the two heads."""
    latent_dim = check_count(latent_dim, "latent_dim")
    images, labels = keras.Input(shape=image_shape, name="image"), _label_input()
    features = images
    for filters, strides in ENCODER_CONVOLUTIONS:
        features = _relu_conv(filters, strides)(features)
    joined = layers.Concatenate(name="features_and_label")(
        [layers.Flatten()(features), OneHot(n_classes, name="one_hot")(labels)])
    hidden = layers.Dense(ENCODER_HIDDEN_UNITS, activation="relu")(joined)
    heads = [layers.Dense(latent_dim, name=name)(hidden) for name in ("z_mean", "z_log_var")]
    return keras.Model([images, labels], heads, name="conditional_encoder")


def build_conditional_decoder(latent_dim=2, n_classes=N_CLASSES, image_shape=IMAGE_SHAPE):
    """(z, label) -> image: z and the one-hot label side by side, then the book's decoder (Dense to a 14x14x64
    map, a stride-2 transposed convolution, a sigmoid convolution)."""
    latent_dim = check_count(latent_dim, "latent_dim")
    height, width, channels = image_shape
    feature_shape = (height // 2, width // 2, ENCODER_CONVOLUTIONS[-1][0])
    codes, labels = keras.Input(shape=(latent_dim,), name="z"), _label_input()
    joined = layers.Concatenate(name="code_and_label")([codes, OneHot(n_classes, name="one_hot")(labels)])
    grid = layers.Reshape(feature_shape)(layers.Dense(int(np.prod(feature_shape)), activation="relu")(joined))
    upsampled = _relu_conv(DECODER_FILTERS, strides=2, transpose=True)(grid)
    pixels = layers.Conv2D(channels, kernel_size=3, activation="sigmoid", padding="same")(upsampled)
    return keras.Model([codes, labels], pixels, name="conditional_decoder")


def _one_hot_classes(model, role):
    found = [layer.n_classes for layer in model.layers if isinstance(layer, OneHot)]
    if len(found) != 1:
        raise ValueError(f"the {role} must turn its label input into one-hot rows with one conditional.OneHot "
                         f"layer (found {len(found)}); build it with build_conditional_{role}")
    return found[0]


def _check_compatible(encoder, decoder):
    """ValueError unless encoder (image, label) -> (z_mean, z_log_var) and decoder (z, label) -> image fit together."""
    for role, model, outputs in (("encoder", encoder, 2), ("decoder", decoder, 1)):
        if not isinstance(model, keras.Model) or len(model.inputs) != 2 or len(model.outputs) != outputs:
            raise ValueError(f"the {role} must be a Keras model with two inputs ({'image' if role == 'encoder' else 'z'}"
                             f", label) and {outputs} output{'s' if outputs > 1 else ''}; build it with "
                             f"build_conditional_{role}")
    latent = int(encoder.outputs[0].shape[-1])
    if int(decoder.inputs[0].shape[-1]) != latent:
        raise ValueError(f"encoder produces {latent}-dimensional codes but the decoder expects "
                         f"{decoder.inputs[0].shape[-1]}")
    if tuple(decoder.outputs[0].shape[1:]) != tuple(encoder.inputs[0].shape[1:]):
        raise ValueError(f"decoder makes images of shape {tuple(decoder.outputs[0].shape[1:])} but the encoder "
                         f"reads {tuple(encoder.inputs[0].shape[1:])}")
    classes = _one_hot_classes(encoder, "encoder"), _one_hot_classes(decoder, "decoder")
    if classes[0] != classes[1]:
        raise ValueError(f"the encoder knows {classes[0]} classes but the decoder {classes[1]}")
    return classes[0]


def _is_pair(x):
    return isinstance(x, (tuple, list)) and len(x) == 2 and not any(isinstance(part, (tuple, list)) for part in x)


@keras.saving.register_keras_serializable(package="vae_helpers")
class ConditionalVAE(SavesEncoderDecoder, AdamByDefault, TracksLossTerms, keras.Model):
    """Encoder, sampler, decoder and loss layer of a conditional VAE, trained with ``fit((images, labels))``.

    The model's input is the pair ``(images, labels)``; like ``models.VAE`` it adds the negative
    ELBO with ``losses.VAELoss`` and reports ``loss``, ``reconstruction_loss`` and ``kl_loss`` (nats
    per image) each epoch. ``sampling``, ``vae_loss`` and ``kl_warmup`` have ``models.VAE``'s names,
    so ``training.train_vae`` trains either (see ``train_conditional_vae``).
    """

    def __init__(self, encoder, decoder, seed=None, **kwargs):
        super().__init__(**kwargs)
        self._n_classes = _check_compatible(encoder, decoder)
        self.encoder = encoder
        self.decoder = decoder
        self.seed = seed
        self.sampling = Sampling("standard", seed=seed, name="sampling")
        self.vae_loss = VAELoss("elbo", name="vae_loss")
        self.kl_warmup = None  # a losses.KLWarmupSchedule while train_vae warms the KL up (not a weight)

    @property
    def latent_dim(self):
        return int(self.decoder.inputs[0].shape[-1])

    @property
    def n_classes(self):
        return self._n_classes

    @property
    def image_shape(self):
        return tuple(self.encoder.inputs[0].shape[1:])

    def call(self, inputs, training=False):
        images, labels = inputs
        if training and self.kl_warmup is not None and self.kl_warmup.steps:
            kl_weight = self.vae_loss.kl_weight
            kl_weight.assign(self.kl_warmup(kl_weight))
        z_mean, z_log_var = self.encoder([images, labels], training=training)
        z = self.sampling([z_mean, z_log_var])
        x_decoded = self.decoder([z, labels], training=training)
        return self.vae_loss(images, x_decoded, z_mean, z_log_var)

    def build(self, input_shape=None):
        """Build the sampler and the loss layer (encoder and decoder are built models); ``input_shape`` is not needed."""
        latent = (None, self.latent_dim)
        self.sampling.build([latent, latent])
        self.vae_loss.build((None, *self.image_shape))
        self.built = True

    def _checked_pair(self, pair, name):
        images, labels = pair
        images = check_images(images, f"{name}'s images", self.image_shape)
        return images, check_labels(labels, self.n_classes, count=len(images), name=f"{name}'s labels",
                                    what=f"images in {name}")

    def fit(self, x=None, y=None, validation_data=None, **kwargs):
        """``keras.Model.fit`` on ``x=(images, labels)``, NumPy arrays checked first with a clear error.

        ``fit(images, labels)`` is read as ``fit((images, labels))`` (a VAE has no targets), and
        ``validation_data=(images, labels)`` as validation inputs. A ``tf.data`` data set (or any
        other Keras input) must yield ``((images, labels),)`` and is passed on unchecked.
        """
        if isinstance(x, np.ndarray) and y is not None:
            x, y = (x, y), None
        if isinstance(x, np.ndarray):
            raise ValueError("a conditional VAE trains on images and their labels: call fit((images, labels))")
        if _is_pair(x) and isinstance(x[0], np.ndarray):
            x = self._checked_pair(x, "x")
        if _is_pair(validation_data) and isinstance(validation_data[0], np.ndarray):
            validation_data = (self._checked_pair(validation_data, "validation_data"),)
        if not getattr(self, "optimizer", None):
            self.compile()
        return super().fit(x, y, validation_data=validation_data, **kwargs)



def build_conditional_vae(latent_dim=2, n_classes=N_CLASSES, seed=None, compile=True):
    """The book's network with a label on both sides, as a built ConditionalVAE (compiled with Adam 1e-3 unless
    ``compile=False``). ``seed`` fixes the sampler's noise."""
    latent_dim, n_classes = check_count(latent_dim, "latent_dim"), check_count(n_classes, "n_classes")
    cvae = ConditionalVAE(build_conditional_encoder(latent_dim, n_classes),
                          build_conditional_decoder(latent_dim, n_classes), seed=seed, name="conditional_vae")
    cvae.build()
    if compile:
        cvae.compile()
    return cvae


def _check_model(cvae):
    if not isinstance(cvae, ConditionalVAE):
        raise ValueError(f"expected a ConditionalVAE (build_conditional_vae or pretrained.load_pretrained(2, "
                         f"conditional=True)), got {type(cvae).__name__}; for a plain VAE use vae_helpers.latent")
    return cvae


# --- Using it: decode, encode, generate ----------------------------------------------------------------


def _numpy(tensor):
    return ops.convert_to_numpy(tensor)


def _decode(cvae, z, labels, batch_size=1024):
    """Decode checked codes and labels of equal length, in batches, through the decoder's compiled predict step."""
    image_bytes = 4 * int(np.prod(cvae.image_shape))
    check_memory(2 * image_bytes * len(z) + DECODE_BATCH_BYTES_PER_IMAGE * min(batch_size, len(z)),
                 f"decoding {len(z):,} codes", "decode fewer codes at a time")
    return np.concatenate([_numpy(cvae.decoder.predict_on_batch([z[i:i + batch_size], labels[i:i + batch_size]]))
                           for i in range(0, len(z), batch_size)]).astype(np.float32, copy=False)


def decode(cvae, z, labels, batch_size=1024):
    """Images, shape (n, 28, 28, 1) float32 in [0, 1], drawn by the decoder from codes ``z`` and class ids ``labels``.

    ``z`` is one code (latent_dim,) or a batch (n, latent_dim); ``labels`` an int (used for every
    code) or one class id per code. One code with an array of m labels writes that one style as m
    digits (n = m): ``decode(cvae, z, range(10))`` is a row of the ten digits in one handwriting.
    """
    _check_model(cvae)
    z, single = check_codes(z, cvae.latent_dim)
    if single:
        labels = check_labels(labels, cvae.n_classes)
        z = np.repeat(z, len(labels), axis=0)
    else:
        labels = check_labels(labels, cvae.n_classes, count=len(z), what="codes in z")
    return _decode(cvae, z, labels, check_count(batch_size, "batch_size"))


def _posterior(cvae, x, labels, batch_size=500):
    """Mean and log-variance of q(z|x, label) for checked images and labels, float32 arrays (n, latent_dim)."""
    means, log_vars = [], []
    for start in range(0, len(x), batch_size):
        z_mean, z_log_var = cvae.encoder.predict_on_batch([x[start:start + batch_size],
                                                           labels[start:start + batch_size]])
        means.append(_numpy(z_mean))
        log_vars.append(_numpy(z_log_var))
    return np.concatenate(means), np.concatenate(log_vars)


def _checked_data(cvae, x, labels, name="x"):
    x = check_images(x, name, cvae.image_shape)
    return x, check_labels(labels, cvae.n_classes, count=len(x), what=f"images in {name}")


def encode(cvae, x, labels, batch_size=500):
    """Posterior means z_mean (n, latent_dim) of images ``x`` given their class ids ``labels`` (an int for all, or one each).

    Told the digit, the encoder keeps for z what the label does not say: the style of the writing.
    """
    _check_model(cvae)
    x, labels = _checked_data(cvae, x, labels)
    return _posterior(cvae, x, labels, check_count(batch_size, "batch_size"))[0]


def generate(cvae, labels, seed=0):
    """New digits: one image (n, 28, 28, 1) per class id in ``labels`` (an int: one image), each from a code z ~ N(0, I).

    The codes come from ``numpy.random.default_rng(seed)``, so the same seed draws the same digits.
    """
    _check_model(cvae)
    labels = check_labels(labels, cvae.n_classes)
    seed = check_count(seed, "seed", minimum=0)
    z = np.random.default_rng(seed).standard_normal((len(labels), cvae.latent_dim)).astype(np.float32)
    return _decode(cvae, z, labels)


# --- Scoring: the ELBO and the pixel judge -------------------------------------------------------------


def elbo(cvae, x, labels, n_samples=8, seed=0, batch_size=50):
    """Mean evidence lower bound log p(x | label) >= ELBO, in nats per image (higher is better).

    As ``evaluation.elbo`` does for a plain VAE: the KL term in closed form, the reconstruction term
    averaged over ``n_samples`` draws of z per image, drawn with ``numpy.random.default_rng(seed)``.
    Knowing the label, a conditional VAE needs fewer nats for an image than a plain one.
    """
    _check_model(cvae)
    x, labels = _checked_data(cvae, x, labels)
    n_samples, batch_size = check_count(n_samples, "n_samples"), check_count(batch_size, "batch_size")
    per_sample = SCORE_BYTES_PER_PIXEL * int(np.prod(x.shape[1:]))
    per_batch = n_samples * min(batch_size, len(x))
    check_memory(per_sample * per_batch,
                 f"{n_samples} samples for each of {min(batch_size, len(x))} images at a time ({per_batch:,} decoded)",
                 f"lower batch_size to {max(1, memory_limit_bytes() // (per_sample * n_samples))} or fewer, "
                 "or use fewer samples")
    rng = np.random.default_rng(seed)
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], labels[start:start + batch_size]
        mean, log_var = (array.astype(np.float64) for array in _posterior(cvae, xb, yb))
        eps = rng.standard_normal((n_samples, *mean.shape))
        z = (mean + np.exp(0.5 * log_var) * eps).reshape(-1, mean.shape[1]).astype(np.float32)
        probs = _decode(cvae, z, np.tile(yb, n_samples))
        log_px = -_numpy(reconstruction_loss(np.tile(xb, (n_samples, 1, 1, 1)), probs)).astype(np.float64)
        kl = _numpy(kl_divergence(mean, log_var)).astype(np.float64)
        total += float(np.sum(log_px.reshape(n_samples, -1).mean(axis=0) - kl))
    return total / len(x)


@dataclasses.dataclass(frozen=True)
class JudgeScore:
    """How often a 3-NN classifier on raw pixels sees the asked digit in digits generated from the prior.

    ``accuracy`` is the overall fraction, ``per_class`` maps each class id to its fraction (over
    ``per_class_count`` images each), ``confusion[asked, judged]`` counts the images asked as one
    class and judged as another (rows sum to ``per_class_count``), ``n_reference`` is how many
    labelled digits the judge compared them with.
    """

    accuracy: float
    per_class: dict
    confusion: np.ndarray
    per_class_count: int
    n_reference: int

    def as_dict(self):
        """The score as plain JSON-ready values (the shipped model's record keeps this)."""
        return {"accuracy": self.accuracy, "per_class": {str(label): value for label, value in self.per_class.items()},
                "confusion": self.confusion.tolist(), "per_class_count": self.per_class_count,
                "n_reference": self.n_reference}


def judge_accuracy(cvae, x_train, y_train, per_class=1000, seed=0):
    """Draw ``per_class`` digits of every class from the prior (``generate``) and score how many a pixel judge
    (``evaluation.classify_digits``: 3-NN on raw pixels among ``x_train``) labels as the class asked for.

    Returns a ``JudgeScore``. The judge is right on about 96% of real MNIST test digits when it
    compares them with all 60,000 training digits; with fewer reference digits it is a little
    less sharp (and faster: its cost grows with ``len(x_train) * per_class``). A blurry or
    ambiguous generated digit counts as a miss, so the score measures legibility as well as obedience.
    """
    _check_model(cvae)
    x_train, y_train = _checked_data(cvae, x_train, y_train, "x_train")
    if len(x_train) < JUDGE_K:
        raise ValueError(f"x_train must hold at least {JUDGE_K} digits for the {JUDGE_K}-NN judge, got {len(x_train)}")
    per_class = check_count(per_class, "per_class")
    asked = np.repeat(np.arange(cvae.n_classes, dtype=np.int32), per_class)
    judged = classify_digits(generate(cvae, asked, seed=seed), x_train, y_train, k=JUDGE_K)
    confusion = np.zeros((cvae.n_classes, cvae.n_classes), dtype=np.int64)
    np.add.at(confusion, (asked, judged), 1)
    return JudgeScore(accuracy=float(np.mean(judged == asked)),
                      per_class={label: float(confusion[label, label] / per_class) for label in range(cvae.n_classes)},
                      confusion=confusion, per_class_count=per_class, n_reference=len(x_train))


# --- Training and weights -------------------------------------------------------------------------------


def train_conditional_vae(cvae, x_train, y_train, epochs, batch_size=16, x_val=None, y_val=None, seed=0,
                          progress="epoch", checkpoint_dir=None, kl_warmup=0, callbacks=()):
    """Train ``cvae`` on images and their class ids with ``training.train_vae``; return the per-epoch history.

    Everything ``train_vae`` guarantees holds: batch order and sampling noise are a function of
    (seed, epoch), each label travels with its image, a NaN or infinite loss stops training with
    ``TrainingDiverged``, ``progress="epoch"`` prints one line per epoch, ``checkpoint_dir`` makes
    the run resumable, and with ``x_val`` (and ``y_val``) the weights of the epoch with the best
    validation ELBO (``elbo`` above) are kept.
    """
    from vae_helpers.training import train_vae  # here, not above: training imports this module

    _check_model(cvae)
    return train_vae(cvae, x_train, epochs, batch_size, x_val=x_val, seed=seed, progress=progress,
                     checkpoint_dir=checkpoint_dir, kl_warmup=kl_warmup, callbacks=callbacks,
                     labels=y_train, val_labels=y_val)


def save_conditional_weights(cvae, path):
    """Save the network's weights without the optimizer's state, atomically (a failed write leaves the old file)."""
    _check_model(cvae)
    twin = build_conditional_vae(cvae.latent_dim, cvae.n_classes, compile=False)
    twin.set_weights(cvae.get_weights())
    atomic_write(path, twin.save_weights)


def load_conditional_weights(cvae, path):
    """Load a ``.weights.h5`` file into ``cvae`` with every check of ``models.load_vae_weights`` (WeightsError
    naming the file if it is missing, damaged or made for another network; the model is untouched then)."""
    return load_vae_weights(_check_model(cvae), path)
