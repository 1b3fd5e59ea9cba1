"""The manifold grid (one batched decode, right orientation) and the figure helpers."""

import matplotlib
import numpy as np
import pytest
from scipy.stats import norm

from vae_helpers import latent, models, plotting

matplotlib.use("Agg")


def test_manifold_codes_are_gaussian_quantiles_laid_out_like_a_scatter_plot():
    codes = plotting.manifold_codes(n=5, quantiles=(0.05, 0.95))
    values = norm.ppf(np.linspace(0.05, 0.95, 5))
    grid = codes.reshape(5, 5, 2)
    np.testing.assert_allclose(grid[0, :, 0], values, rtol=1e-6)        # x grows to the right
    np.testing.assert_allclose(grid[:, 0, 1], values[::-1], rtol=1e-6)  # y grows upwards
    assert grid[0, 0, 0] == pytest.approx(-1.6449, abs=1e-4)


def test_manifold_codes_in_higher_dimensions_vary_only_the_chosen_pair():
    codes = plotting.manifold_codes(n=4, latent_dim=5, dims=(1, 3))
    assert codes.shape == (16, 5)
    assert np.all(codes[:, [0, 2, 4]] == 0) and np.unique(codes[:, 1]).size == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 1}, "n must be an integer of at least 2"),
    ({"quantiles": (0.0, 0.9)}, "quantiles must satisfy"),
    ({"dims": (0, 0)}, "dims must name two different"),
    ({"dims": (0, 2)}, "dims must name two different"),
])
def test_manifold_codes_reject_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plotting.manifold_codes(**kwargs)


def test_manifold_grid_decodes_in_one_call_and_places_each_digit(monkeypatch):
    decoder = models.build_decoder(2)
    batches = []

    def counting_decode(model, z):
        batches.append(np.shape(z))
        return latent.decode(model, z)

    monkeypatch.setattr(plotting, "decode", counting_decode)
    grid = plotting.manifold_grid(decoder, n=15)
    assert grid.shape == (420, 420)
    assert batches == [(225, 2)]
    codes = plotting.manifold_codes(15)
    top_right = latent.decode(decoder, codes[14])[..., 0]          # row 0, column 14
    bottom_left = latent.decode(decoder, codes[14 * 15])[..., 0]   # row 14, column 0
    np.testing.assert_allclose(grid[:28, -28:], top_right, atol=1e-6)
    np.testing.assert_allclose(grid[-28:, :28], bottom_left, atol=1e-6)


def test_tile_images_keeps_reading_order():
    images = np.arange(6)[:, None, None] * np.ones((6, 2, 3))
    tiled = plotting.tile_images(images, n_rows=2)
    assert tiled.shape == (4, 9)
    assert tiled[0, 0] == 0 and tiled[0, 3] == 1 and tiled[2, 0] == 3 and tiled[3, 8] == 5


def test_plot_helpers_return_figures(small_images):
    x, y, *_ = small_images
    vae = models.build_vae(2)
    z = latent.encode(vae, x)
    figures = [plotting.plot_manifold(vae, n=5), plotting.plot_latent_scatter(z, y),
               plotting.plot_reconstructions(x[:4], latent.decode(vae, z[:4])),
               plotting.plot_history({"loss": [3, 2, 1], "val_elbo": [-3.5, -2.5, -2], "kl_loss": [1, 1, 1]})]
    for figure in figures:
        assert isinstance(figure, matplotlib.figure.Figure) and figure.axes
    with pytest.raises(ValueError, match=r"z must have shape \(n, >=2\)"):
        plotting.plot_latent_scatter(np.zeros(5), np.zeros(5))


def test_history_curves_have_readable_labels_and_can_start_at_zero():
    history = {"loss": [170.0, 160.0], "kl_loss": [3.2, 3.0], "val_elbo": [-165.0, -158.0]}
    ax = plotting.plot_history(history).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["training loss", "KL", "validation -ELBO"]
    np.testing.assert_allclose(ax.get_lines()[-1].get_ydata(), [165.0, 158.0])  # drawn as -ELBO
    kl_only = plotting.plot_history(history, keys=["kl_loss"], from_zero=True).axes[0]
    assert kl_only.get_ylim()[0] == 0.0
    assert plotting.plot_history(history, keys=["kl_loss"]).axes[0].get_ylim()[0] > 2.0
