"""The conditional VAE: its network, what the label does, training with labels, clear errors at every entry
point, saving and loading, the shipped model, and (on full MNIST) its promised quality."""

import shutil
import traceback

import h5py
import numpy as np
import pytest

from vae_helpers import conditional, evaluation, keras, models, pretrained, set_seed, training
from vae_helpers.models import WeightsError

BOOK_TRAINABLE = 550_629  # the 1st edition's network at latent_dim=2 (tests/test_models.py)


@pytest.fixture(scope="module")
def fresh():
    set_seed(0)
    return conditional.build_conditional_vae(2, seed=0)


@pytest.fixture(scope="module")
def trained_tiny(small_images):
    """Two epochs on the 200-digit subset with validation: the model, its history and the validation data."""
    x, y, x_val, y_val = small_images
    set_seed(0)
    cvae = conditional.build_conditional_vae(2, seed=0)
    history = conditional.train_conditional_vae(cvae, x, y, epochs=2, batch_size=20, x_val=x_val, y_val=y_val,
                                                progress=None)
    return cvae, history, x_val, y_val


@pytest.fixture(scope="module")
def shipped():
    return pretrained.load_pretrained(2, conditional=True), pretrained.pretrained_record(2, conditional=True)


def raised_here(excinfo):
    """True if the error was raised before any TensorFlow or Keras code ran (a named check, not a deep traceback)."""
    frames = traceback.extract_tb(excinfo.tb)
    return not any("/tensorflow/" in frame.filename or "/keras/" in frame.filename for frame in frames)


# --- the network -----------------------------------------------------------------------------------------


def test_network_is_the_books_with_a_one_hot_label_on_both_sides(fresh):
    trainable = sum(int(np.prod(w.shape)) for w in fresh.trainable_weights)
    # the label's only weights: 10 rows more in the encoder's Dense 32 and in the decoder's Dense to 14x14x64
    assert trainable == BOOK_TRAINABLE + 10 * 32 + 10 * 14 * 14 * 64
    convs = [layer for layer in fresh.encoder.layers if type(layer) is keras.layers.Conv2D]
    assert [(layer.filters, layer.strides) for layer in convs] == [(32, (1, 1)), (64, (2, 2)), (64, (1, 1)), (64, (1, 1))]
    assert [layer.units for layer in fresh.encoder.layers if isinstance(layer, keras.layers.Dense)] == [32, 2, 2]
    assert (fresh.latent_dim, fresh.n_classes, fresh.image_shape) == (2, 10, (28, 28, 1))


