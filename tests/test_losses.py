"""Loss terms against independent numpy computations, and the custom loss layer."""

import numpy as np
import pytest

from vae_helpers import keras, losses

rng = np.random.default_rng(42)


def numpy_bce_sum(x, p):
    x, p = x.reshape(len(x), -1).astype(np.float64), p.reshape(len(p), -1).astype(np.float64)
    return -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=1)


def numpy_kl(mean, log_var):
    """KL(N(mean, var) || N(0, 1)) via the textbook formula per dimension: log(1/s) + (s^2 + m^2)/2 - 1/2."""
    std = np.exp(0.5 * log_var.astype(np.float64))
    return (np.log(1.0 / std) + (std ** 2 + mean.astype(np.float64) ** 2) / 2 - 0.5).sum(axis=1)


def test_reconstruction_loss_matches_numpy():
    x = rng.uniform(0, 1, (5, 28, 28, 1)).astype(np.float32)
    p = rng.uniform(0.01, 0.99, (5, 28, 28, 1)).astype(np.float32)
    got = keras.ops.convert_to_numpy(losses.reconstruction_loss(x, p))
    np.testing.assert_allclose(got, numpy_bce_sum(x, p), rtol=1e-5)
    assert got.shape == (5,)


def test_reconstruction_loss_of_a_perfect_binary_reconstruction_is_near_zero():
    x = (rng.uniform(0, 1, (2, 28, 28, 1)) > 0.5).astype(np.float32)
    got = keras.ops.convert_to_numpy(losses.reconstruction_loss(x, x))
    assert np.all(got < 784 * 1e-6)  # clipped at 1e-7, never log(0)


def test_kl_matches_numpy_and_is_zero_at_the_prior():
    mean = rng.normal(size=(6, 3)).astype(np.float32)
    log_var = rng.normal(size=(6, 3)).astype(np.float32)
    got = keras.ops.convert_to_numpy(losses.kl_divergence(mean, log_var))
    np.testing.assert_allclose(got, numpy_kl(mean, log_var), rtol=1e-5)
    zero = keras.ops.convert_to_numpy(losses.kl_divergence(np.zeros((1, 3)), np.zeros((1, 3))))
    assert abs(zero[0]) < 1e-7
    assert np.all(got > 0)


def test_kl_matches_a_monte_carlo_estimate():
    mean, log_var = np.array([[0.7, -1.2]]), np.array([[-0.5, 0.8]])
    std = np.exp(0.5 * log_var)
    z = mean + std * rng.standard_normal((400_000, 2))
    log_q = (-0.5 * ((z - mean) / std) ** 2 - np.log(std)).sum(1)
    log_p = (-0.5 * z ** 2).sum(1)
    mc = np.mean(log_q - log_p)
    exact = keras.ops.convert_to_numpy(losses.kl_divergence(mean.astype(np.float32), log_var.astype(np.float32)))[0]
    assert abs(mc - exact) < 0.01


def test_book_preset_equals_the_books_formula():
    x = rng.uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    p = rng.uniform(0.01, 0.99, (4, 28, 28, 1)).astype(np.float32)
    mean = rng.normal(size=(4, 2)).astype(np.float32)
    log_var = rng.normal(size=(4, 2)).astype(np.float32)
    xent = numpy_bce_sum(x, p) / 784
    kl = -5e-4 * np.mean(1 + log_var - mean ** 2 - np.exp(log_var), axis=-1)
    got = keras.ops.convert_to_numpy(losses.book_loss(x, p, mean, log_var))
    np.testing.assert_allclose(got, xent + kl, rtol=1e-5)


def test_book_kl_weight_is_about_0_39_of_the_elbo_scale():
    """Multiplying the book's objective by 784 pixels gives beta * KL with beta = 784 * 5e-4 at latent_dim 2."""
    mean, log_var = np.array([[1.0, -0.5]], np.float32), np.array([[0.3, -0.2]], np.float32)
    x = p = np.full((1, 28, 28, 1), 0.5, np.float32)
    book = keras.ops.convert_to_numpy(losses.book_loss(x, p, mean, log_var))[0] * 784
    recon = keras.ops.convert_to_numpy(losses.reconstruction_loss(x, p))[0]
    kl = keras.ops.convert_to_numpy(losses.kl_divergence(mean, log_var))[0]
    assert (book - recon) / kl == pytest.approx(0.392, rel=1e-3)


