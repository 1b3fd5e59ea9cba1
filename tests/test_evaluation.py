"""ELBO, importance-weighted NLL and k-NN accuracy against brute-force numpy on a tiny VAE.

The tiny VAE has 2x2-pixel images and a 1-D latent space, so log p(x) can be computed by
numerical integration over z: an exact reference that the estimators must bracket.
"""

import numpy as np
import pytest
from scipy.special import expit, logsumexp
from scipy.stats import norm

from vae_helpers import evaluation, keras, models

ENC_MEAN_W, ENC_MEAN_B = np.array([[1.2], [-0.7], [0.4], [0.9]]), np.array([0.1])
ENC_LOGVAR_W, ENC_LOGVAR_B = np.array([[0.3], [0.2], [-0.4], [0.1]]), np.array([-1.0])
DEC_W, DEC_B = np.array([[2.0, -1.5, 0.8, 1.1]]), np.array([-0.2, 0.3, 0.1, -0.5])


def tiny_vae(loss="elbo"):
    image = keras.Input((2, 2, 1))
    flat = keras.layers.Flatten()(image)
    z_mean = keras.layers.Dense(1, name="z_mean")(flat)
    z_log_var = keras.layers.Dense(1, name="z_log_var")(flat)
    encoder = keras.Model(image, [z_mean, z_log_var], name="encoder")
    z = keras.Input((1,))
    pixels = keras.layers.Dense(4, activation="sigmoid")(z)
    decoder = keras.Model(z, keras.layers.Reshape((2, 2, 1))(pixels), name="decoder")
    encoder.get_layer("z_mean").set_weights([ENC_MEAN_W, ENC_MEAN_B])
    encoder.get_layer("z_log_var").set_weights([ENC_LOGVAR_W, ENC_LOGVAR_B])
    decoder.layers[1].set_weights([DEC_W, DEC_B])
    return models.VAE(encoder, decoder, loss=loss)


def images():
    rng = np.random.default_rng(0)
    return np.vstack([rng.integers(0, 2, (6, 4)), rng.uniform(0, 1, (6, 4))]).reshape(-1, 2, 2, 1).astype(np.float32)


def log_px_given_z(x, z):
    """log p(x|z) for flattened x (n, 4) and a grid of z (m,): shape (n, m)."""
    p = expit(z[:, None] * DEC_W[0] + DEC_B)  # (m, 4)
    return x @ np.log(p).T + (1 - x) @ np.log(1 - p).T


def exact_log_px(x):
    """log p(x) by integrating p(x|z) N(z; 0, 1) over a fine grid of z."""
    grid = np.linspace(-12, 12, 24001)
    log_joint = log_px_given_z(x, grid) + norm.logpdf(grid)
    return logsumexp(log_joint, axis=1) + np.log(grid[1] - grid[0])


def cb_log_norm_by_integral(p):
    """log C(p) as 1 / integral_0^1 p^x (1-p)^(1-x) dx, the integral in closed form: (2p - 1) / (log p - log(1 - p))."""
    p = np.asarray(p, np.float64)
    return np.log((np.log(p) - np.log1p(-p)) / (2 * p - 1))


def numpy_elbo(x, log_var_scale=1.0, continuous=False):
    """ELBO per image with Gauss-Hermite quadrature for the expectation (exact to ~1e-10); ``continuous`` adds
    the continuous Bernoulli's normalizing constant of every decoded pixel."""
    mean = x @ ENC_MEAN_W[:, 0] + ENC_MEAN_B[0]
    log_var = log_var_scale * (x @ ENC_LOGVAR_W[:, 0] + ENC_LOGVAR_B[0])
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()

    def log_px(i, z):
        normalizer = cb_log_norm_by_integral(expit(z[:, None] * DEC_W[0] + DEC_B)).sum(axis=1) if continuous else 0.0
        return log_px_given_z(x[i:i + 1], z)[0] + normalizer

    expected = np.array([log_px(i, mean[i] + np.exp(0.5 * log_var[i]) * nodes) @ weights for i in range(len(x))])
    kl = 0.5 * (np.exp(log_var) + mean ** 2 - 1 - log_var)
    return expected - kl


def test_elbo_matches_numpy_quadrature():
    x = images()
    estimate = evaluation.elbo(tiny_vae(), x, n_samples=4000)
    reference = numpy_elbo(x.reshape(-1, 4).astype(np.float64)).mean()
    assert estimate == pytest.approx(reference, abs=0.02)