def test_shapes_and_broadcasting(fresh, sample):
    (x, y), _ = sample
    images = conditional.decode(fresh, np.zeros((3, 2)), [1, 2, 3])
    assert images.shape == (3, 28, 28, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert conditional.decode(fresh, np.zeros((4, 2)), 7).shape == (4, 28, 28, 1)  # one int for every code
    assert conditional.decode(fresh, [0.5, -0.5], 7).shape == (1, 28, 28, 1)  # always a batch
    assert conditional.encode(fresh, x[:5], y[:5]).shape == (5, 2)
    assert conditional.generate(fresh, np.arange(10)).shape == (10, 28, 28, 1)


def test_one_code_with_every_label_is_the_same_as_that_code_repeated(fresh):
    z = np.array([0.3, -1.2], np.float32)
    row = conditional.decode(fresh, z, range(10))
    np.testing.assert_allclose(row, conditional.decode(fresh, np.tile(z, (10, 1)), np.arange(10)), atol=1e-6)


def test_the_label_changes_the_image_and_the_code_too(fresh, sample):
    (x, _), _ = sample
    z = np.zeros((1, 2), np.float32)
    three, five = conditional.decode(fresh, z, 3), conditional.decode(fresh, z, 5)
    assert np.abs(three - five).max() > 1e-3
    # the encoder reads the label as well: the same image told it is another digit gets another code
    assert not np.allclose(conditional.encode(fresh, x[:1], 3), conditional.encode(fresh, x[:1], 5))


def test_generate_is_repeatable_by_seed(fresh):
    labels = [4, 4, 9]
    np.testing.assert_array_equal(conditional.generate(fresh, labels, seed=3), conditional.generate(fresh, labels, seed=3))
    assert not np.allclose(conditional.generate(fresh, labels, seed=3), conditional.generate(fresh, labels, seed=4))


def test_the_model_round_trips_through_a_keras_file(tmp_path):
    cvae = conditional.build_conditional_vae(2, seed=0, compile=False)
    path = tmp_path / "cvae.keras"
    cvae.save(path)
    again = keras.saving.load_model(path)
    assert isinstance(again, conditional.ConditionalVAE) and again.n_classes == 10
    z = np.random.default_rng(0).standard_normal((4, 2))
    np.testing.assert_allclose(conditional.decode(again, z, [0, 1, 2, 3]), conditional.decode(cvae, z, [0, 1, 2, 3]),
                               atol=1e-6)


# --- training --------------------------------------------------------------------------------------------


def _batches_of_epoch_1(x, y):
    """The batches ``train_vae`` feeds in epoch 1 on this backend: a tf.data pipeline on TensorFlow, else a PyDataset."""
    if training.BACKEND == "tensorflow":
        batches = training.EpochDataset(x, 32, seed=0, labels=y)
        batches.epoch = 1
        return [tuple(keras.ops.convert_to_numpy(t) for t in pair) for (pair,) in batches.dataset]
    batches = training.EpochBatches(x, 32, seed=0, labels=y)
    return [batches[batches.steps + i][0] for i in range(batches.steps)]


def test_each_batch_pairs_images_with_their_own_labels(small_images):
    x, y, _, _ = small_images
    seen = 0
    index = {x[i].tobytes(): y[i] for i in range(len(x))}  # the 200 digits are distinct images
    for images, labels in _batches_of_epoch_1(x, y):
        for image, label in zip(images, labels, strict=True):
            assert index[image.tobytes()] == label
        seen += len(labels)
    assert seen == len(x)


def test_fit_on_images_and_labels_lowers_the_loss(small_images):
    x, y, _, _ = small_images
    set_seed(1)
    cvae = conditional.build_conditional_vae(2, seed=1)
    history = cvae.fit((x, y), epochs=3, batch_size=20, verbose=0).history
    assert set(history) == {"loss", "reconstruction_loss", "kl_loss"}
    assert history["loss"][-1] < history["loss"][0] - 50  # a random decoder starts near 540 nats


def test_training_keeps_the_best_epoch_and_its_validation_elbo(trained_tiny):
    cvae, history, x_val, y_val = trained_tiny
    assert sorted(history) == ["kl_loss", "loss", "reconstruction_loss", "val_elbo"]
    assert history["loss"][-1] < history["loss"][0]
    best = training.best_epoch(history)
    again = conditional.elbo(cvae, x_val, y_val, n_samples=training.VALIDATION_SAMPLES, seed=0)
    assert again == pytest.approx(history["val_elbo"][best - 1])
    assert cvae.vae_loss.kl_weight.numpy() == 1.0


def test_same_seed_same_weights(small_images, trained_tiny):
    x, y, x_val, y_val = small_images
    set_seed(0)
    again = conditional.build_conditional_vae(2, seed=0)
    history = conditional.train_conditional_vae(again, x, y, epochs=2, batch_size=20, x_val=x_val, y_val=y_val,
                                                progress=None)
    assert history == trained_tiny[1]
    for a, b in zip(trained_tiny[0].get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_elbo_agrees_with_the_loss_layer_and_rewards_the_right_label(shipped, sample):
    """Two independent routes to the ELBO (NumPy scoring, the model's own loss layer) agree; wrong labels cost nats."""
    cvae, _ = shipped
    _, (x, y) = sample
    scored = conditional.elbo(cvae, x, y, n_samples=4, seed=0)
    layer = cvae.evaluate((x, y), batch_size=250, verbose=0, return_dict=True)
    assert scored == pytest.approx(-layer["loss"], abs=1.0)  # 1,000 digits: the two noisy estimates differ by ~0.1
    assert scored > conditional.elbo(cvae, x, (y + 1) % 10, n_samples=4, seed=0) + 50  # ~156 nats on the shipped model


# --- errors at the public entry points ----------------------------------------------------------------------


@pytest.mark.parametrize("labels, message", [
    (10, r"class ids \(whole numbers from 0 to 9\), got 10"),
    (-1, "got -1"),
    ([1, 2, 12], "got 12 at position 2"),
    (np.array([1.0, 2.0, 3.0]), r"integer class ids .* convert them with labels.astype\(int\)"),
    (np.eye(10)[:3], r"one-hot rows.*labels.argmax\(axis=1\)"),
    ([1, 2], "labels has 2 class ids but there are 3 codes in z"),
    (True, "got the boolean True"),
    (["1", "2", "3"], "dtype <U1"),
    ([[1], [2], [3]], "1-D array"),
    ([], "labels is empty"),
])
def test_bad_labels_are_named_before_the_model_runs(fresh, labels, message):
    with pytest.raises(ValueError, match=message) as caught:
        conditional.decode(fresh, np.zeros((3, 2)), labels)
    assert raised_here(caught)


@pytest.mark.parametrize("z, message", [
    (np.zeros((3, 3)), r"z must have shape \(2,\) or \(n, 2\)"),
    (np.zeros((0, 2)), "z is empty"),
    ([np.nan, 0.0], "NaN"),
])
def test_bad_codes_are_named(fresh, z, message):
    with pytest.raises(ValueError, match=message) as caught:
        conditional.decode(fresh, z, 1)
    assert raised_here(caught)


def test_every_entry_point_checks_its_labels(fresh, small_images):
    x, y, _, _ = small_images
    calls = {
        "encode": lambda: conditional.encode(fresh, x[:5], [1, 2]),
        "elbo": lambda: conditional.elbo(fresh, x[:5], [0, 1, 2, 3, 10]),
        "generate": lambda: conditional.generate(fresh, [3, 11]),
        "judge_accuracy": lambda: conditional.judge_accuracy(fresh, x, y + 5, per_class=2),
        "fit": lambda: fresh.fit((x, y.astype(float)), epochs=1),
        "validation_data": lambda: fresh.fit((x, y), validation_data=(x[:10], y[:9]), epochs=1),
        "train": lambda: conditional.train_conditional_vae(fresh, x, y[:10], epochs=1),
        "train_val": lambda: conditional.train_conditional_vae(fresh, x, y, epochs=1, x_val=x[:10]),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="labels|class ids") as caught:
            call()
        assert raised_here(caught), name


def test_images_without_labels_are_refused(fresh, small_images):
    x, _, _, _ = small_images
    with pytest.raises(ValueError, match=r"call fit\(\(images, labels\)\)"):
        fresh.fit(x, epochs=1)
    with pytest.raises(ValueError, match="pass labels="):
        training.train_vae(fresh, x, epochs=1)
    with pytest.raises(ValueError, match="this VAE does not read them"):
        training.train_vae(models.build_vae(2), x, epochs=1, labels=np.zeros(len(x), int))


def test_a_plain_vae_is_not_taken_for_a_conditional_one(small_images):
    x, y, _, _ = small_images
    with pytest.raises(ValueError, match="expected a ConditionalVAE"):
        conditional.decode(models.build_vae(2, compile=False), np.zeros(2), 1)


# --- weights ---------------------------------------------------------------------------------------------


def test_weights_round_trip_without_optimizer_state(trained_tiny, tmp_path):
    cvae = trained_tiny[0]
    path = tmp_path / "cvae.weights.h5"
    conditional.save_conditional_weights(cvae, path)
    with h5py.File(path, "r") as handle:
        assert models.OPTIMIZER_GROUP not in handle
    loaded = conditional.load_conditional_weights(conditional.build_conditional_vae(2, seed=5), path)
    z = np.random.default_rng(1).standard_normal((5, 2))
    np.testing.assert_array_equal(conditional.decode(loaded, z, [0, 2, 4, 6, 8]), conditional.decode(cvae, z, [0, 2, 4, 6, 8]))


def test_weights_of_another_network_are_refused(trained_tiny, tmp_path):
    path = tmp_path / "cvae.weights.h5"
    conditional.save_conditional_weights(trained_tiny[0], path)
    other = conditional.build_conditional_vae(3)
    before = [w.copy() for w in other.get_weights()]
    with pytest.raises(WeightsError, match="does not fit"):
        conditional.load_conditional_weights(other, path)
    for a, b in zip(before, other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # a failed load changes nothing
    plain = tmp_path / "vae.weights.h5"
    models.save_vae_weights(models.build_vae(2), plain)
    with pytest.raises(WeightsError, match="does not fit"):
        conditional.load_conditional_weights(conditional.build_conditional_vae(2), plain)


# --- the shipped model --------------------------------------------------------------------------------


def test_shipped_model_loads_verified_and_draws_the_digits_asked_for(shipped, sample):
    cvae, record = shipped
    assert isinstance(cvae, conditional.ConditionalVAE) and (cvae.latent_dim, cvae.n_classes) == (2, 10)
    assert pretrained.sha256_of(pretrained._resource("cvae_mnist_z2.weights.h5")) == record["weights_sha256"]
    (x, y), _ = sample
    # one code, ten labels: the judge (3-NN among the 4,000 sample digits) reads each as the digit asked for
    row = conditional.decode(cvae, np.zeros(2), range(10))
    assert list(evaluation.classify_digits(row, x, y)) == list(range(10))


def test_shipped_record_says_how_it_was_made(shipped):
    _, record = shipped
    assert record["command"].startswith("python scripts/train_conditional.py ") and record["status"] == "finished"
    assert record["data"] == {"train": 54_000, "validation": 6_000, "test": 10_000}
    assert len(record["history"]["val_elbo"]) == record["settings"]["epochs"]
    assert record["judge_accuracy"] >= 0.90
    assert set(record["judge"]["per_class"]) == {str(d) for d in range(10)}


def test_a_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    for suffix in (".weights.h5", ".json"):
        shutil.copy(pretrained._resource(f"cvae_mnist_z2{suffix}"), tmp_path / f"cvae_mnist_z2{suffix}")
    monkeypatch.setattr(pretrained, "_resource", lambda name: tmp_path / name)
    path = tmp_path / "cvae_mnist_z2.weights.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: the values may stay plausible numbers, the SHA-256 does not
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="the shipped weights file is damaged") as caught:
        pretrained.load_pretrained(2, conditional=True)
    assert "git checkout -- vae_helpers/resources/pretrained/cvae_mnist_z2.weights.h5" in str(caught.value)


def test_only_shipped_conditional_models_are_offered():
    with pytest.raises(WeightsError, match=r"no shipped conditional model with latent_dim=16; choose one of \[2\]"):
        pretrained.load_pretrained(16, conditional=True)
    with pytest.raises(WeightsError, match="no shipped conditional model"):
        pretrained.pretrained_record(3, conditional=True)
    with pytest.raises(ValueError, match="conditional must be True or False"):
        pretrained.load_pretrained(2, conditional="yes")


# --- quality on full MNIST ------------------------------------------------------------------------------

JUDGE_REFERENCE = 20_000  # training digits the judge compares with: about 9 CPU-s where all 60,000 take 20 (the record)


def test_shipped_model_draws_the_asked_digit_nine_times_in_ten(full_mnist, shipped):
    """1,000 digits per class from the prior; a 3-NN on pixels among 20,000 training digits names the class asked for."""
    cvae, record = shipped
    (x_train, y_train), _ = full_mnist
    score = conditional.judge_accuracy(cvae, x_train[:JUDGE_REFERENCE], y_train[:JUDGE_REFERENCE], per_class=1000)
    assert score.accuracy >= 0.90, score.per_class
    assert score.confusion.sum() == 10_000 and (score.confusion.sum(axis=1) == 1000).all()
    assert abs(score.accuracy - record["judge_accuracy"]) < 0.02  # a smaller reference set, nearly the same verdict


def test_shipped_model_test_elbo_matches_its_record(full_mnist, shipped):
    """One draw of z per digit instead of the record's eight: the same expectation, within 0.5 nats on 10,000 digits."""
    cvae, record = shipped
    _, (x_test, y_test) = full_mnist
    assert conditional.elbo(cvae, x_test, y_test, n_samples=1, seed=1) == pytest.approx(record["test_elbo"], abs=0.5)


def test_the_unconditional_helpers_point_a_conditional_vae_to_this_module():
    from vae_helpers import evaluation, latent

    cvae = conditional.build_conditional_vae(2, seed=0)
    x = np.zeros((2, 28, 28, 1), np.float32)
    for call in (lambda: latent.decode(cvae, np.zeros((2, 2))), lambda: latent.encode(cvae, x),
                 lambda: evaluation.elbo(cvae, x)):
        with pytest.raises(TypeError, match="use vae_helpers.conditional"):
            call()
