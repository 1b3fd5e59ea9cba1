"""The book's network, the sampling layer and the VAE model: structure, statistics, training, saving."""

import importlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vae_helpers import BACKEND, keras, models, set_seed


def test_book_network_has_550629_parameters():
    encoder, decoder = models.build_encoder(2), models.build_decoder(2)
    assert encoder.count_params() == 494_244
    assert decoder.count_params() == 56_385
    vae = models.build_vae(2)
    assert sum(w.numpy().size for w in vae.trainable_weights) == 550_629
    assert [w.name for w in vae.non_trainable_weights] == ["kl_weight"]  # the warm-up schedule's weight


def test_encoder_layers_follow_the_book():
    encoder = models.build_encoder(2)
    convs = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convs] == [32, 64, 64, 64]
    assert [layer.strides for layer in convs] == [(1, 1), (2, 2), (1, 1), (1, 1)]
    dense = [layer for layer in encoder.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [32, 2, 2]
    z_mean, z_log_var = encoder(np.zeros((3, 28, 28, 1), np.float32))
    assert z_mean.shape == (3, 2) and z_log_var.shape == (3, 2)


def test_decoder_maps_codes_to_images_in_unit_range():
    decoder = models.build_decoder(5)
    out = keras.ops.convert_to_numpy(decoder(np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)))
    assert out.shape == (4, 28, 28, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0
    transposed = [layer for layer in decoder.layers if isinstance(layer, keras.layers.Conv2DTranspose)]
    assert len(transposed) == 1 and transposed[0].strides == (2, 2)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "2"])
def test_bad_latent_dim_is_rejected(bad):
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        models.build_encoder(bad)


@pytest.mark.parametrize("convention, expected_std", [("standard", np.exp(0.5 * 0.8)), ("book", np.exp(0.8))])
def test_sampling_statistics(convention, expected_std):
    layer = models.Sampling(convention, seed=7)
    n = 200_000
    mean = np.tile(np.array([[1.5, -2.0]], np.float32), (n, 1))
    log_var = np.full((n, 2), 0.8, np.float32)
    z = keras.ops.convert_to_numpy(layer([mean, log_var]))
    np.testing.assert_allclose(z.mean(axis=0), [1.5, -2.0], atol=4 * expected_std / np.sqrt(n) + 1e-3)
    np.testing.assert_allclose(z.std(axis=0), [expected_std] * 2, rtol=0.01)
    assert abs(np.corrcoef(z.T)[0, 1]) < 0.01


def test_sampling_is_repeatable_with_a_seed_and_varies_between_calls():
    inputs = [np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32)]
    first, second = models.Sampling(seed=3), models.Sampling(seed=3)
    a, b = keras.ops.convert_to_numpy(first(inputs)), keras.ops.convert_to_numpy(second(inputs))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, keras.ops.convert_to_numpy(first(inputs)))


def value_and_gradients(fn, *arrays):
    """Test helper: ``fn(*inputs)`` and the gradient of its sum with respect to each input, as NumPy, on the current backend.

    ``arrays`` become float32 tensors; each gradient is None (TensorFlow, PyTorch) or zeros (JAX)
    where no gradient flows. Eager: for a look at a gradient, not for training.
    """
    arrays = [np.asarray(a, np.float32) for a in arrays]
    if BACKEND == "tensorflow":
        tf = importlib.import_module("tensorflow")
        inputs = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = fn(*inputs)
            total = tf.reduce_sum(value)
        grads = tape.gradient(total, inputs)
    elif BACKEND == "jax":
        jax = importlib.import_module("jax")
        value, pullback = jax.vjp(fn, *map(jax.numpy.asarray, arrays))
        grads = pullback(jax.numpy.ones_like(value))
    else:
        torch = importlib.import_module("torch")
        inputs = [torch.tensor(a, requires_grad=True) for a in arrays]
        value = fn(*inputs)
        value.sum().backward()
        grads = [x.grad for x in inputs]
        value = value.detach()
    to_numpy = keras.ops.convert_to_numpy
    return to_numpy(value), [None if g is None else to_numpy(g) for g in grads]


def test_gradients_reach_mean_and_log_var():
    layer = models.Sampling(seed=1)
    z, (grad_mean, grad_log_var) = value_and_gradients(lambda m, lv: layer([m, lv]) ** 2,
                                                       np.zeros((8, 2)), np.zeros((8, 2)))
    z = np.sqrt(z)  # at mean 0 and log-variance 0, z = eps; its square was summed
    eps = keras.ops.convert_to_numpy(models.Sampling(seed=1)([np.zeros((8, 2), np.float32)] * 2))
    assert np.ptp(eps) > 0.5
    np.testing.assert_allclose(z, np.abs(eps), rtol=1e-5)
    np.testing.assert_allclose(grad_mean, 2 * eps, rtol=1e-5)   # d(z^2)/dmean = 2z
    np.testing.assert_allclose(grad_log_var, 2 * eps * 0.5 * eps, rtol=1e-5, atol=1e-7)  # dz/dlogvar = 0.5*sigma*eps


def test_sampling_rejects_an_unknown_convention():
    with pytest.raises(ValueError, match="unknown sampling convention"):
        models.Sampling("exp")