def test_continuous_bernoulli_normalizer_makes_a_density():
    """C(p) p^x (1 - p)^(1 - x) must integrate to 1 over x in [0, 1], including at and around p = 1/2."""
    from scipy.integrate import quad

    for p in (1e-5, 0.01, 0.2, 0.4995, 0.4999999, 0.5, 0.5003, 0.5011, 0.8, 0.999):
        mass = quad(lambda x: p ** x * (1 - p) ** (1 - x), 0.0, 1.0, epsabs=1e-13, epsrel=1e-12)[0]
        assert evaluation.continuous_bernoulli_log_norm(p) == pytest.approx(-np.log(mass), abs=1e-9), p
    grid = np.array([[0.5, 0.25], [1e-9, 1.0]])  # shapes are kept; 0 and 1 are clipped like the reconstruction term
    got = evaluation.continuous_bernoulli_log_norm(grid)
    assert got.shape == (2, 2) and got[0, 0] == pytest.approx(np.log(2.0)) and np.all(np.isfinite(got))
    assert got[1, 0] == pytest.approx(got[1, 1]) and 2.7 < got[1, 0] < 2.85


def test_elbo_under_the_continuous_bernoulli_matches_quadrature():
    x = images()
    flat = x.reshape(-1, 4).astype(np.float64)
    estimate = evaluation.elbo(tiny_vae(), x, n_samples=4000, likelihood="continuous_bernoulli")
    reference = numpy_elbo(flat, continuous=True).mean()
    assert estimate == pytest.approx(reference, abs=0.02)
    assert reference > numpy_elbo(flat).mean() + 4 * np.log(2.0)  # at least log 2 per pixel higher
    iw = evaluation.importance_weighted_nll(tiny_vae(), x, k=3000, seed=1, likelihood="continuous_bernoulli")
    assert -iw >= reference - 0.02


def test_rate_and_distortion_split_the_elbo_by_quadrature():
    x = images()
    flat = x.reshape(-1, 4).astype(np.float64)
    mean = flat @ ENC_MEAN_W[:, 0] + ENC_MEAN_B[0]
    log_var = flat @ ENC_LOGVAR_W[:, 0] + ENC_LOGVAR_B[0]
    kl = 0.5 * (np.exp(log_var) + mean ** 2 - 1 - log_var)
    got = evaluation.rate_distortion(tiny_vae(), x, n_samples=4000)
    assert got["rate"] == pytest.approx(kl.mean(), rel=1e-6)
    np.testing.assert_allclose(got["kl_per_dim"], [kl.mean()], rtol=1e-6)
    assert got["distortion"] == pytest.approx(-(numpy_elbo(flat) + kl).mean(), abs=0.02)
    assert got["elbo"] == pytest.approx(numpy_elbo(flat).mean(), abs=0.02)
    assert got["active_units"] == int(mean.var() > 0.01) == 1


def test_estimators_reject_an_unknown_likelihood():
    with pytest.raises(ValueError, match="likelihood must be one of"):
        evaluation.elbo(tiny_vae(), images(), likelihood="gaussian")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        evaluation.log_weights(tiny_vae(), images(), likelihood="binarized")


def test_elbo_scores_the_book_preset_with_its_own_posterior():
    """Under the book's sampling sigma = exp(z_log_var), i.e. the true log-variance is 2 * z_log_var."""
    x = images()
    estimate = evaluation.elbo(tiny_vae("book"), x, n_samples=4000)
    reference = numpy_elbo(x.reshape(-1, 4).astype(np.float64), log_var_scale=2.0).mean()
    assert estimate == pytest.approx(reference, abs=0.02)
    assert abs(reference - numpy_elbo(x.reshape(-1, 4).astype(np.float64)).mean()) > 0.05  # the scale matters


def test_estimators_bracket_the_exact_likelihood():
    x = images()
    vae = tiny_vae()
    true_nll = -exact_log_px(x.reshape(-1, 4).astype(np.float64)).mean()
    neg_elbo = -numpy_elbo(x.reshape(-1, 4).astype(np.float64)).mean()
    iw_small = evaluation.importance_weighted_nll(vae, x, k=2, seed=1)
    iw_large = evaluation.importance_weighted_nll(vae, x, k=5000, seed=1)
    assert neg_elbo > true_nll + 0.05          # the fixed encoder leaves a real gap to close
    assert iw_large <= neg_elbo
    assert iw_large == pytest.approx(true_nll, abs=0.01)
    assert true_nll - 0.01 <= iw_large <= iw_small + 0.01


