"""The package side of the benchmarks (Keras 3 through ``vae_helpers``), run in a subprocess.

``run_benchmarks.py`` starts it as it starts the book's worker, so both sides pay the same process
start-up and neither inherits the other's thread pools. It prints one JSON object on its last line.

* ``--task throughput``: seconds of ``training.train_vae`` epochs at several batch sizes (with and
  without XLA, in float32 or bfloat16: ``--batch-sizes 16,16x,16b``), every model warmed up first, then timed round-robin so a change in load hits every batch size alike.
* ``--task quality``: ``train_vae`` with a callback that scores the test ELBO every fraction of an
  epoch (scoring time is kept out of the training clock) and stops once a target is reached.
  Recipes: batch size, learning rate, a cosine schedule, learning-rate and KL warm-up (all options
  of the package), or a named CLI recipe (``--recipe fast``). Each score also logs what explains a
  curve: the KL of the batches trained since the epoch began, the active latent units (those whose
  posterior mean varies over the test digits by more than 0.01, Burda et al. 2016) and the encoder's
  dead ReLUs (hidden units at 0 for every test digit).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from vae_helpers import keras, set_seed
from vae_helpers.config import PRECISIONS, TrainSettings, recipe_settings
from vae_helpers.evaluation import elbo
from vae_helpers.latent import encode
from vae_helpers.models import build_vae
from vae_helpers.training import learning_rate, train_vae
from vae_helpers.optimizers import Adam


def recipe(args):
    """The run's TrainSettings: a named recipe's (this CPU's choice of precision and XLA, unless ``--precision``
    says otherwise: float32 then comes with XLA, as on a CPU without AMX), or the flags'."""
    if args.recipe:
        chosen = recipe_settings(args.recipe)
        if args.precision:
            chosen.update(precision=args.precision, jit_compile=args.precision == "float32")
        return TrainSettings(**chosen).validate()
    return TrainSettings(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                         lr_schedule=args.schedule, lr_warmup=args.lr_warmup, kl_warmup=args.kl_warmup,
                         precision=args.precision or "float32").validate()


def make_vae(settings, seed, n_train):
    """The package's VAE with the recipe's optimizer (Adam at its learning rate or schedule) and precision."""
    vae = build_vae(seed=seed, compile=False, precision=settings.precision)
    vae.compile(Adam(learning_rate(settings, n_train)),
                jit_compile=settings.jit_compile and keras.backend.backend() == "tensorflow")
    return vae


def diagnose(vae, x_test):
    """Active latent units and dead ReLUs of the encoder's hidden Dense layer, over ``x_test``."""
    means = encode(vae, x_test)
    hidden_layer = next(layer for layer in vae.encoder.layers if isinstance(layer, keras.layers.Dense))
    model = keras.Model(vae.encoder.input, hidden_layer.output)
    hidden = np.concatenate([model(x_test[i:i + 1000]).numpy() for i in range(0, len(x_test), 1000)])
    return {"active_units": int(np.sum(np.var(means, axis=0) > 0.01)),
            "dead_relus": int(np.sum(np.all(hidden <= 0, axis=0))), "hidden_units": int(hidden.shape[1])}


