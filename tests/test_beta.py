"""Fine-tuning at another beta, its KL warm-up and free bits, and the shipped sweep of notebook 6."""

import functools

import numpy as np
import pytest

from vae_helpers import beta, evaluation, keras, losses, models


class KLWeights(keras.callbacks.Callback):
    """The loss layer's KL weight after every step (it is a variable the compiled step assigns)."""

    def on_train_begin(self, logs=None):
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append(float(self.model.vae_loss.kl_weight.numpy()))


def test_a_large_beta_buys_a_smaller_rate_than_a_small_one(sample):
    """The same digits, order and steps: only beta differs, and the higher one must end with the lower KL."""
    x = sample[0][0][:640]
    rates = {}
    for b in (0.1, 16.0):
        vae = beta.from_shipped(b)
        history = beta.fine_tune(vae, x, steps=20, batch_size=32, seed=3)
        assert float(vae.vae_loss.kl_weight.numpy()) == pytest.approx(b) and len(history["loss"]) == 1
        rates[b] = evaluation.rate_distortion(vae, x[:200], n_samples=1)["rate"]
    assert rates[16.0] < rates[0.1] - 0.3, rates


def test_kl_warmup_rises_linearly_to_beta_not_to_one(sample):
    spy = KLWeights()
    vae = beta.from_shipped(8.0)
    beta.fine_tune(vae, sample[0][0][:320], steps=10, batch_size=32, warmup_steps=4, callbacks=[spy])
    np.testing.assert_allclose(spy.weights, [2.0, 4.0, 6.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0], rtol=1e-6)
    assert float(vae.vae_loss.kl_weight.numpy()) == 8.0


def test_free_bits_keep_a_code_that_a_huge_beta_squeezes(sample):
    """At beta = 200 the plain objective presses the KL down; with a floor of 3 nats per dimension the
    floored dimensions feel no pressure at all, so their KL must stay higher than without the floor."""
    x = sample[0][0][:960]
    penalty = functools.partial(losses.free_bits_kl, free_bits=3.0)
    kept = {}
    for name, kl_penalty in (("plain", None), ("free bits", penalty)):
        vae = beta.from_shipped(200.0, kl_penalty=kl_penalty)
        beta.fine_tune(vae, x, steps=30, batch_size=32, seed=1)
        kept[name] = evaluation.rate_distortion(vae, x[:300], n_samples=1)["rate"]
    assert kept["free bits"] > kept["plain"] + 1.0, kept


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"warmup_steps": -2}, "warmup_steps must be an integer of at least 0"),
    ({"steps": 100, "batch_size": 32}, "need 3,200 digits; x has 320"),
    ({"vae": "uncompiled"}, "make it with beta.from_shipped"),
])
def test_fine_tune_refuses_bad_settings_before_training(sample, kwargs, message):
    vae = models.build_vae(2, compile=False) if kwargs.pop("vae", None) else beta.from_shipped(1.0)
    before = [w.copy() for w in vae.get_weights()]
    settings = {"steps": 2, "batch_size": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        beta.fine_tune(vae, sample[0][0][:320], **settings)
    assert all(np.array_equal(a, b) for a, b in zip(before, vae.get_weights()))  # refused before any step


@pytest.mark.parametrize("value", [-1.0, "1", float("nan"), True])
def test_from_shipped_refuses_a_beta_that_is_not_a_number_of_at_least_0(value):
    with pytest.raises(ValueError, match="beta must be a number, 0 or more"):
        beta.from_shipped(value)


def test_the_shipped_sweep_spans_collapse_and_places_the_editions():
    sweep = beta.load_sweep()
    plain = {run["beta"]: run for run in sweep["runs"] if run["variant"] == "plain"}
    assert set(plain) == set(beta.SWEEP_BETAS) and {beta.BOOK_BETA, beta.LATER_EDITIONS_BETA} <= set(plain)
    ordered = [plain[b] for b in sorted(plain)]
    rates = [run["rate"] for run in ordered]
    distortions = [run["distortion"] for run in ordered]
    assert rates[0] > rates[-1] + 5 and distortions[-1] > distortions[0] + 20  # the trade, end to end
    assert ordered[-1]["active_units"] == 0 and ordered[0]["active_units"] == 2  # collapse at the largest beta
    for run in sweep["runs"]:
        assert run["rate"] == pytest.approx(sum(run["kl_per_dim"]), rel=1e-6)
        assert run["elbo"] == pytest.approx(-(run["rate"] + run["distortion"]), rel=1e-6)
        grid = sweep["manifolds"][run["beta"], run["variant"]]
        assert grid.shape == (12, 12, 28, 28) and 0.0 <= grid.min() and grid.max() <= 1.0
    free = next(run for run in sweep["runs"] if run["variant"] == "free_bits")
    assert free["active_units"] == 2 and min(free["kl_per_dim"]) > 0.9 * sweep["settings"]["free_bits"]
