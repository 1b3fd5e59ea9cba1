"""Weights files (issue 18, cases 2 and 3): a failed load leaves the model exactly as it was, the whole file
is checked before anything is assigned, and a damaged shipped file is refused with how to restore it."""

import hashlib
import json
import os
import shutil

import h5py
import numpy as np
import pytest

from vae_helpers import models, pretrained


def state(vae):
    """Every variable of the model and of its optimizer, as numpy copies."""
    variables = list(vae.variables) + list(getattr(vae.optimizer, "variables", []) or [])
    return [np.array(v.numpy(), copy=True) for v in variables]


def assert_same_state(before, vae):
    after = state(vae)
    assert len(after) == len(before)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def trained():
    """The shipped 2-D model: a trained model a learner would not want to lose."""
    return pretrained.load_pretrained(2)


def shipped_file(latent_dim):
    return pretrained._resource(f"{pretrained.SHIPPED[latent_dim]}.weights.h5")


def test_loading_the_16d_file_into_a_trained_2d_model_changes_no_weight(trained):
    before = state(trained)
    with pytest.raises(models.WeightsError, match=r"does not fit this VAE \(latent_dim=2\).*another latent_dim"):
        models.load_vae_weights(trained, shipped_file(16))
    assert_same_state(before, trained)


def test_a_file_with_the_right_shapes_but_other_names_changes_no_weight(trained, tmp_path):
    """Shapes pass; Keras then finds a layer missing in the file, while loading into a twin, not into the model."""
    renamed = tmp_path / "renamed.weights.h5"
    shutil.copy(shipped_file(2), renamed)
    with h5py.File(renamed, "r+") as handle:
        handle.move("encoder/layers/dense_1", "encoder/layers/dense_9")
    before = state(trained)
    with pytest.raises(models.WeightsError, match="renamed.weights.h5: does not fit this VAE"):
        models.load_vae_weights(trained, renamed)
    assert_same_state(before, trained)


def test_a_failure_while_keras_assigns_changes_no_weight(trained, monkeypatch):
    """Even if Keras fails half-way through a file, it was loading into a twin: the model is untouched."""
    original = models.VAE.load_weights

    def half_then_fail(self, path, *args, **kwargs):
        original(self, path, *args, **kwargs)
        raise ValueError("simulated failure after some layers were assigned")

    monkeypatch.setattr(models.VAE, "load_weights", half_then_fail)
    other = models.build_vae(2)
    before = state(other)
    with pytest.raises(models.WeightsError, match="simulated failure"):
        models.load_vae_weights(other, shipped_file(2))
    assert_same_state(before, other)


