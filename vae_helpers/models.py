"""The book's convolutional encoder and decoder, the sampling layer and the VAE model.

The architecture is the 1st edition's, unchanged (550,629 trainable parameters at ``latent_dim=2``); what
changed is how it is wired: a ``Sampling`` layer instead of a ``Lambda``, and a ``VAE`` model
whose custom loss layer works with Keras 3.
"""

import warnings
from pathlib import Path

import numpy as np

from vae_helpers._backend import BACKEND, keras
from vae_helpers.config import DEFAULT_LEARNING_RATE, check_convention, check_count, check_precision, cpu_flags, get_preset
from vae_helpers.data import check_images
from vae_helpers.files import atomic_write, read_error
from vae_helpers.losses import VAELoss, posterior_std, reconstruction_loss
from vae_helpers.optimizers import Adam

layers = keras.layers
IMAGE_SHAPE = (28, 28, 1)


# (filters, stride) of the encoder's 3x3 convolutions, as in the 1st edition.
ENCODER_CONVOLUTIONS = ((32, 1), (64, 2), (64, 1), (64, 1))
ENCODER_HIDDEN_UNITS = 32
DECODER_FILTERS = 32


def _relu_conv(filters, strides=1, transpose=False, dtype=None):
    """A 3x3 'same'-padded ReLU convolution (transposed for upsampling)."""
    kind = layers.Conv2DTranspose if transpose else layers.Conv2D
    return kind(filters, kernel_size=3, strides=strides, activation="relu", padding="same", dtype=dtype)


def _hidden_dtype(precision):
    """The Keras dtype policy of the hidden layers for ``precision`` (None: Keras' float32 default).

    TensorFlow's CPU convolutions run bfloat16 only with AVX-512 (emulated, slowly, without AMX); on an
    older CPU they fail deep inside the first training step, so such a CPU is refused here, by name.
    """
    if check_precision(precision) == "float32":
        return None
    flags = cpu_flags()
    if BACKEND == "tensorflow" and flags is not None and "avx512f" not in flags:
        raise ValueError("precision='bfloat16' needs a CPU with AVX-512 on TensorFlow, and pays only with AMX "
                         "(flag amx_bf16); this CPU has neither, and TensorFlow cannot run the network's bfloat16 "
                         "convolutions on it. Use precision='float32' (--precision float32)")
    return "mixed_bfloat16"


def build_encoder(latent_dim=2, image_shape=IMAGE_SHAPE, precision="float32"):
    """Image -> (z_mean, z_log_var): four 3x3 convolutions (one with stride 2), Dense 32, two heads.

    ``precision="bfloat16"`` computes the convolutions and the hidden layer in bfloat16 (Keras'
    "mixed_bfloat16": the weights stay float32); the two heads compute in float32 either way.
    """
    latent_dim = check_count(latent_dim, "latent_dim")
    hidden_dtype = _hidden_dtype(precision)
    images = keras.Input(shape=image_shape, name="image")
    features = images
    for filters, strides in ENCODER_CONVOLUTIONS:
        features = _relu_conv(filters, strides, dtype=hidden_dtype)(features)
    hidden = layers.Dense(ENCODER_HIDDEN_UNITS, activation="relu", dtype=hidden_dtype)(layers.Flatten()(features))
    heads = [layers.Dense(latent_dim, name=name)(hidden) for name in ("z_mean", "z_log_var")]
    return keras.Model(images, heads, name="encoder")


