"""Environment switches and reproducibility shared by the package, the CLI and the notebooks."""

import os
import random

import numpy as np

from vae_helpers._tf import keras, tf

#: Forces the data source of ``load_mnist(source="auto")``: "keras", "sample" or a folder path.
DATA_ENV = "VAE_HELPERS_DATA"
#: Set to 1 to shrink data and epochs in the notebooks (used by the test suite and CI).
QUICK_ENV = "VAE_HELPERS_QUICK"
#: Where notebooks save what they train (default: ``vae-runs`` in the working directory).
RUNS_ENV = "VAE_HELPERS_RUNS"


def quick_mode():
    """True when ``VAE_HELPERS_QUICK`` is set to anything but "" or "0"."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def runs_dir():
    """Folder for runs saved by notebooks: ``$VAE_HELPERS_RUNS`` or ``./vae-runs``."""
    return os.path.abspath(os.environ.get(RUNS_ENV, "vae-runs"))


def set_seed(seed=0, deterministic=True):
    """Seed Python, NumPy, TensorFlow and Keras so a training run repeats exactly on one machine.

    With ``deterministic=True`` TensorFlow also picks deterministic kernels, which is what makes
    two CPU runs with the same seed give bit-identical weights.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()
