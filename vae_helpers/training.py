"""Training with Keras' own loop: one ``fit`` call, Keras callbacks, and batches from a ``PyDataset``.

``train_vae`` trains a VAE. The batch order and the sampling noise of epoch ``e`` depend only on
``(seed, e)``, so a run that is interrupted and resumed from the last epoch that
``keras.callbacks.BackupAndRestore`` saved ends with exactly the weights of an uninterrupted run.
After each epoch the validation images are scored with the ELBO, ``ModelCheckpoint`` keeps the
best weights and ``CSVLogger`` records the epoch.

``train_run`` is what ``python -m vae_helpers train`` runs: data, run folder, ``run.json``, figures.
"""

import csv
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vae_helpers._tf import keras, set_seed, tf
from vae_helpers.config import TrainSettings, check_count
from vae_helpers.data import check_images, load_mnist
from vae_helpers.evaluation import elbo, knn_latent_accuracy
from vae_helpers.models import build_vae, save_vae_weights

WEIGHTS_FILE = "weights.weights.h5"
RECORD_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"  # inside it: history.csv, best.weights.h5 and backup/ (BackupAndRestore's)
HISTORY_FILE = "history.csv"
BEST_FILE = "best.weights.h5"
BACKUP_DIR = "backup"
VALIDATION_SAMPLES = 4  # z draws per image when scoring the validation ELBO each epoch
PROGRESS = ("bar", "epoch", None)


class RunFolderError(ValueError):
    """A run folder cannot be used as asked (it exists, or there is nothing to resume)."""


def epoch_order(n, seed, epoch):
    """The shuffle order of epoch ``epoch``: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class EpochBatches(keras.utils.PyDataset):
    """Shuffled batches read straight from ``images`` (no copy of the data set), endless across epochs.

    Batch ``i`` of a ``fit`` call belongs to epoch ``first_epoch + i // steps`` and follows
    ``epoch_order``, so Keras' prefetching can never mix up the orders of two epochs. With
    ``targets=True`` each batch is an (input, target) pair of the same images, for a plain
    autoencoder: ``fit(x, x)`` would copy both arrays into TensorFlow first.
    """

    def __init__(self, images, batch_size, seed, targets=False):
        super().__init__()
        self.images, self.batch_size, self.seed, self.targets = images, batch_size, seed, targets
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
        batch = self.images[self._order[1][step * self.batch_size:(step + 1) * self.batch_size]]
        return (batch, batch) if self.targets else batch


class EpochSeeds(keras.callbacks.Callback):
    """At each epoch's start, make its batches and its sampling noise depend only on (seed, epoch).

    The first epoch of a ``fit`` call is known only here, after ``BackupAndRestore`` has chosen it.
    """

    def __init__(self, batches, seed):
        super().__init__()
        self.batches, self.seed, self._started = batches, seed, False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self.batches.first_epoch, self._started = epoch, True
        state = np.array([self.seed * 100003 + epoch, 0], dtype=np.int64)
        self.model.sampling.seed_generator.state.assign(state)


class KLWarmup(keras.callbacks.Callback):
    """Raises the loss layer's KL weight linearly from near 0 to 1 over the first ``epochs`` epochs (a function of the step)."""

    def __init__(self, epochs, steps_per_epoch):
        super().__init__()
        self.total, self.steps, self.epoch = epochs * steps_per_epoch, steps_per_epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        step = self.epoch * self.steps + batch + 1
        self.model.vae_loss.kl_weight.assign(min(1.0, step / self.total))


class ValidationELBO(keras.callbacks.Callback):
    """Adds ``val_elbo`` (nats per image, with fixed noise so that epochs compare) to each epoch's logs."""

    def __init__(self, x_val, seed):
        super().__init__()
        self.x_val, self.seed = x_val, seed

    def on_epoch_end(self, epoch, logs=None):
        logs["val_elbo"] = elbo(self.model, self.x_val, n_samples=VALIDATION_SAMPLES, seed=self.seed)


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
    """The per-epoch metrics that ``CSVLogger`` wrote, as a dict of lists (the last row of a repeated epoch wins)."""
    if not Path(path).is_file():
        return {}
    with open(path, newline="") as handle:
        rows = {int(row.pop("epoch")): row for row in csv.DictReader(handle)}
    epochs = sorted(rows)
    return {key: [_number(rows[e][key]) for e in epochs] for key in (rows[epochs[0]] if epochs else {})}


def _number(text):
    return np.nan if text in ("", "NA") else float(text)  # CSVLogger writes NA for a missing value


