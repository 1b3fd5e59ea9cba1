"""Training loops that can be interrupted and resumed, and that keep the best weights.

``train_vae`` fits a compiled VAE one epoch at a time. The shuffle order and the sampling noise of
epoch ``e`` depend only on ``(seed, e)``, so a run resumed from the checkpoint written after epoch
``e`` continues exactly as an uninterrupted one would. After each epoch it scores the validation
images with the ELBO (fixed noise, so scores are comparable) and keeps the best weights.

``train_run`` is what ``python -m vae_helpers train`` runs: data, folders, checkpoints,
``run.json`` and figures.
"""

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from vae_helpers._tf import keras, tf
from vae_helpers.config import set_seed
from vae_helpers.data import check_images, load_mnist
from vae_helpers.evaluation import elbo
from vae_helpers.models import DEFAULT_LEARNING_RATE, WeightsError, build_vae, load_vae_weights

WEIGHTS_FILE = "weights.weights.h5"
RECORD_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_STATE = "state.json"
VALIDATION_SAMPLES = 4  # z draws per image when scoring the validation ELBO each epoch


class RunFolderError(RuntimeError):
    """A run folder cannot be used as asked (it exists, or there is nothing to resume)."""


def epoch_order(n, seed, epoch):
    """The shuffle order of epoch ``epoch``: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def reseed_sampling(vae, seed, epoch):
    """Reset the sampling layer's noise stream to a state that depends only on (seed, epoch)."""
    vae.sampling.seed_generator.state.assign(np.array([seed * 100003 + epoch, 0], dtype=np.int64))


def epoch_batches(images, order, batch_size):
    """A tf.data pipeline of batches of ``images`` in ``order``, gathered on the fly.

    No shuffled copy of the data set is made, so full MNIST trains within Binder's memory.
    """
    return (tf.data.Dataset.from_tensor_slices(order)
            .batch(batch_size)
            .map(lambda indices: tf.gather(images, indices))
            .prefetch(2))


class _BatchBar(keras.callbacks.Callback):
    """A tqdm progress bar over the batches of one epoch."""

    def __init__(self, description, steps):
        super().__init__()
        from tqdm.auto import tqdm

        self.bar = tqdm(total=steps, desc=description, unit="batch", leave=False, file=sys.stdout)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if batch % 25 == 0 and logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.1f}")

    def on_train_end(self, logs=None):
        self.bar.close()


def format_epoch(epoch, epochs, record):
    """One readable line per epoch for logs and notebooks."""
    parts = [f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}",
             f"loss {record['loss']:.2f}",
             f"recon {record['reconstruction_loss']:.2f}",
             f"KL {record['kl_loss']:.2f}"]
    if "val_elbo" in record:
        parts.append(f"val ELBO {record['val_elbo']:.2f}")
    parts.append(f"{record['seconds']:.1f} s")
    return " | ".join(parts)


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


@dataclasses.dataclass
class TrainingState:
    """Where a training run stands: epochs done, per-epoch history, best epoch and its weights."""

    epochs_done: int = 0
    history: dict = dataclasses.field(default_factory=dict)
    best_epoch: int = None
    best_val_elbo: float = None
    best_weights: list = None

    def to_json(self):
        return {"epochs_done": self.epochs_done, "history": self.history,
                "best_epoch": self.best_epoch, "best_val_elbo": self.best_val_elbo}


