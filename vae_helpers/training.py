"""Training with Keras' own loop: one ``fit`` call, Keras callbacks, and batches from a ``tf.data`` pipeline.

``train_vae`` trains a VAE. The batch order and the sampling noise of epoch ``e`` depend only on
``(seed, e)``, so a run that is interrupted and resumed from the last epoch that
``keras.callbacks.BackupAndRestore`` saved ends with exactly the weights of an uninterrupted run.
After each epoch the validation images are scored with the ELBO, the best weights are kept and the
epoch's metrics are added to ``history.csv``. Every file is written atomically (a temporary file,
then a rename), so a crash or a full disk never leaves half a checkpoint. A NaN or infinite loss
stops training at the end of its epoch, before anything is scored or saved, with ``TrainingDiverged``.

The steps themselves run without Python: the batches are gathered by ``tf.data`` from the images
held as uint8 codes, one NumPy shuffle order per epoch; the KL warm-up weight is computed inside the
step from the optimizer's counter; no callback of the default path has a per-batch hook, so Keras
dispatches steps asynchronously, ``STEPS_PER_EXECUTION`` of them per call.

``train_run`` is what ``python -m vae_helpers train`` runs: data, run folder, ``run.json``, figures.
Everything it is given (settings, data, the run folder, the checkpoint to resume) is checked before
it writes or deletes anything; a run that fails later says so in its ``run.json`` ("failed",
"diverged" or "interrupted", with the error) and keeps what the record held before.
"""

import csv
import dataclasses
import io
import json
import math
import os
import platform
import shutil
import tempfile
import time
import typing
from pathlib import Path

import numpy as np

from vae_helpers._backend import BACKEND, backend_version, keras, set_seed, tf
from vae_helpers.conditional import check_labels
from vae_helpers.conditional import elbo as conditional_elbo
from vae_helpers.config import TrainSettings, check_count, check_memory, training_memory
from vae_helpers.data import DataError, as_pixel_codes, check_images, data_digest, load_mnist, pixel_levels
from vae_helpers.evaluation import elbo, knn_latent_accuracy
from vae_helpers.files import atomic_write, copy_file, read_error, sha256_of, write_json
from vae_helpers.losses import KLWarmupSchedule
from vae_helpers.optimizers import Adam
from vae_helpers.models import (IMAGE_SHAPE, WeightsError, _check_shapes, build_vae, float32_copy, read_weights_file,
                               save_vae_weights)

WEIGHTS_FILE = "weights.weights.h5"
RECORD_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"  # inside it: history.csv, best.weights.h5 and backup/ (BackupAndRestore's)
HISTORY_FILE = "history.csv"
BEST_FILE = "best.weights.h5"
BACKUP_DIR = "backup"
VALIDATION_SAMPLES = 4  # z draws per image when scoring the validation ELBO each epoch
PROGRESS = ("bar", "epoch", None)
FIGURES = ("history.png", "manifold.png", "latent.png")
#: The only setting a resumed run may change (to go on for more epochs); the others must stay as recorded.
RESUMABLE = ("epochs",)


class RunFolderError(ValueError):
    """A run folder cannot be used as asked (it exists, or there is nothing to resume)."""


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: training stopped before the weights were used for anything."""


def epoch_order(n, seed, epoch):
    """The shuffle order of epoch ``epoch``: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class EpochBatches(keras.utils.PyDataset):
    """Shuffled batches read straight from ``images`` (no copy of the data set), endless across epochs.

    Batch ``i`` of a ``fit`` call belongs to epoch ``first_epoch + i // steps`` and follows
    ``epoch_order``, so Keras' prefetching can never mix up the orders of two epochs. With
    ``targets=True`` each batch is an (input, target) pair of the same images, for a plain
    autoencoder: ``fit(x, x)`` would copy both arrays into the backend first. With ``labels``
    each batch is a conditional VAE's input, (images, labels). ``train_vae`` reads its batches from
    here on the JAX and PyTorch backends (``EpochDataset`` needs TensorFlow).
    """

    def __init__(self, images, batch_size, seed, targets=False, labels=None):
        super().__init__()
        self.images, self.batch_size, self.seed, self.targets = images, batch_size, seed, targets
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int32)
        self.steps = -(-len(images) // batch_size)
        self.first_epoch = 0
        self._order = (None, None)

    @property
    def num_batches(self):
        return None  # endless: fit(steps_per_epoch=...) marks the epochs

    def __getitem__(self, index):
        epoch, step = divmod(index, self.steps)
        epoch += self.first_epoch
        if self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.images), self.seed, epoch))
        index = self._order[1][step * self.batch_size:(step + 1) * self.batch_size]
        batch = self.images[index]
        if self.labels is not None:  # a conditional VAE's input is the pair (images, labels)
            return ((batch, self.labels[index]),)
        return (batch, batch) if self.targets else batch


#: Training steps per call of the compiled step (Keras' ``steps_per_execution``) when no callback needs every batch.
STEPS_PER_EXECUTION = 32
PREFETCH_BATCHES = 2


