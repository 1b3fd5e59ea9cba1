"""Where the milliseconds of a ``train_vae`` step go: the same training, peeled one layer at a time.

    python benchmarks/profile_step.py --mnist ../shared/data/mnist --images 16000 --batch-size 16

Each variant trains the same network on the same images for one epoch (after a warm-up epoch
that traces everything) and reports wall and CPU milliseconds per step, in one process,
round-robin over ``--repeats`` passes (reversed every other pass) so that a change in load hits
every variant alike. From the outside in:

* ``train_vae``: the package's training call, everything included (no validation set);
* ``fit_pydataset_hook``: ``vae.fit`` over the ``EpochBatches`` ``PyDataset`` with one callback
  that reads each batch's loss as a Python float (what the NaN check did before issue 16);
* ``fit_pydataset``: the same without the callback;
* ``fit_tfdata``: ``vae.fit`` over the package's ``EpochDataset`` (``tf.data``, uint8 codes), one step per call;
* ``fit_tfdata_spe``: the same with ``steps_per_execution=--spe``, as ``train_vae`` runs it;
* ``graph_step``, ``graph_gradients``, ``graph_forward``: ``tf.function`` loops of ``--spe`` steps
  on one batch in memory: forward, gradients and Adam's update; forward and gradients; forward alone.

The differences between neighbours are the costs of each layer. Prints a table and one JSON line
(``--json FILE`` also writes it). Run it under ``py-spy record --native`` to see the Python side.

``--count-ops`` prints instead how many operations the graph of one training step holds (batch 16,
float32) with Keras' Adam, the package's ``optimizers.Adam`` and plain SGD: most of a small step's
fixed cost is its operations' dispatch.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from vae_helpers import keras, set_seed, tf
from vae_helpers.data import load_mnist
from vae_helpers.models import build_vae
from vae_helpers.training import EpochBatches, EpochDataset, EpochOrder, train_vae
from vae_helpers.optimizers import Adam


class ReadLoss(keras.callbacks.Callback):
    """A per-batch hook that turns the loss into a Python float, as the pre-issue-16 NaN check did."""

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])


def graph_loop(vae, x, steps, mode):
    """A tf.function running ``steps`` steps on one batch: "forward", "gradients" or "step" (with Adam's update)."""
    batch = tf.constant(x)
    variables = vae.trainable_variables
    if mode == "step":
        vae.optimizer.build(variables)

    @tf.function
    def loop():
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            if mode == "forward":
                vae(batch, training=True)
                total += tf.add_n(vae.losses)
                continue
            with tf.GradientTape() as tape:
                vae(batch, training=True)
                loss = tf.add_n(vae.losses)
            grads = tape.gradient(loss, variables)
            if mode == "step":
                vae.optimizer.apply(grads, variables)
                total += loss
            else:
                total += loss + tf.add_n([tf.reduce_sum(g) for g in grads]) * 0.0
        return total

    return loop


def count_ops():
    """Operations in the graph of one train_step of the book's network, by optimizer."""
    import collections

    counts = {}
    for name, make in (("keras Adam", lambda: keras.optimizers.Adam()), ("optimizers.Adam", lambda: Adam()),
                       ("SGD", lambda: keras.optimizers.SGD(1e-3))):
        vae = build_vae(seed=0, compile=False)
        vae.compile(make())
        vae.optimizer.build(vae.trainable_variables)
        graph = tf.function(vae.train_step).get_concrete_function(tf.TensorSpec((16, 28, 28, 1))).graph
        kinds = collections.Counter(op.type for op in graph.get_operations())
        counts[name] = sum(kinds.values())
        print(f"{name:<16} {counts[name]:5d} operations; most common: {kinds.most_common(4)}")
    print(json.dumps(counts))
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default="auto")
    parser.add_argument("--images", type=int, default=16_000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--spe", type=int, default=32, help="steps per execution of fit_tfdata_spe and graph_*")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", default=None, help="comma-separated variants")
    parser.add_argument("--json", default=None, help="also write the JSON to this file")
    parser.add_argument("--count-ops", action="store_true", help="print the operations of one step's graph, and stop")
    args = parser.parse_args(argv)
    if args.count_ops:
        return count_ops()
    (x, _), _ = load_mnist(args.mnist)
    x = np.ascontiguousarray(x[:args.images])
    b, steps = args.batch_size, -(-len(x) // args.batch_size)

    def model(spe=1):
        set_seed(0)
        vae = build_vae(seed=0, compile=False)
        vae.compile(Adam(1e-3), steps_per_execution=spe)
        return vae

    def fit(vae, data, callbacks=(), steps_per_epoch=None):
        return lambda: vae.fit(data, epochs=1, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=0,
                               callbacks=list(callbacks))

    def fit_tfdata(spe):
        data = EpochDataset(x, b, 0)
        return fit(model(spe), data.dataset, [EpochOrder(data)]), steps

    def graph(mode):
        loop, loops = graph_loop(model(), x[:b], args.spe, mode), steps // args.spe
        return (lambda: [loop().numpy() for _ in range(loops)]), loops * args.spe

    # Factories: only the variants asked for are built, so that no other variant's data pipeline or
    # model shares the process with the ones measured.
    factories = {
        "train_vae": lambda: ((lambda v=model(): train_vae(v, x, epochs=1, batch_size=b, progress=None)), steps),
        "fit_pydataset_hook": lambda: (fit(model(), EpochBatches(x, b, 0), [ReadLoss()], steps), steps),
        "fit_pydataset": lambda: (fit(model(), EpochBatches(x, b, 0), (), steps), steps),
        "fit_tfdata": lambda: fit_tfdata(1),
        "fit_tfdata_spe": lambda: fit_tfdata(args.spe),
        **{f"graph_{mode}": (lambda mode=mode: graph(mode)) for mode in ("step", "gradients", "forward")},
    }
    names = args.only.split(",") if args.only else list(factories)
    variants = {name: factories[name]() for name in names}
    for name, (run, _) in variants.items():  # warm-up: trace and run once
        run()
        print(f"warmed up {name}", file=sys.stderr, flush=True)
    times = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name in variants if repeat % 2 == 0 else list(variants)[::-1]:
            run, n = variants[name]
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times[name].append({"ms_per_step": 1000 * wall / n, "cpu_ms_per_step": 1000 * cpu / n,
                                "load": os.getloadavg()[0]})
    print(f"batch {b}, {len(x)} images, {steps} steps, steps_per_execution {args.spe} in *_spe and graph_*")
    print(f"{'variant':<20} {'ms/step':>8} {'CPU ms/step':>12} {'load':>5}")
    for name, runs in times.items():
        wall = np.median([r["ms_per_step"] for r in runs])
        cpu = np.median([r["cpu_ms_per_step"] for r in runs])
        print(f"{name:<20} {wall:8.2f} {cpu:12.2f} {np.mean([r['load'] for r in runs]):5.1f}")
    result = {"batch_size": b, "images": len(x), "spe": args.spe, "times": times}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