def test_log_weights_average_to_the_elbo_and_their_mean_weight_to_the_likelihood():
    """E_q[log w] is the ELBO; E_q[w] is p(x) itself (importance sampling is unbiased), per image."""
    x = images()
    flat = x.reshape(-1, 4).astype(np.float64)
    log_w = evaluation.log_weights(tiny_vae(), x, k=200_000, batch_size=4, seed=2)
    assert log_w.shape == (200_000, len(x)) and log_w.dtype == np.float64
    np.testing.assert_allclose(log_w.mean(axis=0), numpy_elbo(flat), atol=0.03)
    np.testing.assert_allclose(np.log(np.exp(log_w).mean(axis=0)), exact_log_px(flat), atol=0.03)


def test_estimators_are_repeatable_with_a_seed():
    x, vae = images(), tiny_vae()
    assert evaluation.elbo(vae, x, seed=3) == evaluation.elbo(vae, x, seed=3)
    assert evaluation.importance_weighted_nll(vae, x, k=10, seed=3) == evaluation.importance_weighted_nll(vae, x, k=10, seed=3)


def test_estimators_reject_bad_counts():
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        evaluation.elbo(tiny_vae(), images(), n_samples=0)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        evaluation.importance_weighted_nll(tiny_vae(), images(), k=0)


def test_knn_accuracy_separates_and_does_not_invent_structure():
    """Codes from the tiny encoder separate dark from bright images; random labels stay near chance."""
    rng = np.random.default_rng(1)
    dark = rng.uniform(0.0, 0.2, (60, 2, 2, 1))
    bright = rng.uniform(0.8, 1.0, (60, 2, 2, 1))
    vae = tiny_vae()
    vae.encoder.get_layer("z_mean").set_weights([np.ones((4, 1)), np.zeros(1)])
    x = np.concatenate([dark, bright]).astype(np.float32)
    y = np.repeat([0, 1], 60)
    order = rng.permutation(120)
    x, y = x[order], y[order]
    assert evaluation.knn_latent_accuracy(vae, x[:80], y[:80], x[80:], y[80:], k=5) == 1.0
    shuffled = rng.permutation(y)
    assert evaluation.knn_latent_accuracy(vae, x[:80], shuffled[:80], x[80:], shuffled[80:], k=5) < 0.85
    with pytest.raises(ValueError, match="k must be between 1"):
        evaluation.knn_latent_accuracy(vae, x[:5], y[:5], x[5:], y[5:], k=6)


def test_knn_accuracy_on_codes_matches_a_brute_force_vote():
    """Against a full distance matrix and a majority vote written out here (ties go to the smaller label)."""
    rng = np.random.default_rng(3)
    z_train, z_test = rng.normal(size=(300, 3)), rng.normal(size=(120, 3))
    y_train = (z_train[:, 0] > 0).astype(int) + 2 * (rng.uniform(size=300) < 0.2)
    y_test = (z_test[:, 0] > 0).astype(int)
    distances = ((z_test[:, None, :] - z_train[None, :, :]) ** 2).sum(axis=-1)
    nearest = np.argsort(distances, axis=1)[:, :7]
    expected = np.mean([np.bincount(y_train[row], minlength=4).argmax() == label
                        for row, label in zip(nearest, y_test)])
    assert evaluation.knn_accuracy(z_train, y_train, z_test, y_test, k=7) == pytest.approx(expected)
    assert 0.6 < expected < 1.0  # a vote that can go either way, not a trivial case


def test_knn_accuracy_names_bad_codes_and_labels():
    z = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"z_test must be codes of shape \(n, 2\), got shape \(10, 3\)"):
        evaluation.knn_accuracy(z, np.zeros(10, int), np.zeros((10, 3)), np.zeros(10, int))
    with pytest.raises(ValueError, match="y_train must hold one non-negative integer label per image"):
        evaluation.knn_accuracy(z, np.zeros(9, int), z, np.zeros(10, int))
    with pytest.raises(ValueError, match="k must be between 1 and the number of training codes"):
        evaluation.knn_accuracy(z, np.zeros(10, int), z, np.zeros(10, int), k=11)


def test_classify_digits_votes_among_the_nearest_pixels():
    x_train = np.zeros((6, 28, 28, 1), np.float32)
    x_train[:3, :14] = 1.0                      # three "top half" images of class 4
    x_train[3:, 14:] = 1.0                      # three "bottom half" images of class 7
    y_train = np.array([4, 4, 4, 7, 7, 7])
    queries = np.zeros((2, 28, 28, 1), np.float32)
    queries[0, :12] = 0.9
    queries[1, 16:] = 0.8
    np.testing.assert_array_equal(evaluation.classify_digits(queries, x_train, y_train, k=3), [4, 7])
    with pytest.raises(ValueError, match="images have 196 pixels but the training digits 784"):
        evaluation.classify_digits(np.zeros((1, 14, 14, 1)), x_train, y_train)  # 196 pixels
