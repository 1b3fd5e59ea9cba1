"""Figures for the chapter: the latent manifold, the latent scatter, reconstructions, loss curves.

Each ``plot_*`` function draws on a given matplotlib ``ax`` (or makes a figure) and returns the
figure, so notebooks show it and the CLI saves it.
"""

import numpy as np
from scipy.stats import norm

from vae_helpers.config import check_count, check_memory
from vae_helpers.latent import decode, latent_dim_of


#: A decoded 28x28 digit in float32; a manifold holds each one about three times (decoded, in batches, tiled)
GRID_IMAGE_BYTES = 4 * 28 * 28


def _figure(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def manifold_codes(n=15, quantiles=(0.05, 0.95), latent_dim=2, dims=(0, 1)):
    """The (n*n, latent_dim) grid of codes behind ``manifold_grid``, row by row from the top.

    Evenly spaced probabilities mapped through the Gaussian inverse CDF (``norm.ppf``), so the grid
    is dense where the N(0, I) prior puts its mass. Other dimensions stay at 0.
    """
    n = check_count(n, "n", minimum=2)
    check_memory(n * n * (4 * latent_dim + 3 * GRID_IMAGE_BYTES), f"a {n} x {n} manifold ({n * n:,} decoded digits)",
                 "choose a smaller n (the chapter uses 15)")
    low, high = quantiles
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"quantiles must satisfy 0 < low < high < 1, got {quantiles}")
    if len(dims) != 2 or len(set(dims)) != 2 or not all(0 <= d < latent_dim for d in dims):
        raise ValueError(f"dims must name two different latent dimensions below {latent_dim}, got {dims}")
    values = norm.ppf(np.linspace(low, high, n))
    rows, cols = np.meshgrid(values[::-1], values, indexing="ij")  # top row = largest z[dims[1]]
    codes = np.zeros((n * n, latent_dim), dtype=np.float32)
    codes[:, dims[0]] = cols.ravel()
    codes[:, dims[1]] = rows.ravel()
    return codes


def tile_images(images, n_rows, gap=0, fill=1.0):
    """Arrange (n_rows * n_cols, h, w[, 1]) images row by row into one 2-D array, ``gap`` pixels of ``fill`` apart."""
    images = np.asarray(images)
    images = images.reshape(images.shape[:3])
    n_cols = len(images) // n_rows
    h, w = images.shape[1:3]
    canvas = np.full((n_rows, h + gap, n_cols, w + gap), fill, dtype=images.dtype)
    canvas[:, :h, :, :w] = images.reshape(n_rows, n_cols, h, w).transpose(0, 2, 1, 3)
    return canvas.reshape(n_rows * (h + gap), n_cols * (w + gap))[:n_rows * (h + gap) - gap, :n_cols * (w + gap) - gap]


def manifold_grid(decoder, n=15, quantiles=(0.05, 0.95), dims=(0, 1)):
    """Decode an n x n Gaussian-quantile grid of codes in one batched call; returns one 2-D image.

    x grows to the right along ``dims[0]``, y grows upwards along ``dims[1]``, as in a scatter plot.
    """
    codes = manifold_codes(n, quantiles, latent_dim_of(decoder), dims)
    return tile_images(decode(decoder, codes), n)


def _tick_label(value):
    """One decimal, and "0.0" rather than "-0.0" for the middle of the grid."""
    return f"{round(float(value), 1) + 0.0:.1f}"


def plot_manifold(decoder_or_grid, n=15, quantiles=(0.05, 0.95), ax=None, title=None):
    """Show the decoded manifold; accepts a decoder/VAE or a grid from ``manifold_grid``."""
    grid = decoder_or_grid if isinstance(decoder_or_grid, np.ndarray) else manifold_grid(decoder_or_grid, n, quantiles)
    fig, ax = _figure(ax, (7, 7))
    ax.imshow(grid, cmap="Greys_r", vmin=0, vmax=1)
    ticks = norm.ppf(np.linspace(*quantiles, n))
    digit = grid.shape[0] // n
    positions = np.arange(n) * digit + digit / 2
    show = np.unique(np.linspace(0, n - 1, min(n, 5)).round().astype(int))
    ax.set_xticks(positions[show], [_tick_label(t) for t in ticks[show]])
    ax.set_yticks(positions[show], [_tick_label(t) for t in ticks[::-1][show]])
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title or "Decoded latent grid (Gaussian quantiles)")
    return fig


def plot_latent_scatter(z, labels, ax=None, title="Test digits in latent space (posterior means)"):
    """Scatter 2-D codes coloured by digit class, with a legend."""
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"z must have shape (n, >=2), got {z.shape}")
    fig, ax = _figure(ax, (7, 6))
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title)
    return fig


def plot_reconstructions(x, x_decoded, n=10, title="Originals (top) and reconstructions (bottom)"):
    """Originals above their reconstructions, ``n`` pairs."""
    import matplotlib.pyplot as plt

    n = min(n, len(x))
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.6))
    for i in range(n):
        for row, images in enumerate((x, x_decoded)):
            axes[row, i].imshow(np.asarray(images[i]).squeeze(), cmap="Greys_r", vmin=0, vmax=1)
            axes[row, i].axis("off")
    fig.suptitle(title)
    return fig


#: How the curves of a training history are named in figures.
HISTORY_LABELS = {"loss": "training loss", "reconstruction_loss": "reconstruction", "kl_loss": "KL",
                  "val_elbo": "validation -ELBO"}


def plot_history(history, ax=None, keys=None, from_zero=False, title="Training curves (nats per image)"):
    """Loss curves from a Keras ``History`` or a ``train_vae`` history dict, with readable labels.

    The validation ELBO is drawn as -ELBO (dashed, black), comparable with an ``"elbo"`` loss;
    ``from_zero`` starts the y axis at 0, so that a small change does not look like a large one.
    """
    history = getattr(history, "history", history)
    keys = keys or [k for k in ("loss", "reconstruction_loss", "kl_loss", "val_elbo") if k in history]
    fig, ax = _figure(ax, (7, 4))
    for i, key in enumerate(keys):
        epochs = np.arange(1, len(history[key]) + 1)
        sign, style = (-1.0, dict(color="black", linestyle="--")) if key == "val_elbo" else (1.0, dict(color=f"C{i}"))
        ax.plot(epochs, sign * np.asarray(history[key]), label=HISTORY_LABELS.get(key, key), **style)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    if from_zero:
        ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(title)
    return fig
