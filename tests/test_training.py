"""Training: exact repeatability, best-epoch selection, checkpoints and resume."""

import json

import numpy as np
import pytest

from vae_helpers import models, set_seed, training


def fresh_vae(seed=0):
    set_seed(seed)
    return models.build_vae(2, seed=seed)


def assert_same_weights(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_same_seed_same_weights(small_images):
    x, *_ = small_images
    first, second = fresh_vae(), fresh_vae()
    training.train_vae(first, x, epochs=2, progress=None)
    training.train_vae(second, x, epochs=2, progress=None)
    assert_same_weights(first, second)


def test_history_and_best_epoch(small_images, capsys):
    x, _, x_val, _ = small_images
    vae = fresh_vae()
    state = training.train_vae(vae, x, epochs=3, x_val=x_val, progress="epoch")
    history = state.history
    assert len(history["loss"]) == len(history["val_elbo"]) == len(history["seconds"]) == 3
    assert history["loss"][-1] < history["loss"][0]
    assert state.best_epoch == int(np.argmax(history["val_elbo"])) + 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3 | loss ")
    from vae_helpers.evaluation import elbo
    assert elbo(vae, x_val, n_samples=training.VALIDATION_SAMPLES, seed=0) == pytest.approx(state.best_val_elbo)


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(small_images, tmp_path):
    x, _, x_val, _ = small_images
    straight = fresh_vae()
    training.train_vae(straight, x, epochs=3, x_val=x_val, progress=None)

    interrupted = fresh_vae()
    training.train_vae(interrupted, x, epochs=2, x_val=x_val, progress=None, checkpoint_dir=tmp_path)
    del interrupted
    resumed, state = training.load_checkpoint(tmp_path)
    assert state.epochs_done == 2 and len(state.history["loss"]) == 2
    training.train_vae(resumed, x, epochs=3, x_val=x_val, progress=None, checkpoint_dir=tmp_path, state=state)
    assert_same_weights(straight, resumed)


def test_checkpoint_errors_are_clear(tmp_path, small_images):
    with pytest.raises(training.RunFolderError, match="no checkpoint to resume from"):
        training.load_checkpoint(tmp_path)
    x, *_ = small_images
    training.train_vae(fresh_vae(), x[:32], epochs=1, progress=None, checkpoint_dir=tmp_path)
    model_file = json.loads((tmp_path / training.CHECKPOINT_STATE).read_text())["model_file"]
    (tmp_path / model_file).write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(training.RunFolderError, match="the checkpoint cannot be read"):
        training.load_checkpoint(tmp_path)


def test_train_vae_rejects_bad_arguments(small_images):
    x, *_ = small_images
    vae = fresh_vae()
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        training.train_vae(vae, x, epochs=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        training.train_vae(vae, x, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match=r"x_train must be in \[0, 1\]"):
        training.train_vae(vae, x * 255, epochs=1)


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = training.epoch_order(100, seed=1, epoch=4)
    assert np.array_equal(a, training.epoch_order(100, seed=1, epoch=4))
    assert not np.array_equal(a, training.epoch_order(100, seed=1, epoch=5))
    assert sorted(a) == list(range(100))


def test_split_validation_is_disjoint_and_complete(small_images):
    x, *_ = small_images
    fit, val = training.split_validation(x, 0.1, seed=0)
    assert len(fit) == 180 and len(val) == 20
    keys = {image.tobytes() for image in fit}
    assert not any(image.tobytes() in keys for image in val)
    with pytest.raises(ValueError, match="validation_fraction"):
        training.split_validation(x, 1.0, seed=0)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "run.json"
    training.write_json(target, {"ok": 1})

    def failing(path):
        open(path, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        training._atomic(target, failing)
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_checkpoint_keeps_one_model_and_one_best_file(small_images, tmp_path):
    x, _, x_val, _ = small_images
    state = training.train_vae(fresh_vae(), x[:64], epochs=3, x_val=x_val, progress=None, checkpoint_dir=tmp_path)
    saved = json.loads((tmp_path / training.CHECKPOINT_STATE).read_text())
    assert saved["model_file"] == "last-e0003.keras"
    assert saved["best_file"] == f"best-e{state.best_epoch:04d}.weights.h5"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([saved["model_file"], saved["best_file"], "state.json"])


def test_diverging_training_stops_with_a_clear_message(small_images):
    from vae_helpers import keras

    x, *_ = small_images
    vae = fresh_vae()
    vae.compile(keras.optimizers.Adam(learning_rate=1e6))
    with pytest.raises(ValueError, match="training diverged; lower the learning rate"):
        training.train_vae(vae, x[:64], epochs=3, progress=None)


@pytest.mark.parametrize("field, value, flag", [("epochs", 0, "--epochs"), ("batch_size", 0, "--batch-size"),
                                                 ("learning_rate", -1.0, "--learning-rate"),
                                                 ("validation_fraction", 1.5, "--validation-fraction"),
                                                 ("latent_dim", 0, "--latent-dim")])
def test_settings_name_the_bad_flag(field, value, flag):
    with pytest.raises(ValueError, match=flag):
        training.TrainSettings(**{field: value}).validate()


def test_force_never_touches_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "model.ckpt").write_text("precious")
    with pytest.raises(training.RunFolderError, match="not a run folder"):
        training.train_run(tmp_path, training.TrainSettings(data="sample", epochs=1), force=True)
    assert (tmp_path / "checkpoint" / "model.ckpt").read_text() == "precious"


def test_bad_settings_are_refused_before_the_folder_is_touched(tmp_path):
    with pytest.raises(ValueError, match="--batch-size"):
        training.train_run(tmp_path / "run", training.TrainSettings(data="sample", batch_size=0))
    assert not (tmp_path / "run").exists()