class Clock:
    """Wall and CPU seconds of training, with pauses (scoring) left out."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.resume()

    def resume(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def pause(self):
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


class Scorer(keras.callbacks.Callback):
    """Scores the test ELBO every ``every`` batches (off the clock) and stops training at the target.

    It is called after each group of steps (``grouped_steps_ok``), so ``train_vae`` keeps its
    steps per execution: a score falls on the first group that ends at or past its batch.
    """

    grouped_steps_ok = True

    def __init__(self, x_test, every, steps_per_epoch, args):
        super().__init__()
        self.x_test, self.every, self.steps, self.args = x_test, every, steps_per_epoch, args
        self.curve, self.clock, self.epoch, self.next = [], Clock(), 0, every

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        done = self.epoch * self.steps + min(batch + 1, self.steps)
        if done < self.next:
            return
        self.next = (done // self.every + 1) * self.every
        self.clock.pause()
        score = elbo(self.model, self.x_test, n_samples=self.args.n_samples, seed=0)
        point = {"epoch": done / self.steps, "train_seconds": self.clock.wall, "train_cpu_seconds": self.clock.cpu,
                 "test_elbo": score, "loadavg_1m": os.getloadavg()[0], "train_kl": float(logs["kl_loss"]),
                 "train_reconstruction": float(logs["reconstruction_loss"]),
                 **diagnose(self.model, self.x_test)}
        self.curve.append(point)
        print(f"{self.args.name}: epoch {point['epoch']:.2f}, {self.clock.wall:.0f} s, {self.clock.cpu:.0f} CPU-s, "
              f"test ELBO {score:.2f}, KL {point['train_kl']:.2f}, active units {point['active_units']}, "
              f"dead ReLUs {point['dead_relus']}/{point['hidden_units']}", file=sys.stderr, flush=True)
        if self.args.target is not None and score >= self.args.target:
            self.model.stop_training = True
        self.clock.resume()


def task_quality(args, x, x_test):
    set_seed(args.seed)
    settings = recipe(args)
    steps = -(-len(x) // settings.batch_size)
    vae = make_vae(settings, args.seed, len(x))
    scorer = Scorer(x_test, max(1, steps // args.scores_per_epoch), steps, args)
    train_vae(vae, x, epochs=settings.epochs, batch_size=settings.batch_size, seed=args.seed, progress=None,
              kl_warmup=settings.kl_warmup, callbacks=[scorer])
    return {"curve": scorer.curve, "settings": settings.__dict__, "steps_per_execution": vae.steps_per_execution}


def variant(text):
    """(batch size, XLA, precision) of a variant written "16", "16x" (the step compiled by XLA) or "16b" (bfloat16)."""
    size = text.rstrip("xb")
    return int(size), "x" in text[len(size):], "bfloat16" if "b" in text[len(size):] else "float32"


def task_throughput(args, x, x_test):
    """Epochs of ``train_vae`` per variant (batch size, XLA, precision: see ``variant``)."""
    variants = [variant(text) for text in args.batch_sizes.split(",")]
    models = {}
    for size, xla, precision in variants:  # warm-up: build, trace and run each model once (steps per execution as timed)
        models[size, xla, precision] = vae = build_vae(seed=0, compile=False, precision=precision)
        vae.compile(Adam(), jit_compile=xla)
        train_vae(vae, x[:64 * size], epochs=1, batch_size=size, progress=None)
    runs = []
    for repeat in range(args.repeats):
        for size, xla, precision in variants if repeat % 2 == 0 else variants[::-1]:
            clock = Clock()
            train_vae(models[size, xla, precision], x, epochs=1, batch_size=size, seed=repeat, progress=None)
            clock.pause()
            runs.append({"batch_size": size, "jit_compile": xla, "precision": precision,
                         "seconds": clock.wall, "cpu_seconds": clock.cpu,
                         "images": len(x), "images_per_s": len(x) / clock.wall,
                         "images_per_cpu_s": len(x) / clock.cpu, "loadavg_1m": os.getloadavg()[0]})
    return {"runs": runs}


TASKS = {"throughput": task_throughput, "quality": task_quality}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--data", required=True, help=".npy file of float32 training images")
    parser.add_argument("--test", help=".npy file of float32 test images")
    parser.add_argument("--images", type=int, default=None, help="use the first N training images")
    parser.add_argument("--name", default="package")
    parser.add_argument("--batch-sizes", default="16,32,64,128",
                        help='comma-separated; "16x" is batch 16 with the step compiled by XLA (jit_compile)')
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--kl-warmup", type=float, default=0.0, help="epochs of linear KL warm-up (0: none)")
    parser.add_argument("--lr-warmup", type=float, default=0.0, help="epochs of linear learning-rate warm-up (0: none)")
    parser.add_argument("--recipe", default=None, help="a named recipe of the CLI (its settings replace the flags')")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="of the network's hidden layers (default: float32, or the recipe's choice for this CPU)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--scores-per-epoch", type=int, default=2)
    parser.add_argument("--n-samples", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=None, help="stop once the test ELBO reaches this")
    args = parser.parse_args(argv)
    x = np.load(args.data, mmap_mode="r")[:args.images]
    x_test = np.load(args.test) if args.test else None
    print(json.dumps({"task": args.task, **TASKS[args.task](args, np.ascontiguousarray(x), x_test)}))


if __name__ == "__main__":
    main()