def test_elbo_loss_is_reconstruction_plus_kl():
    x = rng.uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    p = rng.uniform(0.01, 0.99, (3, 28, 28, 1)).astype(np.float32)
    mean, log_var = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    got = keras.ops.convert_to_numpy(losses.elbo_loss(x, p, mean, log_var))
    np.testing.assert_allclose(got, numpy_bce_sum(x, p) + numpy_kl(mean, log_var), rtol=1e-5)


def test_posterior_conventions():
    log_var = np.array([[0.4, -1.0]], np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.posterior_std(log_var)), np.sqrt(np.exp(log_var)), rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.posterior_std(log_var, "book")), np.exp(log_var), rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.posterior_log_var(log_var, "book")), 2 * log_var)
    with pytest.raises(ValueError, match="unknown sampling convention 'wide'"):
        losses.posterior_std(log_var, "wide")


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match=r"unknown loss preset 'mse'.*\['book', 'elbo'\]"):
        losses.get_preset("mse")


@pytest.mark.parametrize("preset", ["elbo", "book"])
def test_loss_layer_adds_the_preset_objective_and_leaves_honest_terms(preset):
    x = rng.uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    p = rng.uniform(0.01, 0.99, (4, 28, 28, 1)).astype(np.float32)
    mean, log_var = rng.normal(size=(4, 2)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    layer = losses.VAELoss(preset)
    out = layer(x, p, mean, log_var)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), p)
    recon = numpy_bce_sum(x, p)
    if preset == "book":
        expected = recon / 784 - 5e-4 * np.mean(1 + log_var - mean ** 2 - np.exp(log_var), -1)
    else:
        expected = recon + numpy_kl(mean, log_var)
    assert len(layer.losses) == 1
    assert float(layer.losses[0]) == pytest.approx(float(np.mean(expected)), rel=1e-5)
    true_log_var = 2 * log_var if preset == "book" else log_var
    terms = {name: keras.ops.convert_to_numpy(value) for name, value in layer.terms.items()}
    np.testing.assert_allclose(terms["reconstruction_loss"], recon, rtol=1e-5)
    np.testing.assert_allclose(terms["kl_loss"], numpy_kl(mean, true_log_var), rtol=1e-5)


def test_kl_weight_scales_only_the_kl_part_of_the_added_loss():
    x = rng.uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    p = rng.uniform(0.01, 0.99, (4, 28, 28, 1)).astype(np.float32)
    mean, log_var = rng.normal(size=(4, 2)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    layer = losses.VAELoss("elbo")
    assert float(layer.kl_weight) == 1.0 and not layer.kl_weight.trainable
    layer.kl_weight.assign(0.25)
    layer(x, p, mean, log_var)
    expected = np.mean(numpy_bce_sum(x, p) + 0.25 * numpy_kl(mean, log_var))
    assert float(layer.losses[0]) == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.terms["kl_loss"]), numpy_kl(mean, log_var), rtol=1e-5)


def test_kl_penalty_replaces_the_mean_kl_in_the_objective_but_not_in_the_trackers():
    x = rng.uniform(0, 1, (4, 28, 28, 1)).astype(np.float32)
    p = rng.uniform(0.01, 0.99, (4, 28, 28, 1)).astype(np.float32)
    mean, log_var = rng.normal(size=(4, 2)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    seen = []
    layer = losses.VAELoss("elbo", kl_penalty=lambda m, lv: seen.append(1) or keras.ops.convert_to_tensor(7.5))
    layer.kl_weight.assign(2.0)
    layer(x, p, mean, log_var)
    assert seen and float(layer.losses[0]) == pytest.approx(float(np.mean(numpy_bce_sum(x, p))) + 15.0, rel=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.terms["kl_loss"]), numpy_kl(mean, log_var), rtol=1e-5)


@pytest.mark.parametrize("preset, penalty", [("elbo", 3.0), ("book", lambda m, lv: 0.0)])
def test_kl_penalty_must_be_a_function_and_the_elbo_preset(preset, penalty):
    with pytest.raises(ValueError, match="kl_penalty must be a function"):
        losses.VAELoss(preset, kl_penalty=penalty)


def test_kl_divergence_names_both_shapes_when_they_differ():
    with pytest.raises(ValueError, match=r"z_mean and z_log_var must have the same shape, got \(3, 2\) and \(3, 4\)"):
        losses.kl_divergence(np.zeros((3, 2), np.float32), np.zeros((3, 4), np.float32))
