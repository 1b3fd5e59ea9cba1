"""Data loaders: the bundled sample, IDX folders, the 'auto' fallback and input checks."""

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import load_script, write_idx
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
    assert "LeCun" in info["origin"] and "t10k" in info["origin"] and "CC BY-SA" in info["licence"]
    assert info["source_md5"] == data.CANONICAL_MNIST


def test_bundled_sample_rebuilds_exactly_from_the_canonical_files(full_mnist_dir):
    rebuilt = load_script("build_mnist_sample").build(full_mnist_dir)
    with np.load(data.sample_path()) as bundled:
        assert sorted(bundled.files) == sorted(rebuilt)
        for name in rebuilt:
            assert np.array_equal(bundled[name], rebuilt[name]), name


def test_sample_test_digits_come_from_mnists_test_set_and_never_from_its_training_set(full_mnist, sample):
    """The leak that the old sample had: a model trained on full MNIST must never have seen these."""
    (mnist_train, _), (mnist_test, mnist_test_labels) = full_mnist
    (_, _), (x_test, y_test) = sample
    with np.load(data.sample_path()) as bundled:
        test_index = bundled["test_index"]
    assert np.array_equal(mnist_test[test_index], x_test) and np.array_equal(mnist_test_labels[test_index], y_test)
    training_images = {image.tobytes() for image in mnist_train}
    assert not any(image.tobytes() in training_images for image in x_test)


def test_canonical_mnist_is_recognised_by_its_checksums(full_mnist_dir, capsys):
    (x_train, _), (x_test, _) = data.load_mnist(full_mnist_dir)
    assert (len(x_train), len(x_test)) == (60_000, 10_000)
    assert capsys.readouterr().out.strip() == ("Full MNIST from mnist/, checksums verified: "
                                              "60,000 training and 10,000 test digits")


def test_other_idx_folders_are_reported_as_such(idx_folder, capsys):
    folder, _ = idx_folder
    data.load_mnist(folder)
    assert capsys.readouterr().out.strip() == (f"IDX files from {folder.name}/ (not the canonical MNIST files): "
                                              "120 training and 40 test digits")


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
    from vae_helpers._backend import keras

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


def test_is_canonical_mnist_checks_every_file(full_mnist_dir, idx_folder, tmp_path):
    assert data.is_canonical_mnist(full_mnist_dir)
    assert not data.is_canonical_mnist(idx_folder[0])
    assert not data.is_canonical_mnist(tmp_path / "missing")


def test_pixel_codes_round_trip_images_made_from_bytes(idx_folder):
    folder, arrays = idx_folder
    (x_train, _), _ = data.load_idx_folder(folder)
    codes = data.as_pixel_codes(x_train, chunk=7)  # chunks that do not divide the 120 images
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes[..., 0], arrays["train-images-idx3-ubyte"])  # the bytes of the file
    assert np.array_equal(data.pixel_levels()[codes], x_train)
    assert data.pixel_levels()[codes].tobytes() == x_train.tobytes()  # bit for bit, not only equal values


@pytest.mark.parametrize("change", ["noise", "scale", "float64", "one_pixel"])
def test_pixel_codes_refuse_images_not_made_from_bytes(sample, change):
    (x_train, _), _ = sample
    x = x_train[:50].copy()
    if change == "noise":
        x = np.clip(x + np.random.default_rng(0).normal(0, 0.01, x.shape).astype(np.float32), 0, 1)
    elif change == "scale":
        x = x * np.float32(0.5)
    elif change == "float64":
        x = x.astype(np.float64)
    else:
        x[3, 10, 10, 0] = np.nextafter(x[3, 10, 10, 0], np.float32(2))
    assert data.as_pixel_codes(x) is None
