"""The chapter's way of drawing the manifold, kept for timing: one ``decoder.predict`` per grid point.

Shared by ``book_recipe.py`` (legacy tf_keras, in a subprocess) and ``run_benchmarks.py`` (Keras 3);
it only needs numpy, scipy and a decoder with a ``predict`` method.
"""

import numpy as np
from scipy.stats import norm


def book_manifold_loop(decoder, n=15, digit_size=28, batch_size=16):
    """Fill an n x n canvas with one ``predict`` call of 16 copies of each grid code, as the book does."""
    values = norm.ppf(np.linspace(0.05, 0.95, n))
    canvas = np.zeros((n * digit_size, n * digit_size))
    for row, second in enumerate(values):
        for col, first in enumerate(values):
            batch = np.repeat([[first, second]], batch_size, axis=0)
            image = decoder.predict(batch, batch_size=batch_size, verbose=0)[0, :, :, 0]
            canvas[row * digit_size:(row + 1) * digit_size, col * digit_size:(col + 1) * digit_size] = image
    return canvas