def best_epoch(history):
    """The epoch (1-based) with the highest validation ELBO, or None without validation."""
    return int(np.argmax(history["val_elbo"])) + 1 if history.get("val_elbo") else None


def train_vae(vae, x_train, epochs, batch_size=16, x_val=None, seed=0, progress="epoch", checkpoint_dir=None,
              kl_warmup=0, callbacks=()):
    """Train ``vae`` until it has ``epochs`` epochs in all; return the per-epoch history (a dict of lists).

    ``progress`` is "bar" (Keras' progress bar), "epoch" (one line per epoch, ``EpochLine``) or None. With
    ``x_val`` the weights of the epoch with the best validation ELBO are restored at the end. With
    ``checkpoint_dir`` the run is backed up after every epoch, and a later call with that folder
    continues it from the last finished epoch (or extends a finished run). ``kl_warmup`` epochs of
    KL warm-up raise the KL's weight from near 0 to 1 (the validation ELBO always weighs it fully).
    ``callbacks`` are passed on to ``fit``.
    """
    x_train = check_images(x_train, "x_train", vae.image_shape)
    x_val = None if x_val is None else check_images(x_val, "x_val", vae.image_shape)
    epochs, batch_size = check_count(epochs, "epochs"), check_count(batch_size, "batch_size")
    if progress not in PROGRESS:
        raise ValueError(f"progress must be 'bar', 'epoch' or None, got {progress!r}")
    if getattr(vae, "optimizer", None) is None:
        vae.compile()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(checkpoint_dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        batches = EpochBatches(x_train, batch_size, seed)
        own = [EpochSeeds(batches, seed), keras.callbacks.TerminateOnNaN()]
        if kl_warmup:
            own.append(KLWarmup(kl_warmup, batches.steps))
        if x_val is not None:
            best_so_far = max(read_history(folder / HISTORY_FILE).get("val_elbo", []), default=None)
            own += [ValidationELBO(x_val, seed),
                    keras.callbacks.ModelCheckpoint(folder / BEST_FILE, monitor="val_elbo", mode="max",
                                                    save_best_only=True, save_weights_only=True,
                                                    initial_value_threshold=best_so_far)]
        own.append(keras.callbacks.CSVLogger(folder / HISTORY_FILE, append=True))
        if checkpoint_dir is not None:  # last, so that the backup never runs ahead of the history
            own.append(keras.callbacks.BackupAndRestore(folder / BACKUP_DIR, double_checkpoint=True,
                                                        delete_checkpoint=False))
        if progress == "epoch":
            own.append(EpochLine())
        vae.fit(batches, epochs=epochs, steps_per_epoch=batches.steps, shuffle=False, verbose=int(progress == "bar"),
                callbacks=own + list(callbacks))
        history = read_history(folder / HISTORY_FILE)
        if not np.all(np.isfinite(history.get("loss", [np.nan]))):
            raise ValueError(f"the loss became {history.get('loss', [np.nan])[-1]} in epoch {len(history.get('loss', []))}: "
                             "training diverged; lower the learning rate")
        if (folder / BEST_FILE).is_file():
            vae.load_weights(folder / BEST_FILE)
    vae.vae_loss.kl_weight.assign(1.0)  # the best epoch may fall in the warm-up; the model is used at full weight
    return history


def fit_autoencoder(autoencoder, x_train, epochs, batch_size=64, seed=0, x_val=None, callbacks=()):
    """Keras ``fit`` of a plain autoencoder on ``x_train`` (input and target); return Keras' History.

    Same as ``autoencoder.fit(x_train, x_train, ...)`` but for one thing: the batches are read
    straight from ``x_train``, where Keras would first copy both arrays into TensorFlow (about
    380 MB on full MNIST, too much for a 2 GB Binder session).
    """
    x_train = check_images(x_train, "x_train", tuple(autoencoder.input_shape[1:]))
    validation = None
    if x_val is not None:
        x_val = check_images(x_val, "x_val", tuple(autoencoder.input_shape[1:]))
        validation = EpochBatches(x_val, 500, seed, targets=True)
    batches = EpochBatches(x_train, check_count(batch_size, "batch_size"), seed, targets=True)
    return autoencoder.fit(batches, epochs=check_count(epochs, "epochs"), steps_per_epoch=batches.steps,
                           shuffle=False, validation_data=validation,
                           validation_steps=None if validation is None else validation.steps,
                           verbose=0, callbacks=list(callbacks))


def _atomic(path, write):
    """Call ``write(tmp_path)`` then rename onto ``path``, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path, data):
    """Write JSON atomically."""
    _atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))


def split_validation(x, fraction, seed):
    """Hold out ``fraction`` of the training images (fixed by ``seed``) for model selection."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng([seed, 7919]).permutation(len(x))
    n_val = int(round(len(x) * fraction))
    return x[order[n_val:]], (x[order[:n_val]] if n_val else None)


def versions():
    """Library versions, recorded with every run."""
    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


def read_record(out):
    """The ``run.json`` of a run folder, or RunFolderError naming the file and what is wrong."""
    path = Path(out) / RECORD_FILE
    if not path.is_file():
        raise RunFolderError(f"{out}: no {RECORD_FILE} here; is this a folder written by 'python -m vae_helpers train'?")
    try:
        record = json.loads(path.read_text())
        TrainSettings(**record["settings"])
    except (ValueError, KeyError, TypeError) as err:
        raise RunFolderError(f"{path}: not a readable run record ({type(err).__name__}: {err})") from err
    return record


def _prepare_folder(out, force, resume):
    """Make sure ``out`` may be written: new, or resumed, or explicitly replaced with ``force``.

    ``force`` replaces only the files a run writes, and only in a folder that holds a run.
    """
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
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


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
        _atomic(Path(out) / name, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
        paths.append(Path(out) / name)
    return paths


def learning_rate(settings, n_train):
    """The learning rate of a run: a number, or a cosine decay to 5% of it over all the run's steps."""
    if settings.lr_schedule == "constant":
        return settings.learning_rate
    steps = settings.epochs * -(-n_train // settings.batch_size)
    return keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps=steps, alpha=0.05)


def train_run(out, settings=None, force=False, resume=False, progress="bar", deterministic=False, command=None,
              log=print):
    """Train a VAE into the run folder ``out`` (weights, ``run.json``, figures); return (vae, record).

    A folder that already holds files is only replaced with ``force``; ``resume`` continues the
    run saved there from its last completed epoch, with the settings stored in its ``run.json``
    (``settings.epochs`` may extend it). ``deterministic`` turns on TensorFlow's deterministic
    kernels for this process (see ``set_seed``). ``command`` (the command line) is kept in the record.
    """
    out = Path(out)
    if resume:
        saved = read_record(out)
        extra = {"epochs": settings.epochs} if settings else {}
        settings = TrainSettings(**{**saved["settings"], **extra})
    settings = (settings or TrainSettings()).validate()
    _prepare_folder(out, force, resume)
    set_seed(settings.seed, deterministic=deterministic)
    (x_train, y_train), (x_test, y_test) = load_mnist(settings.data)
    x_fit, x_val = split_validation(x_train, settings.validation_fraction, settings.seed)
    sizes = {"train": len(x_fit), "validation": 0 if x_val is None else len(x_val), "test": len(x_test)}
    if resume:
        if saved.get("data") != sizes:
            raise RunFolderError(f"{out}: this run was trained on {saved.get('data')} images but --data "
                                 f"{settings.data!r} now gives {sizes}; resume with the same data")
        done = len(read_history(out / CHECKPOINT_DIR / HISTORY_FILE).get("loss", []))
        log(f"Resuming {out} after epoch {done} of {settings.epochs}.")
    vae = build_vae(settings.latent_dim, settings.loss, seed=settings.seed, compile=False)
    vae.compile(keras.optimizers.Adam(learning_rate(settings, len(x_fit))))
    record = {"command": command or (saved.get("command") if resume else None), "settings": dataclasses.asdict(settings),
              "status": "running", "versions": versions(), "data": sizes}
    write_json(out / RECORD_FILE, record)
    started = time.perf_counter()
    history = train_vae(vae, x_fit, settings.epochs, settings.batch_size, x_val=x_val, seed=settings.seed,
                        progress=progress, checkpoint_dir=out / CHECKPOINT_DIR, kl_warmup=settings.kl_warmup)
    _atomic(out / WEIGHTS_FILE, lambda tmp: save_vae_weights(vae, tmp))
    record.update({
        "status": "finished",
        "history": history,
        "best_epoch": best_epoch(history),
        "best_val_elbo": max(history["val_elbo"]) if history.get("val_elbo") else None,
        "test_elbo": elbo(vae, x_test, n_samples=8, seed=settings.seed),
        "knn_accuracy": knn_latent_accuracy(vae, x_train, y_train, x_test, y_test),
        "train_seconds_this_session": time.perf_counter() - started,
    })
    write_json(out / RECORD_FILE, record)  # the scores are safe before any figure is drawn
    record["files"] = [WEIGHTS_FILE, RECORD_FILE] + [p.name for p in save_figures(vae, out, x_test, y_test, history)]
    write_json(out / RECORD_FILE, record)
    return vae, record
