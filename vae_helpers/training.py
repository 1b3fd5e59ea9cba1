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

WEIGHTS_FILE = "weights.weights.h5"
RECORD_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_MODEL = "last.keras"
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
    every epoch; pass the state from ``load_checkpoint`` to continue an interrupted run.
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
    for epoch in range(state.epochs_done, epochs):
        started = time.perf_counter()
        reseed_sampling(vae, seed, epoch)
        callbacks = [_BatchBar(f"epoch {epoch + 1}/{epochs}", steps)] if progress == "bar" else []
        fit = vae.fit(x_train[epoch_order(len(x_train), seed, epoch)], batch_size=batch_size,
                      epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
        record = {key: float(values[-1]) for key, values in fit.history.items()}
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


def save_checkpoint(vae, folder, state):
    """Save model + optimizer (``last.keras``), the best weights and the state, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / CHECKPOINT_MODEL, vae.save)
    if state.best_epoch == state.epochs_done:
        _atomic(folder / WEIGHTS_FILE, vae.save_weights)
    write_json(folder / CHECKPOINT_STATE, state.to_json())


def load_checkpoint(folder):
    """The VAE (with its optimizer state) and the ``TrainingState`` saved by ``save_checkpoint``."""
    folder = Path(folder)
    state_path, model_path = folder / CHECKPOINT_STATE, folder / CHECKPOINT_MODEL
    if not state_path.is_file() or not model_path.is_file():
        raise RunFolderError(f"{folder}: no checkpoint to resume from "
                             f"(need {CHECKPOINT_MODEL} and {CHECKPOINT_STATE})")
    try:
        saved = json.loads(state_path.read_text())
        vae = keras.models.load_model(model_path)
    except Exception as err:  # a damaged zip, HDF5 or JSON file surfaces with many types
        raise RunFolderError(f"{folder}: the checkpoint cannot be read ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200]}); start a new run with --force") from err
    state = TrainingState(**saved)
    if state.best_epoch is not None:
        last_weights = vae.get_weights()
        vae.load_weights(folder / WEIGHTS_FILE)
        state.best_weights = vae.get_weights()
        vae.set_weights(last_weights)
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
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1


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
    """Make sure ``out`` may be written: new, or resumed, or explicitly replaced with ``force``."""
    out = Path(out)
    if resume:
        if not (out / RECORD_FILE).is_file():
            raise RunFolderError(f"{out}: no {RECORD_FILE} here, so there is no run to resume")
        return
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise RunFolderError(f"{out} already holds files; choose another --out, add --resume to "
                                 "continue that run, or --force to replace its run files")
        import shutil

        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def save_figures(vae, out, x_test, y_test, history):
    """Write manifold.png, latent.png and history.png into ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vae_helpers.latent import encode
    from vae_helpers.plotting import plot_history, plot_latent_scatter, plot_manifold

    figures = {"manifold.png": plot_manifold(vae.decoder),
               "latent.png": plot_latent_scatter(encode(vae, x_test), y_test),
               "history.png": plot_history(history)}
    paths = []
    for name, fig in figures.items():
        _atomic(Path(out) / name, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
        plt.close(fig)
        paths.append(Path(out) / name)
    return paths


def train_run(out, settings=None, force=False, resume=False, progress="bar", log=print):
    """Train a VAE into the run folder ``out`` (weights, ``run.json``, figures); return (vae, record).

    A folder that already holds files is only replaced with ``force``; ``resume`` continues the
    run saved there from its last completed epoch, with the settings stored in its ``run.json``.
    """
    from vae_helpers.evaluation import knn_latent_accuracy
    from vae_helpers.models import build_vae

    out = Path(out)
    _prepare_folder(out, force, resume)
    if resume:
        saved = json.loads((out / RECORD_FILE).read_text())
        settings = TrainSettings(**{**saved["settings"], **({"epochs": settings.epochs} if settings else {})})
    settings = settings or TrainSettings()
    set_seed(settings.seed)
    (x_train, y_train), (x_test, y_test) = load_mnist(settings.data)
    x_fit, x_val = split_validation(x_train, settings.validation_fraction, settings.seed)
    if resume:
        vae, state = load_checkpoint(out / CHECKPOINT_DIR)
        log(f"Resuming {out} after epoch {state.epochs_done} of {settings.epochs}.")
    else:
        vae = build_vae(settings.latent_dim, settings.loss, seed=settings.seed, compile=False)
        vae.compile(keras.optimizers.Adam(settings.learning_rate))
        state = None
    record = {"settings": dataclasses.asdict(settings), "status": "running", "versions": versions(),
              "data": {"train": len(x_fit), "validation": 0 if x_val is None else len(x_val),
                       "test": len(x_test)}}
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
        "files": [WEIGHTS_FILE, RECORD_FILE] + [p.name for p in save_figures(vae, out, x_test, y_test, state.history)],
    })
    write_json(out / RECORD_FILE, record)
    return vae, record


def load_run(out):
    """The trained VAE saved in a run folder by ``train_run`` (best weights), ready to use."""
    from vae_helpers.models import build_vae, load_vae_weights

    out = Path(out)
    if not (out / RECORD_FILE).is_file():
        raise RunFolderError(f"{out}: no {RECORD_FILE}; is this a folder written by 'python -m vae_helpers train'?")
    settings = json.loads((out / RECORD_FILE).read_text())["settings"]
    vae = build_vae(settings["latent_dim"], settings["loss"], seed=settings["seed"])
    return load_vae_weights(vae, out / WEIGHTS_FILE)