def train_vae(vae, x_train, epochs, batch_size=16, x_val=None, seed=0, progress="epoch",
              checkpoint_dir=None, state=None):
    """Train ``vae`` up to ``epochs`` epochs in total; return the final ``TrainingState``.

    ``progress`` is "bar" (tqdm over batches), "epoch" (one line per epoch) or None. With
    ``x_val`` the weights of the epoch with the best validation ELBO are restored at the end.
    With ``checkpoint_dir`` the model, optimizer state and history are saved atomically after
    every epoch; pass the state from ``load_checkpoint`` to continue an interrupted run (it holds
    the last epoch's weights and optimizer state; ``vae`` itself ends on the best epoch's weights).
    """
    x_train = check_images(x_train, "x_train", vae.image_shape)
    if x_val is not None:
        x_val = check_images(x_val, "x_val", vae.image_shape)
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if getattr(vae, "optimizer", None) is None:
        vae.compile()
    state = state or TrainingState()
    steps = -(-len(x_train) // batch_size)
    images = tf.constant(x_train)  # one copy for the whole run; epochs gather batches from it
    for epoch in range(state.epochs_done, epochs):
        started = time.perf_counter()
        reseed_sampling(vae, seed, epoch)
        callbacks = [_BatchBar(f"epoch {epoch + 1}/{epochs}", steps)] if progress == "bar" and sys.stdout.isatty() else []
        batches = epoch_batches(images, epoch_order(len(x_train), seed, epoch), batch_size)
        fit = vae.fit(batches, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
        record = {key: float(values[-1]) for key, values in fit.history.items()}
        if not np.isfinite(record["loss"]):
            raise ValueError(f"the loss became {record['loss']} in epoch {epoch + 1}: training diverged; "
                             "lower the learning rate")
        if x_val is not None:
            record["val_elbo"] = elbo(vae, x_val, n_samples=VALIDATION_SAMPLES, seed=seed)
            if state.best_val_elbo is None or record["val_elbo"] > state.best_val_elbo:
                state.best_epoch, state.best_val_elbo = epoch + 1, record["val_elbo"]
                state.best_weights = vae.get_weights()
        record["seconds"] = time.perf_counter() - started
        for key, value in record.items():
            state.history.setdefault(key, []).append(value)
        state.epochs_done = epoch + 1
        if progress:
            print(format_epoch(epoch, epochs, record), flush=True)
        if checkpoint_dir is not None:
            save_checkpoint(vae, checkpoint_dir, state)
    if state.best_weights is not None:
        vae.set_weights(state.best_weights)
    return state


def _checkpoint_names(epochs_done, best_epoch):
    model = f"last-e{epochs_done:04d}.keras"
    best = f"best-e{best_epoch:04d}.weights.h5" if best_epoch is not None else None
    return model, best


def save_checkpoint(vae, folder, state):
    """Save model + optimizer state and the best weights under epoch-tagged names, then ``state.json``.

    ``state.json`` is written last and names the files it goes with, so it is the commit point:
    a crash at any moment leaves either the previous complete checkpoint or the new one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_name, best_name = _checkpoint_names(state.epochs_done, state.best_epoch)
    _atomic(folder / model_name, vae.save)
    if best_name and state.best_epoch == state.epochs_done:
        _atomic(folder / best_name, vae.save_weights)  # the best epoch is the one just finished
    write_json(folder / CHECKPOINT_STATE, {**state.to_json(), "model_file": model_name, "best_file": best_name})
    keep = {model_name, best_name, CHECKPOINT_STATE}
    for old in list(folder.glob("last-e*.keras")) + list(folder.glob("best-e*.weights.h5")):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def load_checkpoint(folder):
    """The VAE (with its optimizer state) and the ``TrainingState`` saved by ``save_checkpoint``."""
    folder = Path(folder)
    state_path = folder / CHECKPOINT_STATE
    if not state_path.is_file():
        raise RunFolderError(f"{folder}: no checkpoint to resume from (no {CHECKPOINT_STATE}: "
                             "the run stopped before its first epoch ended); start again with --force")
    try:
        saved = json.loads(state_path.read_text())
        model_file, best_file = saved.pop("model_file"), saved.pop("best_file")
        state = TrainingState(**saved)
        vae = keras.models.load_model(folder / model_file)
        if best_file is not None:
            last_weights = vae.get_weights()
            load_vae_weights(vae, folder / best_file)
            state.best_weights = vae.get_weights()
            vae.set_weights(last_weights)
    except (WeightsError, ValueError, KeyError, TypeError, OSError) as err:
        raise RunFolderError(f"{folder}: the checkpoint cannot be read ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200]}); start a new run with --force") from err
    return vae, state


@dataclasses.dataclass
class TrainSettings:
    """Everything that defines a training run (stored in ``run.json``)."""

    data: str = "auto"
    epochs: int = 30
    batch_size: int = 16
    latent_dim: int = 2
    loss: str = "elbo"
    seed: int = 0
    learning_rate: float = DEFAULT_LEARNING_RATE
    validation_fraction: float = 0.1

    def validate(self):
        """Raise ValueError naming the first bad setting (as its command-line flag), before anything is written."""
        def positive_int(value):
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1

        checks = [
            (positive_int(self.epochs), f"--epochs must be a positive integer, got {self.epochs!r}"),
            (positive_int(self.batch_size), f"--batch-size must be a positive integer, got {self.batch_size!r}"),
            (positive_int(self.latent_dim), f"--latent-dim must be a positive integer, got {self.latent_dim!r}"),
            (isinstance(self.seed, (int, np.integer)) and self.seed >= 0,
             f"--seed must be a non-negative integer, got {self.seed!r}"),
            (np.isfinite(self.learning_rate) and self.learning_rate > 0,
             f"--learning-rate must be a positive number, got {self.learning_rate!r}"),
            (0.0 <= self.validation_fraction < 1.0,
             f"--validation-fraction must be in [0, 1), got {self.validation_fraction!r}"),
            (self.loss in ("elbo", "book"), f"--loss must be 'elbo' or 'book', got {self.loss!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self


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


def _prepare_folder(out, force, resume):
    """Make sure ``out`` may be written: new, or resumed, or explicitly replaced with ``force``.

    ``force`` replaces only the files a run writes, and only in a folder that holds a run.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    if resume:
        read_record(out)
        return
    if out.exists() and any(out.iterdir()):
        if not force:
            raise RunFolderError(f"{out} already holds files; choose another --out, add --resume to "
                                 "continue that run, or --force to replace its run files")
        if not (out / RECORD_FILE).is_file():
            raise RunFolderError(f"{out} holds files but no {RECORD_FILE}, so it is not a run folder; "
                                 "--force only replaces runs: choose another --out")
        checkpoint = out / CHECKPOINT_DIR
        for stale in list(checkpoint.glob("*.keras")) + list(checkpoint.glob("*.weights.h5")) + [checkpoint / CHECKPOINT_STATE]:
            stale.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


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


def train_run(out, settings=None, force=False, resume=False, progress="bar", log=print):
    """Train a VAE into the run folder ``out`` (weights, ``run.json``, figures); return (vae, record).

    A folder that already holds files is only replaced with ``force``; ``resume`` continues the
    run saved there from its last completed epoch, with the settings stored in its ``run.json``
    (``settings.epochs`` may extend it).
    """
    from vae_helpers.evaluation import knn_latent_accuracy

    out = Path(out)
    if resume:
        saved = read_record(out)
        extra = {"epochs": settings.epochs} if settings else {}
        settings = TrainSettings(**{**saved["settings"], **extra})
    settings = (settings or TrainSettings()).validate()
    _prepare_folder(out, force, resume)
    set_seed(settings.seed)
    (x_train, y_train), (x_test, y_test) = load_mnist(settings.data)
    x_fit, x_val = split_validation(x_train, settings.validation_fraction, settings.seed)
    sizes = {"train": len(x_fit), "validation": 0 if x_val is None else len(x_val), "test": len(x_test)}
    if resume:
        if saved.get("data") and saved["data"] != sizes:
            raise RunFolderError(f"{out}: this run was trained on {saved['data']} images but --data "
                                 f"{settings.data!r} now gives {sizes}; resume with the same data")
        vae, state = load_checkpoint(out / CHECKPOINT_DIR)
        log(f"Resuming {out} after epoch {state.epochs_done} of {settings.epochs}.")
    else:
        vae = build_vae(settings.latent_dim, settings.loss, seed=settings.seed, compile=False)
        vae.compile(keras.optimizers.Adam(settings.learning_rate))
        state = None
    record = {"settings": dataclasses.asdict(settings), "status": "running", "versions": versions(), "data": sizes}
    write_json(out / RECORD_FILE, record)
    started = time.perf_counter()
    state = train_vae(vae, x_fit, settings.epochs, settings.batch_size, x_val=x_val,
                      seed=settings.seed, progress=progress, checkpoint_dir=out / CHECKPOINT_DIR, state=state)
    _atomic(out / WEIGHTS_FILE, vae.save_weights)
    record.update({
        "status": "finished",
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_val_elbo": state.best_val_elbo,
        "test_elbo": elbo(vae, x_test, n_samples=8, seed=settings.seed),
        "knn_accuracy": knn_latent_accuracy(vae, x_train, y_train, x_test, y_test),
        "train_seconds_this_session": time.perf_counter() - started,
    })
    write_json(out / RECORD_FILE, record)  # the scores are safe before any figure is drawn
    record["files"] = [WEIGHTS_FILE, RECORD_FILE] + [p.name for p in save_figures(vae, out, x_test, y_test, state.history)]
    write_json(out / RECORD_FILE, record)
    return vae, record


def load_run(out):
    """The trained VAE saved in a run folder by ``train_run`` (best weights), ready to use."""
    settings = read_record(out)["settings"]
    vae = build_vae(settings["latent_dim"], settings["loss"], seed=settings["seed"])
    return load_vae_weights(vae, Path(out) / WEIGHTS_FILE)