def test_a_good_file_loads_every_weight(trained):
    fresh = models.build_vae(2)
    models.load_vae_weights(fresh, shipped_file(2))
    for a, b in zip(trained.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("latent_dim", sorted(pretrained.SHIPPED))
def test_records_carry_the_sha256_of_their_weights(latent_dim):
    digest = hashlib.sha256(shipped_file(latent_dim).read_bytes()).hexdigest()
    assert pretrained.pretrained_record(latent_dim)["weights_sha256"] == digest


def test_the_autoencoders_record_carries_the_sha256_of_its_weights():
    path = pretrained._resource(f"{pretrained.SHIPPED_AUTOENCODER[2]}.weights.h5")
    assert pretrained.autoencoder_record(2)["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """The shipped files copied to a folder that load_pretrained then reads from."""
    for name in os.listdir(shipped_file(2).parent):
        shutil.copy(shipped_file(2).parent / name, tmp_path / name)
    monkeypatch.setattr(pretrained, "_resource", lambda name: tmp_path / name)
    return tmp_path


def zero_middle(path, size=20_000):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + size] = bytes(size)
    path.write_bytes(bytes(data))


def test_a_damaged_shipped_file_is_refused_with_how_to_restore_it(shipped_copy):
    zero_middle(shipped_copy / "vae_mnist_z2.weights.h5")
    with pytest.raises(models.WeightsError, match="the shipped weights file is damaged") as caught:
        pretrained.load_pretrained(2)
    assert "git checkout -- vae_helpers/resources/pretrained/vae_mnist_z2.weights.h5" in str(caught.value)
    assert "pip install --force-reinstall vae-helpers" in str(caught.value)


def test_a_damaged_shipped_autoencoder_is_refused_with_how_to_restore_it(shipped_copy):
    zero_middle(shipped_copy / "ae_mnist_z2.weights.h5")
    with pytest.raises(models.WeightsError, match="the shipped weights file is damaged") as caught:
        pretrained.load_autoencoder(2)
    assert "git checkout -- vae_helpers/resources/pretrained/ae_mnist_z2.weights.h5" in str(caught.value)


def test_a_vae_file_in_the_autoencoders_place_is_refused(shipped_copy):
    """Even with a record that vouches for it: the arrays are checked against the autoencoder's own weights."""
    shutil.copy(shipped_copy / "vae_mnist_z2.weights.h5", shipped_copy / "ae_mnist_z2.weights.h5")
    record = json.loads((shipped_copy / "ae_mnist_z2.json").read_text())
    record["weights_sha256"] = hashlib.sha256((shipped_copy / "ae_mnist_z2.weights.h5").read_bytes()).hexdigest()
    (shipped_copy / "ae_mnist_z2.json").write_text(json.dumps(record))
    with pytest.raises(models.WeightsError, match=r"does not fit the plain autoencoder \(latent_dim=2\)"):
        pretrained.load_autoencoder(2)


def test_a_damaged_shipped_record_is_named(shipped_copy):
    (shipped_copy / "vae_mnist_z2.json").write_text('{"settings": ')
    with pytest.raises(models.WeightsError, match="vae_mnist_z2.json: the record of the shipped model is damaged"):
        pretrained.load_pretrained(2)


def test_a_zeroed_block_in_a_users_file_is_not_detected(tmp_path):
    """What the structural check cannot see (said in the README): values that stay finite numbers."""
    copy = tmp_path / "mine.weights.h5"
    shutil.copy(shipped_file(2), copy)
    zero_middle(copy)
    vae = models.load_vae_weights(models.build_vae(2), copy)
    assert sum(int(np.sum(w == 0)) for w in vae.get_weights()) > 4000


def test_a_users_file_with_nan_values_is_refused(tmp_path):
    copy = tmp_path / "nan.weights.h5"
    shutil.copy(shipped_file(2), copy)
    with h5py.File(copy, "r+") as handle:
        kernel = handle["decoder/layers/dense/vars/0"]
        kernel[0, :3] = np.nan
    vae = models.build_vae(2)
    before = state(vae)
    with pytest.raises(models.WeightsError, match=r"nan.weights.h5: decoder/layers/dense/vars/0 holds NaN"):
        models.load_vae_weights(vae, copy)
    assert_same_state(before, vae)


def test_an_unreadable_file_says_permission_denied_not_corrupt(tmp_path, monkeypatch):
    copy = tmp_path / "locked.weights.h5"
    shutil.copy(shipped_file(2), copy)
    if os.geteuid() == 0:  # root reads a mode-000 file: make the read fail as it would for a learner
        def denied(path, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))
        monkeypatch.setattr(models, "open", denied, raising=False)
    else:
        copy.chmod(0)
    with pytest.raises(models.WeightsError, match=r"locked.weights.h5: cannot read this weights file \(permission denied\)"):
        models.load_vae_weights(models.build_vae(2), copy)


def test_save_vae_weights_leaves_the_old_file_when_the_disk_is_full(tmp_path, monkeypatch):
    target = tmp_path / "model.weights.h5"
    vae = models.build_vae(2)
    models.save_vae_weights(vae, target)
    before = target.read_bytes()

    def disk_full(self, path, *args, **kwargs):
        open(path, "wb").write(b"\x89HDF\r\n\x1a\n")
        raise OSError(28, "Can't synchronously write data")

    monkeypatch.setattr(models.VAE, "save_weights", disk_full)
    with pytest.raises(OSError, match="No space left on device") as caught:
        models.save_vae_weights(vae, target)
    assert caught.value.filename == str(target)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.weights.h5"]