class EpochDataset:
    """Shuffled batches of one epoch at a time as a ``tf.data`` pipeline: no Python call per step.

    The images are held by TensorFlow once, as uint8 codes into ``data.pixel_levels()`` when they
    were made from bytes (a quarter of the memory; the batches are the same floats bit for bit), as
    float32 otherwise. Each epoch's order is ``epoch_order(n, seed, epoch)``, made once per epoch in
    NumPy when ``EpochSeeds`` sets ``epoch`` before the epoch's first batch, and held in a TensorFlow
    variable that the pipeline slices: Keras starts a new iterator at each epoch (the data set has
    ``steps`` batches). With ``labels`` (class ids, for a conditional VAE) each batch is the pair
    (images, labels) in the same order; with ``targets=True`` the pair (images, images), for a plain
    autoencoder.

    The order is a variable, not a ``from_generator`` source: a pipeline with a Python generator in
    it (Keras' own adapter for a ``PyDataset`` is one) made every training step cost twice the CPU
    time (BENCHMARKS.md, "Training throughput").
    """

    def __init__(self, images, batch_size, seed, labels=None, targets=False):
        self.n, self.batch_size, self.seed = len(images), batch_size, seed
        self.steps = -(-self.n // batch_size)
        self._epoch = None
        self._order = tf.Variable(tf.fill((self.n,), -1), trainable=False, name="epoch_order")  # -1: no epoch yet
        codes = as_pixel_codes(images)
        if codes is not None:
            stored, levels = tf.constant(codes), tf.constant(pixel_levels())
            take = lambda index: tf.gather(levels, tf.cast(tf.gather(stored, index), tf.int32))  # noqa: E731
        else:
            stored = tf.constant(np.asarray(images, dtype=np.float32))
            take = lambda index: tf.gather(stored, index)  # noqa: E731
        if labels is not None:  # each batch is the model's input (images, labels): Keras reads ((x,),) as x alone
            classes, take_images = tf.constant(np.asarray(labels, dtype=np.int32)), take
            take = lambda index: ((take_images(index), tf.gather(classes, index)),)  # noqa: E731
        elif targets:  # a plain autoencoder's (input, target) pair: the same batch twice
            take_images = take

            def take(index):
                batch = take_images(index)
                return batch, batch
        self.dataset = (tf.data.Dataset.range(self.steps).map(lambda step: take(self._batch_index(step)))
                        .prefetch(PREFETCH_BATCHES))

    def _batch_index(self, step):
        index = self._order[step * self.batch_size:(step + 1) * self.batch_size]
        unset = tf.debugging.assert_non_negative(
            index[:1], message="EpochDataset read before its epoch was set (EpochSeeds sets it at each epoch's start)")
        with tf.control_dependencies([unset]):
            return tf.identity(index)

    @property
    def epoch(self):
        """The epoch whose order the next iterator over ``dataset`` gives (None before the first is set)."""
        return self._epoch

    @epoch.setter
    def epoch(self, epoch):
        self._order.assign(epoch_order(self.n, self.seed, epoch).astype(np.int32))
        self._epoch = epoch


class EpochSeeds(keras.callbacks.Callback):
    """At each epoch's start, make its batches, its sampling noise and its KL warm-up depend only on (seed, epoch).

    The epoch comes from ``fit``, after ``BackupAndRestore`` has chosen where to resume. ``batches``
    is an ``EpochDataset`` (its ``epoch``) or an ``EpochBatches`` (its ``first_epoch``). The noise is
    the model's ``keras.random.SeedGenerator``: ``model.sampling.seed_generator`` in the package's
    models, ``model.seed_generator`` in a model of your own.
    """

    def __init__(self, batches, seed, kl_warmup=None):
        super().__init__()
        self.batches, self.seed, self.kl_warmup, self._started = batches, seed, kl_warmup, False

    def on_train_begin(self, logs=None):
        if _seed_generator(self.model) is None:
            raise TypeError(f"EpochSeeds sets each epoch's sampling noise, but {type(self.model).__name__} has no "
                            "keras.random.SeedGenerator: draw the noise with one, held in __init__ as "
                            "self.seed_generator = keras.random.SeedGenerator(seed)")

    def on_epoch_begin(self, epoch, logs=None):
        if isinstance(self.batches, EpochDataset):
            self.batches.epoch = epoch
        elif not self._started:
            self.batches.first_epoch, self._started = epoch, True
        generator = _seed_generator(self.model)
        generator.state.assign(np.array([self.seed * 100003 + epoch, 0], dtype=generator.state.dtype))
        if self.kl_warmup is not None:
            self.kl_warmup.set_epoch(epoch, self.batches.steps, self.model.vae_loss.kl_weight)


def _seed_generator(model):
    """The SeedGenerator a model draws its sampling noise from (its sampling layer's, or its own), else None."""
    for owner in (getattr(model, "sampling", None), model):
        generator = getattr(owner, "seed_generator", None)
        if isinstance(generator, keras.random.SeedGenerator):
            return generator
    return None


class EpochFeed(typing.NamedTuple):
    """What ``fit`` needs to train on ``train_vae``'s batches with its noise (see ``epoch_feed``)."""

    data: object
    steps_per_epoch: object
    callback: EpochSeeds


def epoch_feed(images, batch_size, seed):
    """Feed ``fit`` the batches and sampling noise ``train_vae`` would: ``fit(feed.data, steps_per_epoch=
    feed.steps_per_epoch, shuffle=False, callbacks=[feed.callback, ...])``.

    Epoch ``e`` reads ``images`` in the order ``epoch_order(len(images), seed, e)`` and draws its noise
    from the model's SeedGenerator (``model.seed_generator``) set to a state made from (seed, e). Two
    models that start from the same weights, take the same steps and are fed this way see the same
    numbers: a difference between them at the end comes from their code, not from chance. On
    TensorFlow ``data`` is a ``tf.data`` pipeline (``EpochDataset``) and ``steps_per_epoch`` None; on
    JAX and PyTorch an endless ``PyDataset`` (``EpochBatches``) and its number of steps.
    """
    images = check_images(images, "images", IMAGE_SHAPE)
    return _epoch_feed(images, check_count(batch_size, "batch_size"), check_count(seed, "seed", minimum=0))


def _epoch_feed(images, batch_size, seed, labels=None, kl_warmup=None):
    """``epoch_feed`` for checked arguments, with a conditional VAE's ``labels`` and ``train_vae``'s KL warm-up."""
    if BACKEND == "tensorflow":
        batches = EpochDataset(images, batch_size, seed, labels)
        data, steps_per_epoch = batches.dataset, None
    else:
        batches = EpochBatches(images, batch_size, seed, labels=labels)
        data, steps_per_epoch = batches, batches.steps
    return EpochFeed(data, steps_per_epoch, EpochSeeds(batches, seed, kl_warmup))


class EpochOrder(keras.callbacks.Callback):
    """At each epoch's start, give an ``EpochDataset`` that epoch's order (for models without sampling noise)."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


class ValidationELBO(keras.callbacks.Callback):
    """Adds ``val_elbo`` (nats per image, with fixed noise so that epochs compare) to each epoch's logs.

    With ``labels`` (the class ids of ``x_val``) the model is a conditional VAE, scored by ``conditional.elbo``.
    """

    def __init__(self, x_val, seed, labels=None):
        super().__init__()
        self.x_val, self.seed, self.labels = x_val, seed, labels

    def on_epoch_end(self, epoch, logs=None):
        if self.labels is None:
            logs["val_elbo"] = elbo(self.model, self.x_val, n_samples=VALIDATION_SAMPLES, seed=self.seed)
        else:
            logs["val_elbo"] = conditional_elbo(self.model, self.x_val, self.labels, n_samples=VALIDATION_SAMPLES,
                                                seed=self.seed)


class StopOnDivergence(keras.callbacks.Callback):
    """Raises TrainingDiverged at the end of an epoch whose mean loss is NaN or infinite.

    A NaN or infinite batch makes the epoch's mean loss NaN or infinite, so one check per epoch
    finds it without a per-batch hook (which would stop Keras from dispatching steps
    asynchronously). Placed first, it raises before the validation ELBO, the checkpoints and the
    history see the broken weights. (Keras' ``TerminateOnNaN`` only asks ``fit`` to stop.)
    """

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss} in epoch {epoch + 1}: training diverged; "
                                   "lower the learning rate")


class BestWeights(keras.callbacks.Callback):
    """Saves the weights (atomically) after each epoch whose validation ELBO beats every earlier one.

    Does what ``ModelCheckpoint(monitor="val_elbo", mode="max", save_best_only=True)`` does, except that
    a failed save leaves the previous best file whole.
    """

    def __init__(self, path, best=None):
        super().__init__()
        self.path, self.best = Path(path), best

    def on_epoch_end(self, epoch, logs=None):
        score = (logs or {}).get("val_elbo")
        if score is not None and (self.best is None or score > self.best):
            atomic_write(self.path, lambda tmp: self.model.save_weights(tmp, overwrite=True))
            self.best = score


class HistoryCSV(keras.callbacks.Callback):
    """Adds each epoch's metrics to a CSV file in ``CSVLogger``'s format, rewriting the file atomically.

    ``CSVLogger`` appends to an open file, so a full disk can leave half a row, which the next
    resumed epoch would then be glued to.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        text = self.path.read_text() if self.path.is_file() else ""
        fields = next(csv.reader([text.splitlines()[0]])) if text.strip() else ["epoch", *sorted(logs)]
        row = {"epoch": epoch, **{key: logs.get(key, "NA") for key in fields if key != "epoch"}}
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        if not text.strip():
            writer.writeheader()
        writer.writerow(row)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text + buffer.getvalue()))


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` whose backups are written atomically.

    Keras writes ``latest.weights.h5`` and ``training_metadata.json`` in place; a crash or a full
    disk in the middle leaves a broken backup. Here each file is written to a temporary file and
    renamed, and the previous state is kept beside it (``double_checkpoint``).
    """

    # With save_freq="epoch" Keras' batch hook only counts batches; left out, Keras can dispatch steps asynchronously.
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def __init__(self, backup_dir, **kwargs):
        super().__init__(backup_dir, **kwargs)
        if self.save_freq != "epoch":
            raise ValueError("AtomicBackupAndRestore saves once per epoch (save_freq='epoch')")

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint:
            for current, previous in ((self._weights_path, self._prev_weights_path),
                                      (self._training_metadata_path, self._prev_training_metadata_path)):
                if os.path.exists(current):
                    copy_file(current, previous)
        atomic_write(self._weights_path, lambda tmp: self.model.save_weights(tmp, overwrite=True))
        write_json(self._training_metadata_path, {"epoch": self._current_epoch, "batch": self._last_batch_seen})


class EpochLine(keras.callbacks.Callback):
    """One line per epoch, in nats per image (Keras' own one-line mode prints negative numbers as 1e+02)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        parts = [f"epoch {epoch + 1}/{self.params['epochs']}", f"loss {logs['loss']:.2f}",
                 f"reconstruction {logs['reconstruction_loss']:.2f}", f"KL {logs['kl_loss']:.2f}"]
        if "val_elbo" in logs:
            parts.append(f"validation ELBO {logs['val_elbo']:.2f}")
        print(" | ".join(parts + [f"{time.perf_counter() - self.started:.0f} s"]), flush=True)


def read_history(path):
    """The per-epoch metrics in a ``history.csv``, as a dict of lists (the last row of a repeated epoch wins).

    A missing file is an empty history; a file that is not such a CSV is a RunFolderError naming it.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as handle:
            rows = {int(row.pop("epoch")): row for row in csv.DictReader(handle)}
        epochs = sorted(rows)
        return {key: [_number(rows[e][key]) for e in epochs] for key in (rows[epochs[0]] if epochs else {})}
    except OSError as err:
        raise RunFolderError(read_error(path, err, "history file")) from err
    except (KeyError, ValueError, TypeError) as err:
        raise RunFolderError(f"{path}: not a training history (a CSV with an 'epoch' column and one row of numbers "
                             f"per epoch): {type(err).__name__}: {err}. The run cannot be resumed from it; "
                             "start again with --force") from err


def _number(text):
    if text is None:
        raise ValueError("a row has fewer values than the header")
    return np.nan if text in ("", "NA") else float(text)  # CSVLogger writes NA for a missing value


def best_epoch(history):
    """The epoch (1-based) with the highest validation ELBO, or None without validation."""
    return int(np.argmax(history["val_elbo"])) + 1 if history.get("val_elbo") else None


def needs_every_batch(callbacks):
    """Whether any of ``callbacks`` has a per-batch training hook (it then sees every step: steps_per_execution 1).

    A callback whose ``grouped_steps_ok`` is True is called after each group of steps instead, with
    the group's last batch index (which may pass the epoch's last batch in its last group).
    """
    hooks = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")
    return any(not getattr(callback, "grouped_steps_ok", False)
               and getattr(type(callback), hook) is not getattr(keras.callbacks.Callback, hook)
               for callback in callbacks for hook in hooks)


def _set_steps_per_execution(model, steps):
    """Run ``steps`` training steps per call of the compiled step; the steps are traced again only when it changes.

    ``predict`` and ``evaluate`` read the same setting, so their traced steps are dropped as well.
    Only on TensorFlow: Keras' PyTorch backend runs one step per call, always, and on JAX a group of
    steps would read past the end of an epoch of ``EpochBatches`` (it has no end), so that the epochs
    would drift away from ``epoch_order``.
    """
    steps = steps if BACKEND == "tensorflow" else 1
    if model.steps_per_execution != steps:
        model.steps_per_execution = steps
        model.train_function = model.test_function = model.predict_function = None


def start_warmup(vae, steps, target=1.0):
    """Give ``vae`` an in-graph KL warm-up over ``steps`` training steps to ``target`` (0 steps: none); return it.

    The schedule is made once per model; a training step traced under another schedule is traced again.
    """
    if getattr(vae, "kl_warmup", None) is None:
        vae.kl_warmup = KLWarmupSchedule()
    if vae.kl_warmup.start(steps, target):
        vae.train_function = None
    return vae.kl_warmup


def train_vae(vae, x_train, epochs, batch_size=16, x_val=None, seed=0, progress="epoch", checkpoint_dir=None,
              kl_warmup=0, callbacks=(), labels=None, val_labels=None):
    """Train ``vae`` until it has ``epochs`` epochs in all; return the per-epoch history (a dict of lists).

    ``progress`` is "bar" (Keras' progress bar), "epoch" (one line per epoch, ``EpochLine``) or None. With
    ``x_val`` the weights of the epoch with the best validation ELBO are restored at the end. With
    ``checkpoint_dir`` the run is backed up after every epoch, and a later call with that folder
    continues it from the last finished epoch (or extends a finished run). ``kl_warmup`` epochs of
    KL warm-up raise the KL's weight from near 0 to 1 (the validation ELBO always weighs it fully).
    ``callbacks`` are passed on to ``fit``; if one of them has a per-batch hook, every step is its
    own call so that it sees each batch, otherwise ``STEPS_PER_EXECUTION`` steps run per call. A NaN
    or infinite loss raises ``TrainingDiverged`` at the end of its epoch, before anything is saved.
    A conditional VAE (``vae_helpers.conditional``) also needs ``labels``, the class id of each
    training image, and ``val_labels`` with ``x_val``: they travel with their images in every batch.
    """
    x_train = check_images(x_train, "x_train", vae.image_shape)
    x_val = None if x_val is None else check_images(x_val, "x_val", vae.image_shape)
    labels, val_labels = _check_labels(vae, x_train, labels, x_val, val_labels)
    epochs, batch_size = check_count(epochs, "epochs"), check_count(batch_size, "batch_size")
    if progress not in PROGRESS:
        raise ValueError(f"progress must be 'bar', 'epoch' or None, got {progress!r}")
    if isinstance(kl_warmup, bool) or not isinstance(kl_warmup, (int, float)) or not 0 <= kl_warmup < math.inf:
        raise ValueError(f"kl_warmup must be a number of epochs, 0 or more, got {kl_warmup!r}")
    check_memory(training_memory(batch_size, vae.latent_dim), f"training with batch_size={batch_size}",
                 "lower batch_size")
    if getattr(vae, "optimizer", None) is None:
        vae.compile()
    callbacks = list(callbacks)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(checkpoint_dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        steps = -(-len(x_train) // batch_size)
        feed = _epoch_feed(x_train, batch_size, seed, labels, kl_warmup=start_warmup(vae, kl_warmup * steps))
        _set_steps_per_execution(vae, 1 if needs_every_batch(callbacks) else min(STEPS_PER_EXECUTION, steps))
        own = [StopOnDivergence(), feed.callback]  # the divergence check first
        if x_val is not None:
            best_so_far = max(read_history(folder / HISTORY_FILE).get("val_elbo", []), default=None)
            own += [ValidationELBO(x_val, seed, val_labels), BestWeights(folder / BEST_FILE, best_so_far)]
        own.append(HistoryCSV(folder / HISTORY_FILE))
        if checkpoint_dir is not None:  # last, so that the backup never runs ahead of the history
            own.append(AtomicBackupAndRestore(folder / BACKUP_DIR, double_checkpoint=True, delete_checkpoint=False))
        if progress == "epoch":
            own.append(EpochLine())
        try:
            vae.fit(feed.data, epochs=epochs, steps_per_epoch=feed.steps_per_epoch, shuffle=False,
                    verbose=int(progress == "bar"), callbacks=own + callbacks)
        finally:
            start_warmup(vae, 0)  # the model is used, and trained elsewhere, at its kl_weight
        history = read_history(folder / HISTORY_FILE)
        if not np.all(np.isfinite(history.get("loss", [np.nan]))):
            raise TrainingDiverged(f"the loss became {history.get('loss', [np.nan])[-1]} in epoch "
                                   f"{len(history.get('loss', []))}: training diverged; lower the learning rate")
        if (folder / BEST_FILE).is_file():
            vae.load_weights(folder / BEST_FILE)
    vae.vae_loss.kl_weight.assign(1.0)  # the best epoch may fall in the warm-up; the model is used at full weight
    return history


def _check_labels(vae, x_train, labels, x_val, val_labels):
    """The checked class ids of ``x_train`` and ``x_val`` for a conditional VAE, (None, None) for a plain one.

    A model reads labels when it has ``n_classes`` (``conditional.ConditionalVAE``); labels for a
    model that does not read them, or none for one that does, are refused rather than ignored.
    """
    if getattr(vae, "n_classes", None) is None:
        if labels is not None or val_labels is not None:
            raise ValueError("labels were given, but this VAE does not read them; only a conditional VAE "
                             "(vae_helpers.conditional.build_conditional_vae) is trained with labels")
        return None, None
    if labels is None:
        raise ValueError("a conditional VAE trains on images and their labels: pass labels=, the class id of each "
                         "training image")
    labels = check_labels(labels, vae.n_classes, count=len(x_train), name="labels", what="images in x_train")
    if x_val is None:
        if val_labels is not None:
            raise ValueError("val_labels were given without x_val; pass both or neither")
        return labels, None
    if val_labels is None:
        raise ValueError("a conditional VAE is validated on images and their labels: pass val_labels= with x_val")
    return labels, check_labels(val_labels, vae.n_classes, count=len(x_val), name="val_labels", what="images in x_val")


def fit_autoencoder(autoencoder, x_train, epochs, batch_size=64, seed=0, x_val=None, callbacks=()):
    """Keras ``fit`` of a plain autoencoder on ``x_train`` (input and target); return Keras' History.

    Same as ``autoencoder.fit(x_train, x_train, ...)`` but for one thing: the batches are read
    straight from ``x_train``, where Keras would first copy both arrays into TensorFlow (about
    380 MB on full MNIST, too much for a 2 GB Binder session).
    """
    x_train = check_images(x_train, "x_train", tuple(autoencoder.input_shape[1:]))
    batch_size, epochs = check_count(batch_size, "batch_size"), check_count(epochs, "epochs")
    if x_val is not None:
        x_val = check_images(x_val, "x_val", tuple(autoencoder.input_shape[1:]))
    if BACKEND == "tensorflow":  # a tf.data pipeline, as train_vae's (a PyDataset would cost twice the CPU per step)
        batches = EpochDataset(x_train, batch_size, seed, targets=True)
        validation = None
        if x_val is not None:
            validation = EpochDataset(x_val, 500, seed, targets=True)
            validation.epoch = 0  # one fixed order: the validation loss is a mean over all of x_val
        return autoencoder.fit(batches.dataset, epochs=epochs, shuffle=False,
                               validation_data=None if validation is None else validation.dataset, verbose=0,
                               callbacks=[EpochOrder(batches), *callbacks])
    batches = EpochBatches(x_train, batch_size, seed, targets=True)
    validation = None if x_val is None else EpochBatches(x_val, 500, seed, targets=True)
    return autoencoder.fit(batches, epochs=epochs, steps_per_epoch=batches.steps,
                           shuffle=False, validation_data=validation,
                           validation_steps=None if validation is None else validation.steps,
                           verbose=0, callbacks=list(callbacks))


def split_validation(x, fraction, seed):
    """Hold out ``fraction`` of the training images (fixed by ``seed``) for model selection."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng([seed, 7919]).permutation(len(x))
    n_val = int(round(len(x) * fraction))
    return x[order[n_val:]], (x[order[:n_val]] if n_val else None)


def versions():
    """Library versions, recorded with every run."""
    return {"python": platform.python_version(), "backend": BACKEND, BACKEND: backend_version(),
            "keras": keras.__version__, "numpy": np.__version__}


# --- Run folders: check everything, then write ----------------------------------------------------


def read_record(out):
    """The ``run.json`` of a run folder, or RunFolderError naming the file and what is wrong."""
    path = Path(out) / RECORD_FILE
    if not path.is_file():
        raise RunFolderError(f"{out}: no {RECORD_FILE} here; is this a folder written by 'python -m vae_helpers train'?")
    try:
        record = json.loads(path.read_text())
        TrainSettings(**record["settings"])
    except OSError as err:
        raise RunFolderError(read_error(path, err, "run record")) from err
    except (ValueError, KeyError, TypeError) as err:
        raise RunFolderError(f"{path}: not a readable run record ({type(err).__name__}: {err})") from err
    return record


def _flag(field):
    return "--" + field.replace("_", "-")


def _same_setting(field, asked, saved):
    """Whether a flag given on resume says the same as the record (data folders compared as resolved paths)."""
    if asked == saved:
        return True
    if field == "data" and os.path.isdir(str(asked)) and os.path.isdir(str(saved)):
        return os.path.realpath(asked) == os.path.realpath(saved)
    return False


def resume_settings(out, saved, asked, done):
    """The settings of a resumed run: the recorded ones, with a new ``epochs`` if asked (no fewer than ``done``).

    ``asked`` holds the settings given again on resume (a dict, or a TrainSettings whose every field
    counts); any of them but ``epochs`` that differs from the record is refused, naming its flag.
    """
    asked = dataclasses.asdict(asked) if isinstance(asked, TrainSettings) else dict(asked or {})
    saved = {**dataclasses.asdict(TrainSettings()), **saved}  # a record from before a setting existed has its default
    fields = [field.name for field in dataclasses.fields(TrainSettings)]
    unknown = sorted(set(asked) - set(fields))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; the settings are {fields}")
    for field in fields:
        if field in asked and field not in RESUMABLE and not _same_setting(field, asked[field], saved[field]):
            raise RunFolderError(f"{_flag(field)} {asked[field]} differs from this run's {saved[field]!r} "
                                 f"(in {Path(out) / RECORD_FILE}): a resumed run keeps its settings, only --epochs "
                                 f"may grow. Drop {_flag(field)}, or start a new run with another --out")
    settings = TrainSettings(**{**saved, **{key: asked[key] for key in RESUMABLE if key in asked}})
    check_count(settings.epochs, "--epochs")
    if settings.epochs < done:
        raise RunFolderError(f"--epochs {settings.epochs} is fewer than the {done} epochs this run has already "
                             f"trained; resume with --epochs {done} or more (or without --epochs to finish "
                             f"the {saved['epochs']} recorded)")
    return settings


def _read_backup_state(weights, metadata):
    """(epoch, model arrays) of one backed-up training state; WeightsError or ValueError if it is damaged."""
    try:
        state = json.loads(Path(metadata).read_text())
        epoch = state["epoch"]
    except OSError as err:
        raise ValueError(read_error(metadata, err, "checkpoint file")) from err
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{metadata}: damaged ({type(err).__name__}: {err})") from err
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"{metadata}: damaged (epoch {epoch!r} is not a positive whole number)")
    return epoch, read_weights_file(weights)


def find_backup(out):
    """The training state a resumed run starts from: (epoch, model arrays, previous), or RunFolderError naming the files.

    ``BackupAndRestore`` keeps the last epoch's state and the one before (``.bkp``). If the last is
    damaged the one before is used (``previous`` is True) and that epoch is trained again.
    """
    backup = Path(out) / CHECKPOINT_DIR / BACKUP_DIR
    latest = (backup / "latest.weights.h5", backup / "training_metadata.json")
    earlier = tuple(Path(f"{path}.bkp") for path in latest)
    problems = []
    for paths, previous in ((latest, False), (earlier, True)):
        if not all(path.is_file() for path in paths):
            problems.append(f"{paths[0].name} or {paths[1].name} is missing")
            continue
        try:
            return (*_read_backup_state(*paths), previous)
        except (WeightsError, ValueError) as err:
            problems.append(str(err))
    raise RunFolderError(f"{backup}: no usable checkpoint to resume from ({'; '.join(problems)}). The run cannot "
                         f"continue; what it finished is in {RECORD_FILE}. Start again with --force")


def _check_folder(out, force, resume):
    """RunFolderError unless ``out`` may be used as asked; checks only, writes and deletes nothing.

    ``force`` replaces only the files a run writes, and only in a folder that holds a run.
    """
    if force and resume:
        raise RunFolderError("--force and --resume cannot be combined: --resume continues the run in --out, "
                             "--force replaces it")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    if resume:
        if not (out / CHECKPOINT_DIR / BACKUP_DIR).is_dir():
            raise RunFolderError(f"{out}: no checkpoint to resume from (the run stopped before its first epoch "
                                 "ended); start again with --force")
        return
    if out.exists() and any(out.iterdir()):
        if not force:
            raise RunFolderError(f"{out} already holds files; choose another --out, add --resume to "
                                 "continue that run, or --force to replace its run files")
        if not (out / RECORD_FILE).is_file():
            raise RunFolderError(f"{out} holds files but no {RECORD_FILE}, so it is not a run folder; "
                                 "--force only replaces runs: choose another --out")


def _remove_run_files(out):
    """Delete what an earlier run wrote into ``out`` (for --force; everything has been checked by now)."""
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    for name in (WEIGHTS_FILE, *FIGURES):
        (out / name).unlink(missing_ok=True)


def _check_data(settings, splits):
    """Split off the validation images; ValueError naming --data or --validation-fraction if the data cannot train this network."""
    (x_train, _), (x_test, _) = splits
    for split, images in (("training", x_train), ("test", x_test)):
        if images.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"--data {settings.data}: the {split} images are {'x'.join(map(str, images.shape[1:3]))} "
                            f"pixels, but the network reads {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} images")
    x_fit, x_val = split_validation(x_train, settings.validation_fraction, settings.seed)
    if len(x_fit) == 0:
        raise ValueError(f"--validation-fraction {settings.validation_fraction} holds out all {len(x_train)} "
                         "training images and leaves none to train on; lower it (the default is 0.1)")
    return x_fit, x_val


def _check_same_backend(out, saved):
    """RunFolderError unless this process runs on the Keras backend the run was trained on (records before the
    backend was recorded are TensorFlow's): the same batches and noise give the same weights only there."""
    versions_saved = saved.get("versions") if isinstance(saved.get("versions"), dict) else {}
    recorded = versions_saved.get("backend", "tensorflow")
    if recorded != BACKEND:
        raise RunFolderError(f"{out}: this run was trained on Keras' {recorded} backend and this Python runs on "
                             f"{BACKEND}; a run resumes exactly only on its own backend. Resume it with "
                             f"KERAS_BACKEND={recorded} set before Python starts, or start a new run with another --out")


def _check_same_data(out, saved, sizes, digest, settings):
    """RunFolderError unless the data of a resumed run is the data it was trained on (SHA-256, or sizes in old records)."""
    recorded = saved.get("data_sha256")
    if recorded is not None and recorded != digest:
        raise RunFolderError(f"{out}: this run was trained on data with SHA-256 {recorded[:16]}..., but --data "
                             f"{settings.data!r} now gives data with SHA-256 {digest[:16]}... ({sizes}); "
                             "resume with the same data")
    if recorded is None and saved.get("data") != sizes:
        raise RunFolderError(f"{out}: this run was trained on {saved.get('data')} images but --data "
                             f"{settings.data!r} now gives {sizes}; resume with the same data")


def save_figures(vae, out, x_test, y_test, history):
    """Write manifold.png, latent.png (2-D latent spaces and up) and history.png into ``out``; return their paths.

    Figures are drawn without pyplot, so calling this from a notebook leaves its plotting backend alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vae_helpers.latent import encode
    from vae_helpers.plotting import plot_history, plot_latent_scatter, plot_manifold

    def draw(plot, *args, **kwargs):
        figure = Figure(figsize=(7, 6))
        FigureCanvasAgg(figure)
        plot(*args, ax=figure.add_subplot(), **kwargs)
        return figure

    figures = {"history.png": draw(plot_history, history)}
    if vae.latent_dim >= 2:
        figures["manifold.png"] = draw(plot_manifold, vae.decoder)
        figures["latent.png"] = draw(plot_latent_scatter, encode(vae, x_test), y_test)
    paths = []
    for name, fig in figures.items():
        atomic_write(Path(out) / name, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
        paths.append(Path(out) / name)
    return paths


def learning_rate(settings, n_train):
    """The learning rate of a run: a number, or a schedule of the optimizer's step.

    ``lr_schedule`` "cosine" decays it to 5% over all the run's steps; ``lr_warmup`` epochs first
    raise it linearly from 0 (then a cosine decay follows over the remaining steps, or it stays).
    """
    steps_per_epoch = -(-n_train // settings.batch_size)
    total = settings.epochs * steps_per_epoch
    warmup = int(round(settings.lr_warmup * steps_per_epoch))
    if settings.lr_schedule == "constant" and not warmup:
        return settings.learning_rate
    cosine = settings.lr_schedule == "cosine"
    decay, alpha = (max(1, total - warmup), 0.05) if cosine else (1, 1.0)  # alpha 1: no decay at all
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps=decay, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=decay, alpha=alpha,
                                                  warmup_target=settings.learning_rate, warmup_steps=warmup)


def compile_with(model, settings, n_train):
    """Compile ``model`` as a run with ``settings`` (a TrainSettings) on ``n_train`` images is compiled.

    Adam with the run's learning rate or schedule (``learning_rate``). ``settings.jit_compile`` only
    decides on TensorFlow; other backends keep Keras' own choice ("auto": JAX compiles every step with
    XLA, and turning that off would run it op by op; on PyTorch ``torch.compile`` stays off).
    """
    model.compile(Adam(learning_rate(settings, n_train)),
                  jit_compile=settings.jit_compile if BACKEND == "tensorflow" else "auto")


def _record_failure(out, record, status, err):
    """Write ``record`` with ``status`` and the error, keeping all it held; a failure to write is not allowed to hide ``err``."""
    message = "interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else f"{type(err).__name__}: {err}"
    try:
        write_json(out / RECORD_FILE, {**record, "status": status, "error": message})
    except OSError:
        pass


def train_run(out, settings=None, force=False, resume=False, progress="bar", deterministic=False, command=None,
              log=print):
    """Train a VAE into the run folder ``out`` (weights, ``run.json``, figures); return (vae, record).

    For a bfloat16 run the returned VAE is its float32 copy, the model that was scored and saved.

    A folder that already holds files is only replaced with ``force``. ``resume`` continues the run
    saved there from its last completed epoch, with the settings stored in its ``run.json``:
    ``settings`` (a dict of the settings given again, or a TrainSettings) may raise ``epochs``; any
    other setting must equal the record's, and the data must have the recorded SHA-256.
    ``deterministic`` turns on TensorFlow's deterministic kernels for this process (see ``set_seed``).
    ``command`` (the command line) is kept in the record: a resume adds its own to ``resumes``.

    Everything is checked before anything is written or deleted. Once training has started, a
    failure is recorded in ``run.json`` ("failed", "diverged" or "interrupted", and the error),
    which keeps everything it held before.
    """
    out = Path(out)
    if progress not in PROGRESS:
        raise ValueError(f"progress must be 'bar', 'epoch' or None, got {progress!r}")
    saved = read_record(out) if resume and not force else None
    _check_folder(out, force, resume)
    if resume:
        _check_same_backend(out, saved)
        read_history(out / CHECKPOINT_DIR / HISTORY_FILE)  # a damaged history is refused before anything is written
        done, backup, previous = find_backup(out)
        settings = resume_settings(out, saved["settings"], settings, done)
    elif isinstance(settings, dict):
        settings = TrainSettings(**settings)
    settings = (settings or TrainSettings()).validate()
    splits = load_mnist(settings.data)
    (x_train, y_train), (x_test, y_test) = splits
    x_fit, x_val = _check_data(settings, splits)
    sizes = {"train": len(x_fit), "validation": 0 if x_val is None else len(x_val), "test": len(x_test)}
    digest = data_digest(splits)
    if resume:
        _check_same_data(out, saved, sizes, digest, settings)
    set_seed(settings.seed, deterministic=deterministic)
    vae = build_vae(settings.latent_dim, settings.loss, seed=settings.seed, compile=False, precision=settings.precision)
    compile_with(vae, settings, len(x_fit))
    if resume:
        try:
            _check_shapes(vae, backup, out / CHECKPOINT_DIR / BACKUP_DIR, f"this VAE (latent_dim={vae.latent_dim})")
        except WeightsError as err:
            raise RunFolderError(f"{err} The settings in {out / RECORD_FILE} no longer match the checkpoint "
                                 "(was the file edited?)") from err
    # Everything is checked: from here on the folder is written.
    if resume:
        if previous:
            backup_dir = out / CHECKPOINT_DIR / BACKUP_DIR
            for name in ("latest.weights.h5", "training_metadata.json"):
                copy_file(backup_dir / f"{name}.bkp", backup_dir / name)
            log(f"The last checkpoint in {backup_dir} is damaged; resuming from the one before (epoch {done}).")
        log(f"Resuming {out} after epoch {done} of {settings.epochs}.")
        record = {key: value for key, value in saved.items() if key != "error"}
        record["resumes"] = [*saved.get("resumes", []), {"command": command, "epochs": settings.epochs}]
        record["status"] = "running"
    else:
        if force:
            _remove_run_files(out)
        out.mkdir(parents=True, exist_ok=True)
        record = {"command": command, "settings": dataclasses.asdict(settings), "status": "running",
                  "versions": versions(), "data": sizes, "data_sha256": digest}
    write_json(out / RECORD_FILE, record)
    started = time.perf_counter()
    try:
        history = train_vae(vae, x_fit, settings.epochs, settings.batch_size, x_val=x_val, seed=settings.seed,
                            progress=progress, checkpoint_dir=out / CHECKPOINT_DIR, kl_warmup=settings.kl_warmup)
        if settings.precision != "float32":
            vae = float32_copy(vae)  # scored, saved and drawn in float32, as every other run
        scores = {
            "settings": dataclasses.asdict(settings), "versions": versions(), "data": sizes, "data_sha256": digest,
            "status": "finished",
            "history": history,
            "best_epoch": best_epoch(history),
            "best_val_elbo": max(history["val_elbo"]) if history.get("val_elbo") else None,
            "test_elbo": elbo(vae, x_test, n_samples=8, seed=settings.seed),
            "knn_accuracy": knn_latent_accuracy(vae, x_train, y_train, x_test, y_test),
            "train_seconds_this_session": time.perf_counter() - started,
        }
        # Scored before the weights are replaced, so that weights and record never disagree after a failure.
        atomic_write(out / WEIGHTS_FILE, lambda tmp: save_vae_weights(vae, tmp))
        record.update(scores, weights_sha256=sha256_of(out / WEIGHTS_FILE))
        write_json(out / RECORD_FILE, record)  # the scores are safe before any figure is drawn
        files = [WEIGHTS_FILE, RECORD_FILE] + [p.name for p in save_figures(vae, out, x_test, y_test, history)]
        write_json(out / RECORD_FILE, {**record, "files": files})
    except TrainingDiverged as err:
        _record_failure(out, record, "diverged", err)
        raise
    except KeyboardInterrupt as err:
        _record_failure(out, record, "interrupted", err)
        raise
    except Exception as err:
        _record_failure(out, record, "failed", err)
        raise
    record["files"] = files
    return vae, record
