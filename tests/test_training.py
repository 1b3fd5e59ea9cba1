"""Training: exact repeatability, best-epoch selection, interruption and resume, progress, run folders."""

import errno
import hashlib
import json

import numpy as np
import pytest

from vae_helpers import config, files, keras, models, set_seed, training
from vae_helpers.evaluation import elbo


def fresh_vae(seed=0):
    set_seed(seed)
    return models.build_vae(2, seed=seed)


def assert_same_weights(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


class InterruptAt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt (a learner's Ctrl-C) after batch ``batch`` of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def straight_run(small_images):
    """Three epochs without interruption: the reference the resumed runs must match exactly."""
    x, _, x_val, _ = small_images
    vae = fresh_vae()
    history = training.train_vae(vae, x, epochs=3, x_val=x_val, progress=None)
    return vae, history


def test_same_seed_same_weights(small_images, straight_run):
    x, _, x_val, _ = small_images
    again = fresh_vae()
    history = training.train_vae(again, x, epochs=3, x_val=x_val, progress=None)
    assert_same_weights(straight_run[0], again)
    assert history == straight_run[1]


def test_history_and_best_epoch(small_images, straight_run):
    _, _, x_val, _ = small_images
    vae, history = straight_run
    assert sorted(history) == ["kl_loss", "loss", "reconstruction_loss", "val_elbo"]
    assert all(len(values) == 3 for values in history.values())
    assert history["loss"][-1] < history["loss"][0]
    best = training.best_epoch(history)
    assert best == int(np.argmax(history["val_elbo"])) + 1
    # the model ends on the best epoch's weights: scoring it again gives that epoch's validation ELBO
    assert elbo(vae, x_val, n_samples=training.VALIDATION_SAMPLES, seed=0) == pytest.approx(history["val_elbo"][best - 1])


def test_interrupted_run_resumes_to_the_same_weights(small_images, straight_run, tmp_path):
    """Ctrl-C in the middle of the second epoch, then the same call again: it continues from the backup."""
    x, _, x_val, _ = small_images
    with pytest.raises(KeyboardInterrupt):
        training.train_vae(fresh_vae(), x, epochs=3, x_val=x_val, progress=None, checkpoint_dir=tmp_path,
                           callbacks=[InterruptAt(epoch=1, batch=4)])
    assert len(training.read_history(tmp_path / training.HISTORY_FILE)["loss"]) == 1
    resumed = fresh_vae(seed=5)  # whatever it starts from, the backup replaces it
    history = training.train_vae(resumed, x, epochs=3, x_val=x_val, progress=None, checkpoint_dir=tmp_path)
    assert_same_weights(straight_run[0], resumed)
    assert history == straight_run[1]


def test_a_finished_run_is_extended(small_images, straight_run, tmp_path):
    x, _, x_val, _ = small_images
    training.train_vae(fresh_vae(), x, epochs=2, x_val=x_val, progress=None, checkpoint_dir=tmp_path)
    extended = fresh_vae()
    history = training.train_vae(extended, x, epochs=3, x_val=x_val, progress=None, checkpoint_dir=tmp_path)
    assert_same_weights(straight_run[0], extended)
    assert history == straight_run[1]


class KLWeights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(float(self.model.vae_loss.kl_weight))


def test_kl_warmup_rises_linearly_to_one_and_resumes_exactly(small_images, tmp_path):
    x, _, x_val, _ = small_images
    x = x[:64]  # 4 steps per epoch
    spy = KLWeights()
    straight = fresh_vae()
    training.train_vae(straight, x, epochs=3, x_val=x_val, progress=None, kl_warmup=1.5, callbacks=[spy])
    np.testing.assert_allclose(spy.seen, [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1, 1, 1, 1, 1, 1, 1], rtol=1e-6)
    assert float(straight.vae_loss.kl_weight) == 1.0  # even if the best epoch fell in the warm-up
    with pytest.raises(KeyboardInterrupt):
        training.train_vae(fresh_vae(), x, epochs=3, x_val=x_val, progress=None, kl_warmup=1.5, checkpoint_dir=tmp_path,
                           callbacks=[InterruptAt(epoch=1, batch=1)])  # in the middle of the warm-up
    resumed = fresh_vae()
    training.train_vae(resumed, x, epochs=3, x_val=x_val, progress=None, kl_warmup=1.5, checkpoint_dir=tmp_path)
    assert_same_weights(straight, resumed)


@pytest.mark.backends("tensorflow")  # XLA is Keras' jit_compile on TensorFlow (JAX always compiles with it)
def test_a_run_compiled_with_xla_is_extended_to_the_weights_of_a_longer_one(small_images, tmp_path):
    """``--recipe fast`` compiles the step with XLA: its runs must resume as exactly as the default path's."""
    x, _, x_val, _ = small_images
    x = x[:96]  # 6 steps per epoch

    def xla_vae():
        vae = fresh_vae()
        vae.compile(keras.optimizers.Adam(2e-3), jit_compile=True)
        return vae

    straight = xla_vae()
    history = training.train_vae(straight, x, epochs=3, x_val=x_val, progress=None)
    assert straight.jit_compile  # train_vae keeps the compile setting it was given
    training.train_vae(xla_vae(), x, epochs=2, x_val=x_val, progress=None, checkpoint_dir=tmp_path)
    extended = xla_vae()
    assert training.train_vae(extended, x, epochs=3, x_val=x_val, progress=None, checkpoint_dir=tmp_path) == history
    assert_same_weights(straight, extended)


def test_history_keeps_the_last_row_of_a_repeated_epoch(tmp_path):
    """A crash between the history row and the backup makes the resumed run write that epoch again."""
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_elbo\n0,9.0,-9.0\n1,8.0,-8.5\n1,7.0,-8.0\n2,6.0,-8.2\n")
    assert training.read_history(path) == {"loss": [9.0, 7.0, 6.0], "val_elbo": [-9.0, -8.0, -8.2]}
    assert training.best_epoch(training.read_history(path)) == 2
    assert training.read_history(tmp_path / "missing.csv") == {}


def test_progress_bar_is_keras_own(small_images, capsys):
    x, _, x_val, _ = small_images
    history = training.train_vae(fresh_vae(), x[:64], epochs=2, x_val=x_val[:16], progress="bar")
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "4/4" in out  # 64 images in batches of 16: Keras counts the steps
    assert f"val_elbo: {history['val_elbo'][-1]:.4f}" in out  # plain decimals, not 1e+02


def test_progress_by_epoch_is_one_line_each(small_images, capsys):
    x, _, x_val, _ = small_images
    history = training.train_vae(fresh_vae(), x[:64], epochs=2, x_val=x_val[:16], progress="epoch")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"epoch 2/2 | loss {history['loss'][1]:.2f} | ")
    assert f"validation ELBO {history['val_elbo'][1]:.2f}" in lines[1]


def test_train_vae_rejects_bad_arguments(small_images):
    x, *_ = small_images
    vae = fresh_vae()
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        training.train_vae(vae, x, epochs=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        training.train_vae(vae, x, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="progress must be"):
        training.train_vae(vae, x, epochs=1, progress="loud")
    with pytest.raises(ValueError, match="x_train"):  # the images are checked before Keras sees them
        training.train_vae(vae, x * 255, epochs=1)


def test_epoch_batches_follow_the_epoch_order_across_epochs():
    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    batches = training.EpochBatches(images, batch_size=4, seed=3)
    assert batches.steps == 3 and batches.num_batches is None
    batches.first_epoch = 2
    for epoch in (2, 3):
        order = training.epoch_order(10, seed=3, epoch=epoch)
        got = np.concatenate([batches[(epoch - 2) * 3 + step] for step in range(3)]).ravel()
        np.testing.assert_array_equal(got, order)
    assert not np.array_equal(training.epoch_order(10, 3, 2), training.epoch_order(10, 3, 3))


@pytest.mark.backends("tensorflow")  # a tf.data pipeline
@pytest.mark.parametrize("scale", [1.0, 0.5])  # images made from bytes (held as uint8 codes), and not (floats)
def test_epoch_dataset_gives_each_epochs_order_bit_for_bit(small_images, scale):
    x = small_images[0][:50] * np.float32(scale)
    batches = training.EpochDataset(x, batch_size=16, seed=3)
    assert batches.steps == 4 and batches.dataset.cardinality() == 4
    with pytest.raises(Exception, match="before its epoch was set"):
        next(iter(batches.dataset))
    for epoch in (2, 0):
        batches.epoch = epoch
        got = [batch.numpy() for batch in batches.dataset]
        assert [len(batch) for batch in got] == [16, 16, 16, 2]
        assert np.concatenate(got).tobytes() == x[training.epoch_order(50, 3, epoch)].tobytes()


class EveryBatch(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_each_epoch_runs_exactly_its_steps_on_every_backend(small_images):
    """160 digits at batch 2: 80 steps per epoch, more than one group of STEPS_PER_EXECUTION. A group that read
    past an epoch's end (as JAX's would from an endless PyDataset) would run 96 steps and shift the epoch orders."""
    x, *_ = small_images
    vae = fresh_vae()
    training.train_vae(vae, x[:160], epochs=2, batch_size=2, progress=None)
    assert int(keras.ops.convert_to_numpy(vae.optimizer.iterations)) == 160


@pytest.mark.backends("tensorflow")  # the only backend that groups steps (training._set_steps_per_execution)
def test_steps_per_execution_changes_no_weight(small_images):
    """13 steps per call, or one per call when a callback asks for every batch: the same weights, warm-up included."""
    x, *_ = small_images  # 200 images: 13 steps per epoch
    grouped, single, spy = fresh_vae(), fresh_vae(), EveryBatch()
    training.train_vae(grouped, x, epochs=2, progress=None, kl_warmup=1.5)
    training.train_vae(single, x, epochs=2, progress=None, kl_warmup=1.5, callbacks=[spy])
    assert (grouped.steps_per_execution, single.steps_per_execution, spy.batches) == (13, 1, 26)
    assert_same_weights(grouped, single)


def test_the_backup_has_no_per_batch_hook(tmp_path):
    """Keras dispatches steps asynchronously only when no callback has a per-batch hook."""
    assert not training.needs_every_batch([training.AtomicBackupAndRestore(tmp_path), training.StopOnDivergence(),
                                           training.EpochLine(), training.HistoryCSV(tmp_path / "h.csv")])
    assert training.needs_every_batch([EveryBatch()])


def test_fit_autoencoder_trains_on_batches_of_input_target_pairs(small_images):
    x, _, x_test, _ = small_images
    batches = training.EpochBatches(x, batch_size=50, seed=0, targets=True)
    inputs, targets = batches[1]
    np.testing.assert_array_equal(inputs, x[training.epoch_order(len(x), 0, 0)[50:100]])
    assert targets is inputs
    set_seed(0)
    autoencoder, *_ = models.build_autoencoder(latent_dim=2)
    before = autoencoder.evaluate(x_test, x_test, verbose=0)
    history = training.fit_autoencoder(autoencoder, x, epochs=2, batch_size=20, x_val=x_test)
    assert len(history.history["loss"]) == len(history.history["val_loss"]) == 2
    # The validation loss is Keras' own evaluation of the same images.
    assert history.history["val_loss"][-1] == pytest.approx(autoencoder.evaluate(x_test, x_test, verbose=0), rel=1e-4)
    assert history.history["val_loss"][-1] < before - 50  # from about 543 nats (know-nothing) down
    with pytest.raises(ValueError, match="x_train"):
        training.fit_autoencoder(autoencoder, x * 255, epochs=1)


@pytest.mark.backends("tensorflow")  # the tf.data pipeline; the other backends read the PyDataset itself
def test_fit_autoencoder_on_tensorflow_trains_on_the_pydatasets_batches(small_images):
    """fit_autoencoder feeds fit from a tf.data pipeline on TensorFlow: the same batches in the same order as the
    EpochBatches PyDataset gives, so two epochs end at the same weights to the last bit."""
    x = small_images[0][:120]
    weights = []
    for feed in ("tf.data", "PyDataset"):
        set_seed(0)
        autoencoder, *_ = models.build_autoencoder(latent_dim=2)
        if feed == "tf.data":
            training.fit_autoencoder(autoencoder, x, epochs=2, batch_size=16)
        else:
            batches = training.EpochBatches(x, 16, seed=0, targets=True)
            autoencoder.fit(batches, epochs=2, steps_per_epoch=batches.steps, shuffle=False, verbose=0)
        weights.append(autoencoder.get_weights())
    for tf_data, pydataset in zip(*weights, strict=True):
        np.testing.assert_array_equal(tf_data, pydataset)


class OwnVAE(keras.Model):
    """A VAE written the way notebook 3's learners write theirs: call() gives the posterior, compute_loss() samples
    with the model's own SeedGenerator, decodes and adds the ELBO's terms written out by hand."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.seed_generator = keras.random.SeedGenerator(7)

    def call(self, x, training=False):
        return self.encoder(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        ops = keras.ops
        z_mean, z_log_var = y_pred
        z = z_mean + ops.exp(0.5 * z_log_var) * keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        p = ops.clip(self.decoder(z, training=training), 1e-7, 1 - 1e-7)
        reconstruction = -ops.sum(x * ops.log(p) + (1 - x) * ops.log(1 - p), axis=(1, 2, 3))
        kl = 0.5 * ops.sum(ops.exp(z_log_var) + ops.square(z_mean) - 1 - z_log_var, axis=-1)
        return ops.mean(reconstruction + kl)


def own_vae_fed(x, seed, epochs=2):
    """An OwnVAE from fresh_vae(0)'s first weights, trained by fit on epoch_feed's batches and noise for ``seed``."""
    set_seed(0)
    own = OwnVAE(models.build_encoder(2), models.build_decoder(2))
    own.compile(keras.optimizers.Adam(1e-3))
    feed = training.epoch_feed(x, 16, seed=seed)
    own.fit(feed.data, steps_per_epoch=feed.steps_per_epoch, epochs=epochs, shuffle=False, verbose=0,
            callbacks=[feed.callback])
    return own


def test_a_model_of_ones_own_fed_by_epoch_feed_ends_where_train_vae_ends(small_images):
    """Same first weights, optimizer and epochs: a hand-written VAE that fit trains on epoch_feed's batches and noise
    ends with train_vae's weights (its own formulas differ from the package's only in rounding). Fed for another
    seed it ends elsewhere, so the agreement is the feed's doing."""
    x = small_images[0][:160]
    reference = fresh_vae(0)
    reference.compile(keras.optimizers.Adam(1e-3))
    training.train_vae(reference, x, epochs=2, batch_size=16, seed=3, progress=None)
    network = lambda model: model.encoder.get_weights() + model.decoder.get_weights()  # noqa: E731
    for mine, theirs in zip(network(own_vae_fed(x, seed=3)), network(reference), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-4)
    other = network(own_vae_fed(x, seed=4))
    assert max(np.abs(a - b).max() for a, b in zip(other, network(reference), strict=True)) > 1e-3


def test_epoch_feed_refuses_bad_arguments_by_name(small_images):
    x = small_images[0][:32]
    for kwargs, message in [({"images": x * 255}, "images"), ({"images": x[:, :, :20]}, "images"),
                            ({"batch_size": 0}, "batch_size must be a positive integer"),
                            ({"batch_size": 16.5}, "batch_size"), ({"seed": -1}, "seed must be an integer of at least 0")]:
        with pytest.raises(ValueError, match=message):
            training.epoch_feed(**{"images": x, "batch_size": 16, "seed": 0, **kwargs})


def test_epoch_feed_refuses_a_model_without_a_seed_generator_by_name(small_images):
    """A model that draws its noise without a SeedGenerator could not be given each epoch's noise: said before any step."""

    class NoGenerator(OwnVAE):
        def __init__(self, encoder, decoder, **kwargs):
            super().__init__(encoder, decoder, **kwargs)
            del self.seed_generator

    model = NoGenerator(models.build_encoder(2), models.build_decoder(2))
    model.compile(keras.optimizers.Adam(1e-3))
    before = [w.copy() for w in model.get_weights()]
    feed = training.epoch_feed(small_images[0][:32], 16, seed=0)
    with pytest.raises(TypeError, match=r"NoGenerator has no keras\.random\.SeedGenerator.*self\.seed_generator"):
        model.fit(feed.data, steps_per_epoch=feed.steps_per_epoch, epochs=1, shuffle=False, verbose=0,
                  callbacks=[feed.callback])
    for now, then in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(now, then)


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
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(files.FileWriteError) as caught:
        files.atomic_write(target, failing)
    assert caught.value.filename == str(target) and "No space left on device" in caught.value.strerror
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


@pytest.mark.parametrize("had_weights", [True, False])
def test_weights_and_record_are_written_both_or_neither(tmp_path, monkeypatch, had_weights):
    """The shipping scripts' install: if the record cannot be written, the weights file is as it was."""
    weights, record = tmp_path / "m.weights.h5", tmp_path / "m.json"
    if had_weights:
        weights.write_bytes(b"old weights")
    record.write_text('{"old": true}')

    def full_disk(path, data):
        raise files.FileWriteError(errno.ENOSPC, "cannot write (No space left on device)", str(path))

    monkeypatch.setattr(files, "write_json", full_disk)
    with pytest.raises(files.FileWriteError, match="No space left"):
        files.write_weights_and_record(b"new weights", weights, {"settings": {}}, record)
    assert (weights.read_bytes() == b"old weights") if had_weights else not weights.exists()
    assert json.loads(record.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.json"] + (["m.weights.h5"] if had_weights else []))
    monkeypatch.undo()
    written = files.write_weights_and_record(b"new weights", weights, {"settings": {}}, record)
    assert weights.read_bytes() == b"new weights"
    assert json.loads(record.read_text()) == written
    assert written["weights_sha256"] == hashlib.sha256(b"new weights").hexdigest()


def test_diverging_training_stops_with_a_clear_message(small_images):
    x, *_ = small_images
    vae = fresh_vae()
    vae.compile(keras.optimizers.Adam(learning_rate=1e6))
    with pytest.raises(ValueError, match="training diverged; lower the learning rate"):
        training.train_vae(vae, x[:64], epochs=3, progress=None)


@pytest.mark.parametrize("field, value, flag", [("epochs", 0, "--epochs"), ("batch_size", 0, "--batch-size"),
                                                 ("learning_rate", -1.0, "--learning-rate"),
                                                 ("validation_fraction", 1.5, "--validation-fraction"),
                                                 ("latent_dim", 0, "--latent-dim"), ("seed", -1, "--seed"),
                                                 ("loss", "mse", "--loss"), ("lr_schedule", "step", "--lr-schedule"),
                                                 ("kl_warmup", 30, "--kl-warmup"), ("lr_warmup", -1, "--lr-warmup")])
def test_settings_name_the_bad_flag(field, value, flag):
    with pytest.raises(ValueError, match=flag):
        config.TrainSettings(**{field: value}).validate()


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_warms_up_from_zero_then_follows_its_schedule(schedule):
    settings = config.TrainSettings(epochs=4, batch_size=10, learning_rate=2e-3, lr_schedule=schedule, lr_warmup=0.5)
    rate = training.learning_rate(settings, n_train=200)  # 20 steps per epoch: 10 of warm-up, 80 in all
    at = lambda step: float(rate(step))  # noqa: E731
    assert at(0) == 0.0 and at(5) == pytest.approx(1e-3) and at(10) == pytest.approx(2e-3)
    assert all(at(s) < at(s + 1) for s in range(10))
    if schedule == "constant":
        assert [at(s) for s in (10, 45, 80, 200)] == pytest.approx([2e-3] * 4)
    else:  # half-way through the 70 decay steps the cosine is at the middle of 2e-3 and its 5% floor
        assert at(45) == pytest.approx((2e-3 + 1e-4) / 2) and at(80) == pytest.approx(1e-4)
        assert all(at(s) > at(s + 1) for s in range(10, 79))
    assert training.learning_rate(config.TrainSettings(), n_train=200) == config.DEFAULT_LEARNING_RATE


def test_a_recipe_with_changes_compiles_a_model_as_its_run_would():
    settings = config.recipe("fast", epochs=2)
    assert settings.epochs == 2 and settings.lr_schedule == "cosine"  # the change, and the recipe around it
    vae = models.build_vae(2, compile=False)
    training.compile_with(vae, settings, n_train=320)  # 20 steps per epoch, 4 of them warm-up
    rate = vae.optimizer.learning_rate  # Keras reads a schedule at the optimizer's current step
    assert float(keras.ops.convert_to_numpy(rate)) == 0.0
    vae.optimizer.iterations.assign(4)
    assert float(keras.ops.convert_to_numpy(vae.optimizer.learning_rate)) == pytest.approx(settings.learning_rate)
    # XLA as the recipe asks on TensorFlow; JAX always jits its step (off, it would run op by op); torch never
    assert vae.jit_compile == {"tensorflow": settings.jit_compile, "jax": True, "torch": False}[keras.backend.backend()]
    with pytest.raises(ValueError, match="--epochs"):
        config.recipe("fast", epochs=0)
    with pytest.raises(ValueError, match="--recipe must be one of"):
        config.recipe("fastest")


def test_force_never_touches_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "model.ckpt").write_text("precious")
    with pytest.raises(training.RunFolderError, match="not a run folder"):
        training.train_run(tmp_path, config.TrainSettings(data="sample", epochs=1), force=True)
    assert (tmp_path / "checkpoint" / "model.ckpt").read_text() == "precious"


def test_bad_settings_are_refused_before_the_folder_is_touched(tmp_path):
    with pytest.raises(ValueError, match="--batch-size"):
        training.train_run(tmp_path / "run", config.TrainSettings(data="sample", batch_size=0))
    assert not (tmp_path / "run").exists()


def test_resume_needs_a_backup(tmp_path):
    training.write_json(tmp_path / training.RECORD_FILE, {"settings": {"data": "sample"}})
    with pytest.raises(training.RunFolderError, match="no checkpoint to resume from"):
        training.train_run(tmp_path, resume=True)
