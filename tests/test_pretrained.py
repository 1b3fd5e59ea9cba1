"""The weights shipped in the package: they load, they are as good as their record says."""

import pytest

from vae_helpers import evaluation, models, pretrained


@pytest.fixture(scope="module")
def vae():
    return pretrained.load_pretrained()


def test_pretrained_is_the_books_network_with_the_elbo_preset(vae):
    assert vae.count_params() == models.build_vae(2).count_params()
    assert vae.latent_dim == 2 and vae.preset.name == "elbo"


def test_record_says_how_the_weights_were_made():
    record = pretrained.pretrained_record()
    assert record["command"].startswith("python -m vae_helpers train")
    assert record["settings"]["data"] == "sample" and record["status"] == "finished"
    assert len(record["history"]["val_elbo"]) == record["settings"]["epochs"]


def test_pretrained_test_elbo_meets_the_target_and_matches_its_record(vae, sample):
    _, (x_test, _) = sample
    score = evaluation.elbo(vae, x_test, n_samples=8, seed=pretrained.pretrained_record()["settings"]["seed"])
    assert score >= -165.0
    assert score == pytest.approx(pretrained.pretrained_record()["test_elbo"], abs=0.5)


def test_codes_separate_the_digits(vae, sample):
    (x_train, y_train), (x_test, y_test) = sample
    assert evaluation.knn_latent_accuracy(vae, x_train, y_train, x_test, y_test) > 0.5
