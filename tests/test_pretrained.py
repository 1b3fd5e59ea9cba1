"""The models shipped in the package: they load, their records say how they were made, and on full MNIST
they are as good as promised (those tests need the canonical MNIST files: see ``--mnist-dir``)."""

import json
from pathlib import Path

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


# --- notebook 1's plain autoencoder, shipped for notebook 4 ------------------------------------------


def test_the_shipped_autoencoder_is_the_one_notebook_1_trains():
    """Notebook 4 says it measures the same weights as notebook 1: the record's settings are the notebook's."""
    record = pretrained.autoencoder_record(2)
    autoencoder, encoder, decoder = pretrained.load_autoencoder(2)
    assert autoencoder.count_params() == models.build_autoencoder(2)[0].count_params()
    assert encoder.output_shape == (None, 2) and decoder.output_shape == (None, 28, 28, 1)
    notebook = Path(__file__).parents[1] / "notebooks" / "01_autoencoders_and_latent_spaces.ipynb"
    code = "\n".join("".join(cell["source"]) for cell in json.loads(notebook.read_text())["cells"]
                     if cell["cell_type"] == "code")
    settings = record["settings"]
    assert f"vae_helpers.set_seed({settings['seed']})  # notebook 4" in code
    assert f"x_train[:{settings['train_digits']:_}]" in code and f"AE_EPOCHS = {settings['epochs']}\n" in code
    assert f"epochs=AE_EPOCHS, batch_size={settings['batch_size']}, x_val=x_test" in code
    assert record["command"].startswith("python scripts/ship_autoencoder.py ")


def test_an_unknown_autoencoder_is_refused():
    with pytest.raises(models.WeightsError, match="no shipped autoencoder with latent_dim=16; choose one of"):
        pretrained.load_autoencoder(16)


def test_the_shipped_autoencoder_beats_pca_as_in_notebook_1(full_mnist):
    """Its test loss, computed here in numpy, is the record's, and below that of 2-D PCA fitted to its digits."""
    (x_train, _), (x_test, _) = full_mnist
    _, encoder, decoder = pretrained.load_autoencoder(2)
    record = pretrained.autoencoder_record(2)

    def bce(x, p):
        x, p = x.reshape(len(x), -1).astype(np.float64), np.clip(p.reshape(len(p), -1), 1e-7, 1 - 1e-7)
        return float(np.mean(-np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=1)))

    ae_loss = bce(x_test, np.asarray(decoder.predict(encoder.predict(x_test, verbose=0), verbose=0)))
    assert ae_loss == pytest.approx(record["test_loss"], abs=0.01)
    flat = x_train[:record["settings"]["train_digits"]].reshape(-1, 784).astype(np.float64)
    mean = flat.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov(flat, rowvar=False))
    top = vectors[:, -2:]  # the two directions of largest variance
    pca = (x_test.reshape(-1, 784) - mean) @ top @ top.T + mean
    assert ae_loss < bce(x_test, pca) - 3.0


def test_the_autoencoder_has_holes_the_vae_has_not(full_mnist):
    """Notebook 4's measurement with the shipped weights: random points far from the codes for the plain
    autoencoder (uniform in the box of its codes), near them for the VAE (drawn from its prior). On a third
    of the notebook's digits, for time: 5.0 and 1.5 here, 5.2 and 1.4 in the notebook."""
    (x_train, _), (x_test, _) = full_mnist
    x_ae, x_test = x_train[:10_000], x_test[:2_000]
    _, encoder, _ = pretrained.load_autoencoder(2)
    ae_train, ae_test = latent.encode(encoder, x_ae), latent.encode(encoder, x_test)
    rng = np.random.default_rng(0)
    ae_ratio = latent.hole_ratio(ae_train, ae_test, rng.uniform(ae_train.min(0), ae_train.max(0), (1000, 2)))
    vae = pretrained.load_pretrained(2)
    vae_ratio = latent.hole_ratio(latent.encode(vae, x_ae), latent.encode(vae, x_test), rng.standard_normal((1000, 2)))
    assert ae_ratio > 3.0 and vae_ratio < 2.0, (ae_ratio, vae_ratio)
