"""Shared fixtures: the bundled data and small models for fast tests."""

from pathlib import Path

import numpy as np
import pytest

from vae_helpers import data


@pytest.fixture(scope="session")
def sample():
    """The bundled sample: (x_train, y_train), (x_test, y_test)."""
    return data.load_sample()


@pytest.fixture(scope="session")
def small_images(sample):
    """A class-balanced 200-image training subset (20 per digit) and 50 test images."""
    (x_train, y_train), (x_test, y_test) = sample
    x_small, y_small = data.subset(x_train, y_train, per_class=20, seed=1)
    return x_small, y_small, x_test[:50], y_test[:50]


def write_idx(path, array, magic):
    """Write ``array`` (uint8) as an IDX file with the given magic number; gzip if path ends in .gz."""
    import gzip

    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(payload)


@pytest.fixture
def idx_folder(tmp_path, sample):
    """A folder of the four IDX files holding 120 train / 40 test real digits; returns (folder, arrays)."""
    (x_train, y_train), (x_test, y_test) = sample
    arrays = {
        "train-images-idx3-ubyte": np.round(x_train[:120, ..., 0] * 255).astype(np.uint8),
        "train-labels-idx1-ubyte": y_train[:120].astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": np.round(x_test[:40, ..., 0] * 255).astype(np.uint8),
        "t10k-labels-idx1-ubyte.gz": y_test[:40].astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(tmp_path / name, array, 0x803 if array.ndim == 3 else 0x801)
    return tmp_path, arrays


@pytest.fixture(scope="session")
def full_mnist_dir(request):
    """The folder of the canonical MNIST files (``--mnist-dir``); skips without it, fails with ``--require-full-mnist``."""
    folder = Path(request.config.getoption("--mnist-dir"))
    missing = [stem for stem in data.CANONICAL_MNIST
               if not any((folder / name).is_file() for name in (stem, stem + ".gz"))]
    if missing:
        reason = f"full MNIST is not in {folder} (missing {', '.join(missing)}; pass --mnist-dir)"
        if request.config.getoption("--require-full-mnist"):
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def full_mnist(full_mnist_dir):
    """Full MNIST as (x_train, y_train), (x_test, y_test), read from ``--mnist-dir``."""
    return data.load_idx_folder(full_mnist_dir)


def load_script(name):
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