def test_vae_trains_with_plain_compile_and_reports_three_losses(small_images):
    x, _, x_test, _ = small_images
    set_seed(0)
    vae = models.VAE(models.build_encoder(2), models.build_decoder(2))
    vae.compile()
    assert isinstance(vae.optimizer, keras.optimizers.Adam)
    history = vae.fit(x, epochs=3, batch_size=16, validation_data=x_test, verbose=0).history
    assert set(history) == {"loss", "reconstruction_loss", "kl_loss",
                            "val_loss", "val_reconstruction_loss", "val_kl_loss"}
    assert history["loss"][-1] < history["loss"][0]
    # with the elbo preset the objective is exactly reconstruction + KL
    np.testing.assert_allclose(history["loss"], np.add(history["reconstruction_loss"], history["kl_loss"]), rtol=1e-4)
    assert vae.encoder.name == "encoder" and vae.decoder.name == "decoder"


def test_book_preset_trains_and_uses_the_books_sampling(small_images):
    x, *_ = small_images
    vae = models.build_vae(2, loss="book")
    assert vae.sampling.convention == "book"
    history = vae.fit(x[:64], epochs=1, batch_size=16, verbose=0).history
    # the book's objective is per pixel: far smaller than the summed reconstruction in nats
    assert history["loss"][0] < history["reconstruction_loss"][0] / 100


def test_fit_names_bad_images_instead_of_a_tensorflow_traceback():
    vae = models.build_vae(2)
    with pytest.raises(ValueError, match="^x must be in"):  # data.check_images, applied to the arguments
        vae.fit(np.full((4, 28, 28, 1), 200, np.uint8), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data must have shape \(N, 28, 28, 1\)"):
        vae.fit(np.zeros((4, 28, 28, 1)), validation_data=np.zeros((4, 14, 14, 1)), epochs=1, verbose=0)


def test_mismatched_encoder_and_decoder_are_rejected():
    with pytest.raises(ValueError, match="encoder produces 2-dimensional codes but the decoder expects 3"):
        models.VAE(models.build_encoder(2), models.build_decoder(3))


SAVE_AND_RELOAD = textwrap.dedent("""
    import sys, numpy as np
    import vae_helpers
    from vae_helpers import keras
    from vae_helpers.latent import decode
    vae = keras.models.load_model(sys.argv[1])  # default safe_mode=True
    assert type(vae).__name__ == "VAE" and vae.preset.name == sys.argv[3]
    np.save(sys.argv[2], decode(vae, np.array([[0.3, -1.2], [1.0, 2.0]])))
""")


@pytest.mark.parametrize("preset", ["elbo", "book"])
def test_keras_file_round_trip_in_a_fresh_process(tmp_path, small_images, preset):
    x, *_ = small_images
    vae = models.build_vae(2, loss=preset, seed=5)
    vae.fit(x[:32], epochs=1, batch_size=16, verbose=0)
    vae.save(tmp_path / "vae.keras")
    script = tmp_path / "reload.py"
    script.write_text(SAVE_AND_RELOAD)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "vae.keras"), str(tmp_path / "out.npy"), preset],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    from vae_helpers.latent import decode
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), decode(vae, np.array([[0.3, -1.2], [1.0, 2.0]])), atol=1e-6)


def test_weights_round_trip_in_a_fresh_process(tmp_path, small_images):
    x, *_ = small_images
    vae = models.build_vae(2, seed=2)
    vae.fit(x[:32], epochs=1, batch_size=16, verbose=0)
    vae.save_weights(tmp_path / "w.weights.h5")
    code = ("import sys, numpy as np\nfrom vae_helpers import models, latent\n"
            "vae = models.load_vae_weights(models.build_vae(2), sys.argv[1])\n"
            "np.save(sys.argv[2], latent.encode(vae, np.load(sys.argv[3])))\n")
    np.save(tmp_path / "x.npy", x[:10])
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.weights.h5"), str(tmp_path / "z.npy"),
                             str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "loading weights printed noise: " + result.stderr
    from vae_helpers.latent import encode
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), encode(vae, x[:10]), atol=1e-6)


def test_weights_file_errors_name_the_file(tmp_path):
    vae = models.build_vae(2)
    with pytest.raises(models.WeightsError, match="missing.weights.h5: weights file not found"):
        models.load_vae_weights(vae, tmp_path / "missing.weights.h5")
    text = tmp_path / "text.weights.h5"
    text.write_text("not weights")
    with pytest.raises(models.WeightsError, match="text.weights.h5: not an HDF5 weights file"):
        models.load_vae_weights(vae, text)
    good = tmp_path / "good.weights.h5"
    vae.save_weights(good)
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(models.WeightsError, match="truncated.weights.h5"):
        models.load_vae_weights(models.build_vae(2), truncated)
    with pytest.raises(models.WeightsError, match=r"good.weights.h5: does not fit this VAE \(latent_dim=3\)"):
        models.load_vae_weights(models.build_vae(3), good)


def test_autoencoder_is_deterministic_and_has_no_log_var_head(small_images):
    x, *_ = small_images
    autoencoder, encoder, _ = models.build_autoencoder(2)
    assert "z_log_var" not in [layer.name for layer in encoder.layers]
    assert autoencoder.count_params() == 550_629 - 66
    a = autoencoder.predict(x[:5], verbose=0)
    np.testing.assert_array_equal(a, autoencoder.predict(x[:5], verbose=0))
