"""The models shipped in the package: they load, their records say how they were made, and on full MNIST
they are as good as promised (those tests need the canonical MNIST files: see ``--mnist-dir``)."""

import numpy as np
import pytest

from vae_helpers import evaluation, latent, models, plotting, pretrained


@pytest.fixture(scope="module", params=sorted(pretrained.SHIPPED))
def shipped(request):
    return pretrained.load_pretrained(request.param), pretrained.pretrained_record(request.param)


def test_shipped_models_are_the_books_network_with_the_elbo_preset(shipped):
    vae, record = shipped
    assert vae.latent_dim == record["settings"]["latent_dim"] and vae.preset.name == "elbo"
    assert vae.count_params() == models.build_vae(vae.latent_dim).count_params()


def test_records_say_how_the_weights_were_made(shipped):
    _, record = shipped
    assert record["command"].startswith("python -m vae_helpers train ") and record["status"] == "finished"
    assert record["data"] == {"train": 54_000, "validation": 6_000, "test": 10_000}
    assert len(record["history"]["val_elbo"]) == record["settings"]["epochs"]
    assert record["iwae_k"] >= 500 and record["iwae_nll"] < -record["test_elbo"]  # the tighter estimate


def test_unknown_latent_dim_is_refused():
    with pytest.raises(models.WeightsError, match="no shipped model with latent_dim=3; choose one of"):
        pretrained.load_pretrained(3)


# --- quality on full MNIST -------------------------------------------------------------------------


def test_test_elbo_matches_the_record(full_mnist, shipped):
    vae, record = shipped
    _, (x_test, _) = full_mnist
    assert evaluation.elbo(vae, x_test, n_samples=8, seed=0) == pytest.approx(record["test_elbo"], abs=0.05)


def test_2d_model_meets_its_targets(full_mnist):
    (x_train, y_train), (x_test, y_test) = full_mnist
    vae = pretrained.load_pretrained(2)
    assert evaluation.elbo(vae, x_test, n_samples=8, seed=0) >= -148.0
    assert evaluation.knn_latent_accuracy(vae, x_train, y_train, x_test, y_test, k=5) >= 0.77


def test_16d_model_is_at_least_25_nats_better(full_mnist):
    _, (x_test, _) = full_mnist
    scores = {d: evaluation.elbo(pretrained.load_pretrained(d), x_test[:2000], n_samples=4, seed=0) for d in (2, 16)}
    assert scores[16] >= scores[2] + 25.0, scores


def test_the_manifold_shows_all_ten_digits(full_mnist):
    (x_train, y_train), _ = full_mnist
    grid = latent.decode(pretrained.load_pretrained(2), plotting.manifold_codes(15))
    assert set(evaluation.classify_digits(grid, x_train, y_train)) == set(range(10))


def test_prior_samples_cover_the_digits_evenly(full_mnist):
    """1,000 draws from N(0, I), decoded, judged by a 3-NN on pixels: at least 9 classes, none above 25%."""
    (x_train, y_train), _ = full_mnist
    vae = pretrained.load_pretrained(2)
    samples = latent.decode(vae, np.random.default_rng(0).standard_normal((1000, 2)))
    shares = np.bincount(evaluation.classify_digits(samples, x_train, y_train), minlength=10) / 1000
    assert np.sum(shares > 0) >= 9 and shares.max() <= 0.25, shares.round(3)


def test_pixel_classifier_is_a_fair_judge(full_mnist):
    """The judge of the two tests above: a 3-NN on raw pixels, right on about 96% of real test digits."""
    (x_train, y_train), (x_test, y_test) = full_mnist
    assert np.mean(evaluation.classify_digits(x_test[:1000], x_train, y_train) == y_test[:1000]) > 0.95
