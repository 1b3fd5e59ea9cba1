"""Bad input gets one named error (issue 18): nonsense CLI values, unreadable files, whole-number codes,
sizes that would not fit a 2 GB Binder kernel, and files that are not notebooks."""

import errno

import numpy as np
import pytest

from tests.conftest import load_script
from vae_helpers import cli, config, data, evaluation, files, latent, losses, models, plotting, training


def one_error_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


@pytest.mark.parametrize("flag, value, says", [
    ("--epochs", "0", "--epochs must be a positive integer, got 0"),
    ("--epochs", "-3", "--epochs must be a positive integer"),
    ("--batch-size", "0", "--batch-size must be a positive integer"),
    ("--latent-dim", "0", "--latent-dim must be a positive integer"),
    ("--learning-rate", "nan", "--learning-rate must be a positive number"),
    ("--learning-rate", "-1", "--learning-rate must be a positive number"),
    ("--learning-rate", "inf", "--learning-rate must be a positive number"),
    ("--validation-fraction", "1.5", "--validation-fraction must be in [0, 1)"),
    ("--validation-fraction", "nan", "--validation-fraction must be in [0, 1)"),
    ("--kl-warmup", "-1", "--kl-warmup must be a number of epochs"),
    ("--kl-warmup", "50", "--kl-warmup must be a number of epochs"),
    ("--seed", "-1", "--seed must be an integer of at least 0"),
    ("--seed", str(2**32), "--seed must be below 2**32"),
    ("--batch-size", "100000", "training with --batch-size 100000"),
    ("--latent-dim", "1000000", "--latent-dim 1000000"),
    ("--data", "", "--data must be auto, keras, sample or a folder"),
])
def test_nonsense_values_get_one_error_line_naming_the_flag(flag, value, says, tmp_path, capsys):
    assert cli.main(["train", flag, value, "--out", tmp_path / "run"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: ") and says in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, says", [(["--epochs", "two"], "argument --epochs: invalid int value"),
                                        (["--loss", "mse"], "argument --loss: invalid choice"),
                                        (["--force", "--resume"], "argument --resume: not allowed with argument --force")])
def test_values_argparse_refuses_get_its_one_error_line(args, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", *args, "--out", tmp_path / "run"])
    assert caught.value.code == 2
    assert says in one_error_line(capsys.readouterr().err)


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "run" / "weights.weights.h5"

    def write_until_full(tmp):
        raise OSError(errno.ENOSPC, "Can't synchronously write data (file write failed: ...\n, errno = 28, ...)")

    def disk_full(*args, **kwargs):
        files.atomic_write(target, write_until_full)

    (tmp_path / "run").mkdir()
    monkeypatch.setattr(training, "train_run", disk_full)
    assert cli.main(["train", "--data", "sample", "--out", tmp_path / "run"]) == 2
    assert capsys.readouterr().err == (f"error: {target}: cannot write (No space left on device; "
                                       "free some disk space or choose another folder)\n")


def test_resume_settings_refuse_zero_epochs():
    with pytest.raises(ValueError, match="--epochs must be a positive integer, got 0"):
        training.resume_settings("run", config.TrainSettings().__dict__, {"epochs": 0}, done=1)


def test_a_history_with_a_cut_row_is_named(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_elbo\n0,9.0,-9.0\n1,8.0")  # the disk filled up in the middle of a row
    with pytest.raises(training.RunFolderError, match="history.csv: not a training history"):
        training.read_history(path)


def test_an_unreadable_data_file_says_permission_denied(idx_folder, monkeypatch):
    folder, _ = idx_folder
    real_open = open

    def denied(path, *args, **kwargs):
        if str(path).endswith("train-images-idx3-ubyte"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(data, "open", denied, raising=False)  # root can read a mode-000 file; a learner cannot
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte: cannot read this data file \(permission denied\)"):
        data.load_mnist(str(folder))


def test_the_data_digest_changes_with_one_pixel(sample):
    (x_train, y_train), (x_test, y_test) = sample
    splits = ((x_train[:50], y_train[:50]), (x_test[:20], y_test[:20]))
    changed = x_train[:50].copy()
    changed[3, 10, 10, 0] = 1.0 - changed[3, 10, 10, 0]
    assert data.data_digest(splits) == data.data_digest(((x_train[:50].copy(), y_train[:50]), splits[1]))
    assert data.data_digest(splits) != data.data_digest(((changed, y_train[:50]), splits[1]))


def test_kl_divergence_takes_whole_numbers_as_floats():
    mean, log_var = np.array([[1, 2], [0, -1]]), np.array([[0, 1], [2, 0]])
    from_ints = np.asarray(losses.kl_divergence(mean, log_var))
    from_floats = np.asarray(losses.kl_divergence(mean.astype(np.float32), log_var.astype(np.float32)))
    np.testing.assert_array_equal(from_ints, from_floats)
    np.testing.assert_array_equal(np.asarray(losses.kl_divergence([[1, 2]], [[0, 1]])), from_floats[:1])
    with pytest.raises(ValueError, match="z_mean must hold numbers"):
        losses.kl_divergence(np.array([["a", "b"]]), np.array([[0.0, 1.0]]))


# --- memory limits: refused with the estimate, before anything is allocated --------------------------


@pytest.fixture(scope="module")
def vae():
    return models.build_vae(2)


def test_a_huge_manifold_is_refused_with_its_estimate():
    with pytest.raises(config.MemoryLimitError, match=r"a 5000 x 5000 manifold .* MB of memory .* choose a smaller n"):
        plotting.manifold_codes(n=5000)


def test_the_limit_is_the_estimate_against_the_environment_setting(monkeypatch):
    with pytest.raises(config.MemoryLimitError):  # 160,000 digits: about 1.4 GB with the default 1 GB limit
        plotting.manifold_codes(n=400)
    monkeypatch.setenv(config.MEMORY_ENV, "4096")
    assert plotting.manifold_codes(n=400).shape == (160_000, 2)


def test_decoding_too_many_codes_is_refused(vae):
    with pytest.raises(config.MemoryLimitError, match="decoding 400,000 codes"):
        latent.decode(vae, np.zeros((400_000, 2), np.float32))


@pytest.mark.parametrize("score, kwargs", [(evaluation.importance_weighted_nll, {"k": 100_000}),
                                           (evaluation.elbo, {"n_samples": 10_000})])
def test_too_many_samples_per_batch_are_refused_with_a_batch_size_that_fits(vae, small_images, score, kwargs):
    x, *_ = small_images
    with pytest.raises(config.MemoryLimitError, match=r"lower batch_size to \d+ or fewer, or use fewer samples"):
        score(vae, x[:60], **kwargs)


def test_the_pixel_judge_refuses_a_batch_too_large(small_images):
    x, y, *_ = small_images
    with pytest.raises(config.MemoryLimitError, match="lower batch_size"):
        evaluation.classify_digits(x[:5], np.zeros((200_000, 784), np.float32), np.zeros(200_000, np.int64),
                                   batch_size=1000)


def test_training_with_a_batch_too_large_is_refused(vae, small_images):
    x, *_ = small_images
    with pytest.raises(config.MemoryLimitError, match="training with batch_size=5000"):
        training.train_vae(vae, x, epochs=1, batch_size=5000)


# --- scripts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["hello", '{"cells": 3}'])
def test_run_notebooks_names_a_file_that_is_not_a_notebook(tmp_path, content):
    path = tmp_path / "notes.ipynb"
    path.write_text(content)
    with pytest.raises(SystemExit) as caught:
        load_script("run_notebooks").main([str(path), "--no-save"])
    assert str(caught.value).startswith(f"run_notebooks: {path}: not a Jupyter notebook (")
    assert path.read_text() == content
