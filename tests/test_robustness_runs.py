"""Run folders survive failed commands (issue 18): every refused ``train_run`` leaves each file byte for byte,
a run that fails later says so in run.json and keeps what it held, and resume is strict.

The runs are tiny (108 training images, 2 or 3 epochs) and trained in this process."""

import errno
import json
import shutil

import numpy as np
import pytest

from tests.conftest import write_idx
from vae_helpers import data, files, training
from vae_helpers.config import TrainSettings

COMMAND = "python -m vae_helpers train --data digits --epochs 2 --seed 3"


def make_digits(folder, sample, n_train=120, n_test=40, offset=0, test_size=28):
    """An IDX folder of real digits (``offset`` picks other ones; ``test_size`` other than 28 pads the test images)."""
    (x_train, y_train), (x_test, y_test) = sample
    folder.mkdir(parents=True, exist_ok=True)
    test = np.round(x_test[:n_test, ..., 0] * 255).astype(np.uint8)
    if test_size != 28:
        pad = test_size - 28
        test = np.pad(test, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    write_idx(folder / "train-images-idx3-ubyte",
              np.round(x_train[offset:offset + n_train, ..., 0] * 255).astype(np.uint8), 0x803)
    write_idx(folder / "train-labels-idx1-ubyte", y_train[offset:offset + n_train].astype(np.uint8), 0x801)
    write_idx(folder / "t10k-images-idx3-ubyte", test, 0x803)
    write_idx(folder / "t10k-labels-idx1-ubyte", y_test[:n_test].astype(np.uint8), 0x801)
    return folder


@pytest.fixture(scope="module")
def digits(tmp_path_factory, sample):
    return make_digits(tmp_path_factory.mktemp("digits"), sample)


def settings(digits, **changes):
    return TrainSettings(**{"data": str(digits), "epochs": 2, "seed": 3, **changes})


@pytest.fixture(scope="module")
def finished(digits, tmp_path_factory):
    """A finished 2-epoch run; tests work on copies of it."""
    out = tmp_path_factory.mktemp("runs") / "finished"
    training.train_run(out, settings(digits), progress=None, command=COMMAND, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def straight(digits, tmp_path_factory):
    """The same run trained for 3 epochs at once: what a resumed run must end with."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    return training.train_run(out, settings(digits, epochs=3), progress=None, log=lambda *_: None)


@pytest.fixture
def run(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "run")


def snapshot(folder):
    """Every file under ``folder`` with its bytes (and nothing else)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def record(folder):
    return json.loads((folder / training.RECORD_FILE).read_text())


def backup(folder, name):
    return folder / training.CHECKPOINT_DIR / training.BACKUP_DIR / name


def resume(out, **asked):
    return training.train_run(out, asked, resume=True, progress=None, command="python -m vae_helpers train --resume",
                              log=lambda *_: None)


def test_a_finished_run_records_its_data_digest_and_weights_checksum(finished, digits):
    saved = record(finished)
    assert saved["status"] == "finished" and saved["command"] == COMMAND
    assert saved["data_sha256"] == data.data_digest(data.load_mnist(str(digits)))
    assert saved["weights_sha256"] == files.sha256_of(finished / training.WEIGHTS_FILE)


# --- case 1: a failed resume loses nothing ---------------------------------------------------------


@pytest.mark.parametrize("damage", ["metadata", "truncated weights"])
def test_resume_with_both_backups_damaged_is_refused_and_changes_no_file(run, damage):
    for name in (("training_metadata.json", "training_metadata.json.bkp") if damage == "metadata"
                 else ("latest.weights.h5", "latest.weights.h5.bkp")):
        path = backup(run, name)
        path.write_bytes(b'{"epo' if damage == "metadata" else path.read_bytes()[:5000])
    before = snapshot(run)
    with pytest.raises(training.RunFolderError, match="no usable checkpoint to resume from") as caught:
        resume(run, epochs=4)
    assert "latest.weights.h5" in str(caught.value) or "training_metadata.json" in str(caught.value)
    assert snapshot(run) == before


def test_resume_after_run_json_was_edited_is_refused_and_changes_no_file(run):
    saved = record(run)
    saved["settings"]["latent_dim"] = 16
    files.write_json(run / training.RECORD_FILE, saved)
    before = snapshot(run)
    with pytest.raises(training.RunFolderError, match="no longer match the checkpoint"):
        resume(run, epochs=4)
    assert snapshot(run) == before


def test_a_resume_that_fails_late_records_failed_and_keeps_the_record(run, monkeypatch):
    before = record(run)
    weights = (run / training.WEIGHTS_FILE).read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure after training")

    monkeypatch.setattr(training, "knn_latent_accuracy", broken)
    with pytest.raises(RuntimeError, match="simulated failure"):
        resume(run, epochs=3)
    after = record(run)
    assert after["status"] == "failed" and after["error"] == "RuntimeError: simulated failure after training"
    for key, value in before.items():  # the command, settings, history, test ELBO, k-NN score: all kept
        if key != "status":
            assert after[key] == value, key
    assert after["resumes"] == [{"command": "python -m vae_helpers train --resume", "epochs": 3}]
    assert (run / training.WEIGHTS_FILE).read_bytes() == weights  # scored before the weights are replaced


def test_a_successful_resume_keeps_the_original_command(run, straight):
    resumed_vae, resumed = resume(run, epochs=3)
    assert resumed["status"] == "finished" and "error" not in resumed
    assert resumed["command"] == COMMAND
    assert resumed["resumes"] == [{"command": "python -m vae_helpers train --resume", "epochs": 3}]
    assert resumed["settings"]["epochs"] == 3 and len(resumed["history"]["loss"]) == 3
    for a, b in zip(straight[0].get_weights(), resumed_vae.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_damaged_last_backup_falls_back_to_the_one_before_and_says_so(run, straight):
    backup(run, "training_metadata.json").write_text("garbage")
    messages = []
    resumed_vae, resumed = training.train_run(run, {"epochs": 3}, resume=True, progress=None, log=messages.append)
    assert any("damaged; resuming from the one before (epoch 1)" in m for m in messages), messages
    assert "Resuming" in messages[-1] and "after epoch 1 of 3" in messages[-1]
    for a, b in zip(straight[0].get_weights(), resumed_vae.get_weights(), strict=True):  # epoch 2 trained again
        np.testing.assert_array_equal(a, b)


def test_garbage_history_is_refused_by_name_and_changes_no_file(run):
    (run / training.CHECKPOINT_DIR / training.HISTORY_FILE).write_text("this is not,a history\n1,2\n")
    before = snapshot(run)
    with pytest.raises(training.RunFolderError, match=r"history.csv: not a training history"):
        resume(run, epochs=3)
    assert snapshot(run) == before


# --- case 4: --force checks settings and data before deleting anything ------------------------------


@pytest.mark.parametrize("changes, error", [({"data": "/no/such/folder"}, data.DataError),
                                            ({"batch_size": 0}, ValueError),
                                            ({"validation_fraction": 0.999}, ValueError)])
def test_force_with_bad_settings_or_data_deletes_nothing(run, digits, changes, error):
    before = snapshot(run)
    with pytest.raises(error):
        training.train_run(run, settings(digits, **changes), force=True, progress=None)
    assert snapshot(run) == before


def test_force_replaces_the_old_run_files(run, digits):
    (run / "notes.txt").write_text("mine")
    training.train_run(run, settings(digits, epochs=1), force=True, progress=None)
    assert record(run)["settings"]["epochs"] == 1 and len(record(run)["history"]["loss"]) == 1
    assert (run / "notes.txt").read_text() == "mine"  # only the files a run writes are replaced


# --- cases 6 and 7: resume is strict ---------------------------------------------------------------


def test_resume_on_other_data_of_the_same_size_is_refused_naming_both_digests(run, sample, tmp_path):
    other = make_digits(tmp_path / "other", sample, offset=500)  # same sizes, other digits
    saved = record(run)
    saved["settings"]["data"] = str(other)  # as if the folder's files had been replaced
    files.write_json(run / training.RECORD_FILE, saved)
    before = snapshot(run)
    with pytest.raises(training.RunFolderError, match="resume with the same data") as caught:
        resume(run, epochs=3)
    message = str(caught.value)
    assert saved["data_sha256"][:16] in message
    assert data.data_digest(data.load_mnist(str(other)))[:16] in message
    assert snapshot(run) == before


def test_resume_on_another_backend_is_refused_naming_both(run):
    saved = record(run)
    other = next(name for name in ("jax", "torch") if name != training.BACKEND)
    saved["versions"] = {**saved["versions"], "backend": other}  # as if trained under KERAS_BACKEND=other
    files.write_json(run / training.RECORD_FILE, saved)
    before = snapshot(run)
    with pytest.raises(training.RunFolderError, match=f"trained on Keras' {other} backend and this Python runs on "
                                                      f"{training.BACKEND}.*KERAS_BACKEND={other}"):
        resume(run, epochs=3)
    assert snapshot(run) == before


def test_the_record_names_the_backend_and_its_version(run):
    versions = record(run)["versions"]
    assert versions["backend"] == training.BACKEND == training.keras.backend.backend()
    assert versions[training.BACKEND] == __import__(training.BACKEND).__version__


@pytest.mark.parametrize("flag, value", [("latent_dim", 16), ("data", "sample"), ("loss", "book"), ("batch_size", 32),
                                         ("seed", 4), ("learning_rate", 0.01), ("kl_warmup", 1.0),
                                         ("precision", "bfloat16")])
def test_flags_that_cannot_change_on_resume_are_refused_by_name(run, flag, value):
    before = snapshot(run)
    with pytest.raises(training.RunFolderError, match=f"--{flag.replace('_', '-')} {value} differs from this run's"):
        resume(run, **{flag: value})
    assert snapshot(run) == before


def test_flags_equal_to_the_record_are_accepted_on_resume(digits):
    saved = TrainSettings(data=str(digits) + "/", epochs=2, seed=3).__dict__
    resumed = training.resume_settings("run", saved, {"data": str(digits), "seed": 3, "latent_dim": 2, "epochs": 5},
                                       done=2)
    assert resumed == TrainSettings(**{**saved, "epochs": 5})


def test_resume_with_fewer_epochs_than_done_is_refused(run):
    before = snapshot(run)
    with pytest.raises(training.RunFolderError, match="--epochs 1 is fewer than the 2 epochs this run has already"):
        resume(run, epochs=1)
    assert snapshot(run) == before


# --- divergence, disk full, Ctrl-C: recorded, nothing half-written ----------------------------------


def test_divergence_stops_before_validation_and_is_recorded(digits, tmp_path, monkeypatch):
    scored = []

    def elbo_spy(model, *args, **kwargs):
        scored.append(all(np.all(np.isfinite(w)) for w in model.get_weights()))
        return training_elbo(model, *args, **kwargs)

    training_elbo = training.elbo
    monkeypatch.setattr(training, "elbo", elbo_spy)
    out = tmp_path / "diverged"
    with pytest.raises(training.TrainingDiverged, match="training diverged; lower the learning rate"):
        training.train_run(out, settings(digits, learning_rate=1e6), progress=None)
    saved = record(out)
    assert saved["status"] == "diverged" and "training diverged" in saved["error"]
    assert all(scored), "the validation ELBO ran on NaN weights"


def test_a_full_disk_names_the_file_removes_partial_files_and_is_recorded(run, monkeypatch):
    weights = (run / training.WEIGHTS_FILE).read_bytes()

    def disk_full(vae, path):
        with open(path, "wb") as handle:
            handle.write(b"\x89HDF\r\n\x1a\n" + bytes(1000))  # half a file, as h5py leaves it
        raise OSError(errno.ENOSPC, "Can't synchronously write data (file write failed)")

    monkeypatch.setattr(training, "save_vae_weights", disk_full)
    with pytest.raises(files.FileWriteError) as caught:
        resume(run, epochs=3)
    assert caught.value.filename == str(run / training.WEIGHTS_FILE)
    assert "No space left on device" in caught.value.strerror
    assert not [p for p in run.rglob("*") if p.name.startswith(".partial-")]
    assert (run / training.WEIGHTS_FILE).read_bytes() == weights
    assert record(run)["status"] == "failed" and "No space left on device" in record(run)["error"]


def test_ctrl_c_during_training_is_recorded_as_interrupted(run, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_vae", interrupted)
    with pytest.raises(KeyboardInterrupt):
        resume(run, epochs=3)
    assert record(run)["status"] == "interrupted" and record(run)["test_elbo"] is not None


# --- data that cannot train the network is refused before the folder is touched ---------------------


def test_test_images_of_another_size_are_refused_naming_the_split(sample, tmp_path):
    folder = make_digits(tmp_path / "mixed", sample, test_size=32)
    with pytest.raises(data.DataError, match=r"training images are 28x28 pixels but the test images .* are 32x32"):
        training.train_run(tmp_path / "run", settings(folder), progress=None)
    assert not (tmp_path / "run").exists()


def test_a_validation_fraction_that_leaves_nothing_to_train_names_the_flag(digits, tmp_path):
    with pytest.raises(ValueError, match=r"--validation-fraction 0.999 holds out all 120 training images"):
        training.train_run(tmp_path / "run", settings(digits, validation_fraction=0.999), progress=None)
    assert not (tmp_path / "run").exists()


def test_a_run_recorded_before_data_digests_resumes_on_data_of_its_sizes(run):
    saved = record(run)
    digest = saved.pop("data_sha256")
    files.write_json(run / training.RECORD_FILE, saved)
    _, resumed = resume(run, epochs=3)
    assert resumed["status"] == "finished" and resumed["data_sha256"] == digest