def build_decoder(latent_dim=2, image_shape=IMAGE_SHAPE, precision="float32"):
    """Latent code -> image: Dense to a 14x14x64 map, a stride-2 transposed conv, a sigmoid conv.

    ``precision="bfloat16"`` computes the Dense layer and the transposed convolution in bfloat16; the
    last convolution, which gives the pixel probabilities, computes in float32 either way.
    """
    latent_dim = check_count(latent_dim, "latent_dim")
    hidden_dtype = _hidden_dtype(precision)
    height, width, channels = image_shape
    feature_shape = (height // 2, width // 2, ENCODER_CONVOLUTIONS[-1][0])  # the encoder's last map
    codes = keras.Input(shape=(latent_dim,), name="z")
    dense = layers.Dense(int(np.prod(feature_shape)), activation="relu", dtype=hidden_dtype)
    grid = layers.Reshape(feature_shape, dtype=hidden_dtype)(dense(codes))
    upsampled = _relu_conv(DECODER_FILTERS, strides=2, transpose=True, dtype=hidden_dtype)(grid)
    pixels = layers.Conv2D(channels, kernel_size=3, activation="sigmoid", padding="same")(upsampled)
    return keras.Model(codes, pixels, name="decoder")


@keras.saving.register_keras_serializable(package="vae_helpers")
class Sampling(keras.layers.Layer):
    """Reparameterization: ``z = z_mean + sigma * eps`` with ``eps ~ N(0, I)`` drawn inside the layer.

    ``convention="standard"`` uses ``sigma = exp(0.5 * z_log_var)`` (z_log_var is a log-variance);
    ``convention="book"`` reproduces the 1st edition's ``sigma = exp(z_log_var)``. Pass ``seed``
    for repeatable draws. The noise has no trainable parameters, so gradients reach ``z_mean`` and
    ``z_log_var`` but not ``eps``.
    """

    def __init__(self, convention="standard", seed=None, **kwargs):
        super().__init__(**kwargs)
        check_convention(convention)
        self.convention = convention
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(keras.ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + posterior_std(z_log_var, self.convention) * eps

    def get_config(self):
        return {**super().get_config(), "convention": self.convention, "seed": self.seed}


class AdamByDefault:
    """Mixed into the package's models: ``compile()`` with no optimizer means Adam at the default learning rate,
    and a model reloaded from a ``.keras`` file gets its optimizer (and its state) back."""

    def compile(self, optimizer=None, **kwargs):
        """Compile with Adam (learning rate 1e-3) unless another optimizer is given."""
        if optimizer is None:
            optimizer = Adam(learning_rate=DEFAULT_LEARNING_RATE)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Restore the compile settings saved in a ``.keras`` file (optimizer and its state)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)


class SavesEncoderDecoder:
    """Mixed into the package's models: their config holds the encoder, the decoder and the seed (plus what
    ``_extra_config`` adds), so that ``.keras`` files and ``from_config`` rebuild the same model."""

    def _extra_config(self):
        return {}

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            **self._extra_config(),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"))
        return cls(encoder, decoder, **config)


class TracksLossTerms:
    """Mixed into the package's models: ``reconstruction_loss`` and ``kl_loss`` trackers that live on the model.

    The loss layer (``self.vae_loss``) leaves each batch's per-image terms in its ``terms``;
    ``compute_loss``, which every backend's training and test step calls right after the forward
    pass, adds them to the trackers. (Updating a metric inside a layer's ``call`` fails on JAX.)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras' loss (here the loss layer's ``add_loss``), and the loss layer's terms into the trackers."""
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        terms = self.vae_loss.terms
        if terms is not None:
            self.reconstruction_tracker.update_state(terms["reconstruction_loss"])
            self.kl_tracker.update_state(terms["kl_loss"])
        return loss


@keras.saving.register_keras_serializable(package="vae_helpers")
class VAE(SavesEncoderDecoder, AdamByDefault, TracksLossTerms, keras.Model):
    """Encoder, sampler, decoder and loss layer as one model that trains with ``compile()`` and ``fit(x)``.

    ``loss`` is a preset name from ``vae_helpers.losses.PRESETS`` ("elbo" or "book"). Each epoch
    reports ``loss`` (the preset's objective), ``reconstruction_loss`` and ``kl_loss`` (nats per image).
    ``kl_penalty`` replaces the batch's mean KL in the objective (see ``losses.VAELoss``).
    """

    def __init__(self, encoder, decoder, loss="elbo", seed=None, kl_penalty=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.preset = get_preset(loss)
        self.seed = seed
        self.sampling = Sampling(self.preset.sampling, seed=seed, name="sampling")
        self.vae_loss = VAELoss(self.preset.name, kl_penalty=kl_penalty, name="vae_loss")
        self.kl_warmup = None  # a losses.KLWarmupSchedule while train_vae warms the KL up (not a weight)
        _check_compatible(encoder, decoder)

    @property
    def latent_dim(self):
        return int(self.decoder.input_shape[-1])

    @property
    def image_shape(self):
        return tuple(self.encoder.input_shape[1:])

    def call(self, x, training=False):
        if training and self.kl_warmup is not None and self.kl_warmup.steps:
            kl_weight = self.vae_loss.kl_weight
            kl_weight.assign(self.kl_warmup(kl_weight))
        z_mean, z_log_var = self.encoder(x, training=training)
        z = self.sampling([z_mean, z_log_var])
        x_decoded = self.decoder(z, training=training)
        return self.vae_loss(x, x_decoded, z_mean, z_log_var)

    def build(self, input_shape):
        latent = (input_shape[0], self.latent_dim)
        self.sampling.build([latent, latent])
        self.vae_loss.build(input_shape)
        self.built = True

    def fit(self, x=None, y=None, validation_data=None, **kwargs):
        """``keras.Model.fit`` that first checks image arrays (shape, range, NaN) with a clear error."""
        if isinstance(x, np.ndarray):
            x = check_images(x, "x", self.image_shape)
        if isinstance(validation_data, np.ndarray):
            validation_data = (check_images(validation_data, "validation_data", self.image_shape),)
        elif isinstance(validation_data, tuple) and validation_data and isinstance(validation_data[0], np.ndarray):
            validation_data = (check_images(validation_data[0], "validation_data", self.image_shape),)
        if not getattr(self, "optimizer", None):
            self.compile()
        return super().fit(x, y, validation_data=validation_data, **kwargs)

    def _extra_config(self):
        return {"loss": self.preset.name}


def _check_compatible(encoder, decoder):
    outputs = encoder.outputs if hasattr(encoder, "outputs") else None
    if not outputs or len(outputs) != 2:
        raise ValueError("encoder must be a Keras model with two outputs, (z_mean, z_log_var)")
    latent = int(outputs[0].shape[-1])
    if int(decoder.input_shape[-1]) != latent:
        raise ValueError(f"encoder produces {latent}-dimensional codes but the decoder expects "
                         f"{decoder.input_shape[-1]}")
    if tuple(decoder.output_shape[1:]) != tuple(encoder.input_shape[1:]):
        raise ValueError(f"decoder makes images of shape {decoder.output_shape[1:]} but the encoder "
                         f"reads {encoder.input_shape[1:]}")


def build_autoencoder(latent_dim=2, image_shape=IMAGE_SHAPE):
    """A plain (deterministic) autoencoder with the book's layers; the ``z_mean`` head gives the code.

    Compiled with Adam and a summed binary cross-entropy (nats per image), so its loss is directly
    comparable with the VAE's reconstruction term. Returns ``(autoencoder, encoder, decoder)``.
    """
    full_encoder = build_encoder(latent_dim, image_shape)
    encoder = keras.Model(full_encoder.input, full_encoder.get_layer("z_mean").output, name="ae_encoder")
    decoder = build_decoder(latent_dim, image_shape)
    images = keras.Input(shape=image_shape)
    autoencoder = keras.Model(images, decoder(encoder(images)), name="autoencoder")
    autoencoder.compile(optimizer=Adam(DEFAULT_LEARNING_RATE),
                        loss=lambda x, x_decoded: reconstruction_loss(x, x_decoded))
    return autoencoder, encoder, decoder


def build_vae(latent_dim=2, loss="elbo", seed=None, compile=True, kl_penalty=None, precision="float32"):
    """The book's network as a ready-to-train VAE (compiled with the default optimizer unless ``compile=False``).

    ``kl_penalty`` (a function of z_mean and z_log_var giving one number for the batch) replaces the
    mean KL in the objective, as free bits do (``losses.VAELoss``). ``precision="bfloat16"`` computes
    the hidden layers in bfloat16 (see ``build_encoder``): on a CPU with AMX a training step takes about
    half the CPU time, on others more (BENCHMARKS.md, "bfloat16"); the weights stay float32, so they
    load into either kind.
    """
    vae = VAE(build_encoder(latent_dim, precision=precision), build_decoder(latent_dim, precision=precision),
              loss=loss, seed=seed, kl_penalty=kl_penalty, name="vae")
    vae.build((None, *IMAGE_SHAPE))
    if compile:
        vae.compile()
    return vae


def save_vae_weights(vae, path):
    """Save the network's weights without the optimizer's state (a third of the size), for use rather than for resuming.

    The file is written atomically: a full disk leaves the previous file (if any) as it was.
    """
    atomic_write(path, float32_copy(vae).save_weights)


def float32_copy(vae):
    """A new, uncompiled float32 VAE with ``vae``'s weights: to save or score a model trained in bfloat16 in float32.

    It holds only the network (no optimizer, no KL penalty), whatever ``vae``'s precision.
    """
    twin = build_vae(vae.latent_dim, vae.preset.name, compile=False)
    twin.set_weights(vae.get_weights())
    return twin


class WeightsError(ValueError):
    """A weights file is missing, corrupt or made for a different network."""


OPTIMIZER_GROUP = "optimizer"  # Keras keeps the optimizer's state under this top-level group of a weights file


def read_weights_file(path):
    """Every array of a Keras ``.weights.h5`` file except the optimizer's, as {name: array}; WeightsError if unreadable.

    Reading every array (not only the file's index) is what finds a file cut short or damaged
    inside its data: HDF5 then fails to read a block, or the values come out NaN or infinite.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    try:
        with open(path, "rb") as handle:
            signature = handle.read(8)
    except OSError as err:
        raise WeightsError(read_error(path, err, "weights file")) from err
    if signature != b"\x89HDF\r\n\x1a\n" and not h5py.is_hdf5(path):
        raise WeightsError(f"{path}: not an HDF5 weights file (truncated, or saved in another format)")
    arrays = {}
    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                              if isinstance(item, h5py.Dataset) and name.split("/")[0] != OPTIMIZER_GROUP else None)
    except Exception as err:  # h5py reports damage as OSError, KeyError or RuntimeError, depending on where it is
        raise WeightsError(f"{path}: the file is corrupt or truncated ({str(err).splitlines()[0][:200]}); "
                           "save or copy it again") from err
    broken = [name for name, array in arrays.items()
              if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array))]
    if broken:
        raise WeightsError(f"{path}: {broken[0]} holds NaN, infinite or non-numeric values: the file is damaged, "
                           "or was saved from a model whose training diverged")
    return arrays


def _twin(vae):
    """A new, built VAE with the same architecture as ``vae``: weights are loaded into it first."""
    twin = type(vae).from_config(vae.get_config())
    twin.build((None, *vae.image_shape))
    return twin


def _check_shapes(model, arrays, path, network):
    """WeightsError unless the file's arrays have exactly the shapes of the network's weights (before any loading)."""
    expected = sorted(tuple(weight.shape) for weight in model.weights)
    got = sorted(tuple(array.shape) for array in arrays.values())
    if got == expected:
        return
    extra = sorted(set(got) - set(expected))
    missing = sorted(set(expected) - set(got))
    detail = (f"the file has arrays of shape {extra[:3]} that this network has not"
              if extra else f"the network has weights of shape {missing[:3]} that the file has not")
    raise WeightsError(f"{path}: does not fit {network}: the file holds {len(got)} "
                       f"arrays, the network {len(expected)} weights; {detail}. Was it saved from another "
                       "network (another latent_dim)?")


def load_checked(model, path, network):
    """Load a ``.weights.h5`` file into ``model``, a network nobody uses yet; WeightsError if the file does not fit.

    Every array is read first (a truncated or damaged file fails), and their shapes must be the
    network's. Keras then loads the file by layer name; a part of the file it had to skip counts as
    an error too. ``network`` names the network in the messages ("this VAE (latent_dim=2)"). A
    failure can leave ``model`` half loaded: load into a twin of a model in use (``load_vae_weights``).
    """
    path = Path(path)
    _check_shapes(model, read_weights_file(path), path, network)
    problem = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as err:  # Keras reports shape mismatches and bad layouts with several types
            problem = str(err).splitlines()[0]
    # Keras only warns when part of a file is missing and leaves those layers untrained: treat as an error.
    # Optimizer state is not needed to use a model, so a skipped optimizer is fine.
    skipped = [str(w.message) for w in caught if issubclass(w.category, UserWarning)
               and "Skipping variable loading for optimizer" not in str(w.message)]
    problem = problem or (skipped[0].splitlines()[0] if skipped else None)
    if problem:
        raise WeightsError(f"{path}: does not fit {network}: {problem[:300]}")
    return model


def load_vae_weights(vae, path):
    """Load a ``.weights.h5`` file into ``vae``; WeightsError naming the file if it does not fit.

    The whole file is checked and loaded into a twin of ``vae`` first (``load_checked``). Only when
    that succeeds are the weights copied into ``vae``, so a failed load leaves the model exactly as
    it was. A file whose values were changed but stay finite numbers cannot be told from a good one:
    the shipped weights carry a SHA-256 for that (``vae_helpers.pretrained``).
    """
    twin = load_checked(_twin(vae), path, f"this VAE (latent_dim={vae.latent_dim})")
    vae.set_weights(twin.get_weights())
    return vae
