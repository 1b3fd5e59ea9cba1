"""The package side of the benchmarks (Keras 3 through ``vae_helpers``), run in a subprocess.

``run_benchmarks.py`` starts it as it starts the book's worker, so both sides pay the same process
start-up and neither inherits the other's thread pools. It prints one JSON object on its last line.

* ``--task throughput``: seconds of ``training.train_vae`` epochs at several batch sizes, every
  model warmed up first, then timed round-robin so a change in load hits every batch size alike.
* ``--task quality``: ``train_vae`` with a callback that scores the test ELBO every fraction of an
  epoch (scoring time is kept out of the training clock) and stops once a target is reached.
  Recipes: batch size, learning rate, a cosine schedule, and KL warm-up (all options of the package).
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from vae_helpers import keras, set_seed
from vae_helpers.config import TrainSettings
from vae_helpers.evaluation import elbo
from vae_helpers.models import build_vae
from vae_helpers.training import learning_rate, train_vae


def make_vae(args, n_train):
    """The package's VAE with the recipe's optimizer: Adam at a constant or cosine-decayed learning rate."""
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                             lr_schedule=args.schedule)
    vae = build_vae(seed=args.seed, compile=False)
    vae.compile(keras.optimizers.Adam(learning_rate(settings, n_train)))
    return vae


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
    """Scores the test ELBO every ``every`` batches (off the clock) and stops training at the target."""

    def __init__(self, x_test, every, steps_per_epoch, args):
        super().__init__()
        self.x_test, self.every, self.steps, self.args = x_test, every, steps_per_epoch, args
        self.curve, self.clock, self.done = [], Clock(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        if self.done % self.every:
            return
        self.clock.pause()
        score = elbo(self.model, self.x_test, n_samples=self.args.n_samples, seed=0)
        self.curve.append({"epoch": self.done / self.steps, "train_seconds": self.clock.wall,
                           "train_cpu_seconds": self.clock.cpu, "test_elbo": score, "loadavg_1m": os.getloadavg()[0]})
        print(f"{self.args.name}: epoch {self.curve[-1]['epoch']:.2f}, {self.clock.wall:.0f} s, test ELBO {score:.2f}",
              file=sys.stderr, flush=True)
        if self.args.target is not None and score >= self.args.target:
            self.model.stop_training = True
        self.clock.resume()


def task_quality(args, x, x_test):
    set_seed(args.seed)
    steps = -(-len(x) // args.batch_size)
    vae = make_vae(args, len(x))
    scorer = Scorer(x_test, max(1, steps // args.scores_per_epoch), steps, args)
    train_vae(vae, x, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, progress=None,
              kl_warmup=args.kl_warmup, callbacks=[scorer])
    return {"curve": scorer.curve}


def task_throughput(args, x, x_test):
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    models = {}
    for size in sizes:  # warm-up: build, trace and run each model once
        models[size] = build_vae(seed=0)
        train_vae(models[size], x[:20 * size], epochs=1, batch_size=size, progress=None)
    runs = []
    for repeat in range(args.repeats):
        for size in sizes if repeat % 2 == 0 else sizes[::-1]:
            clock = Clock()
            train_vae(models[size], x, epochs=1, batch_size=size, seed=repeat, progress=None)
            clock.pause()
            runs.append({"batch_size": size, "seconds": clock.wall, "cpu_seconds": clock.cpu, "images": len(x),
                         "images_per_s": len(x) / clock.wall, "images_per_cpu_s": len(x) / clock.cpu,
                         "loadavg_1m": os.getloadavg()[0]})
    return {"runs": runs}


TASKS = {"throughput": task_throughput, "quality": task_quality}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--data", required=True, help=".npy file of float32 training images")
    parser.add_argument("--test", help=".npy file of float32 test images")
    parser.add_argument("--images", type=int, default=None, help="use the first N training images")
    parser.add_argument("--name", default="package")
    parser.add_argument("--batch-sizes", default="16,32,64,128")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--kl-warmup", type=float, default=0.0, help="epochs of linear KL warm-up (0: none)")
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
