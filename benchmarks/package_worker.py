"""Benchmark worker for the package side (Keras 3 through ``vae_helpers``), run in a subprocess.

``run_benchmarks.py`` starts it like the book's worker, so both sides pay the same process
start-up and neither inherits the other's thread pools or memory. It prints one JSON object on its
last stdout line.

Tasks (``--task``):

* ``throughput``: images/s of ``training.train_vae`` one-epoch calls at several batch sizes, all
  models warmed up first, then timed round-robin (ABAB) so load changes hit every batch size alike.
* ``profile``: CPU seconds of one training step through ``fit`` vs Keras' compiled step alone vs
  the forward pass and each layer, to tell input pipeline and Python overhead from kernels.
* ``quality``: train with ``train_vae`` in slices of an epoch and score the test ELBO after each
  slice (scoring is not timed), so the time to reach a target ELBO is known to a fraction of an epoch.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

import vae_helpers  # noqa: F401  (quiet TensorFlow first)
from vae_helpers import keras
from vae_helpers.config import set_seed
from vae_helpers.evaluation import elbo
from vae_helpers.losses import VAELoss, kl_divergence, reconstruction_loss
from vae_helpers.models import VAE, build_decoder, build_encoder, build_vae
from vae_helpers.training import TrainingState, train_vae


def load_array(path):
    return np.ascontiguousarray(np.load(path), dtype=np.float32)


class WarmupLoss(VAELoss):
    """Prototype of KL warm-up: the ELBO with its KL term scaled by a ``beta`` variable.

    Benchmark-only (the package has no such option yet): ``beta`` ramps from near 0 to 1 over the
    first epochs so the KL term cannot pull every code onto the prior before the decoder has
    learned anything (the "posterior collapse" plateau near -207 nats on the sample).
    """

    def __init__(self, **kwargs):
        super().__init__("elbo", **kwargs)
        self.beta = keras.Variable(1.0, trainable=False, name="beta")

    def call(self, x, x_decoded, z_mean, z_log_var):
        reconstruction, kl = reconstruction_loss(x, x_decoded), kl_divergence(z_mean, z_log_var)
        self.add_loss(keras.ops.mean(reconstruction + self.beta * kl))
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return x_decoded


def make_vae(seed, learning_rate=None, jit_compile="auto", optimizer="adam", loss="elbo", warmup=False):
    """The package's VAE; default optimizer unless another optimizer or learning rate is given."""
    if warmup:
        vae = VAE(build_encoder(), build_decoder(), loss="elbo", seed=seed, name="vae")
        vae.vae_loss = WarmupLoss(name="vae_loss")
        vae.build((None, *vae.image_shape))
    else:
        vae = build_vae(loss=loss, seed=seed, compile=False)
    if optimizer == "adam" and learning_rate is None:
        choice = None  # the package default (Adam, 1e-3)
    else:
        cls = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[optimizer]
        choice = cls(learning_rate or 1e-3)
    vae.compile(optimizer=choice, jit_compile=jit_compile)
    return vae


def one_epoch_seconds(vae, x, batch_size, seed=0):
    """(wall s, CPU s) of one ``train_vae`` epoch over ``x`` (the package's default training path)."""
    started, cpu = time.perf_counter(), time.process_time()
    train_vae(vae, x, epochs=1, batch_size=batch_size, seed=seed, progress=None, state=TrainingState())
    return time.perf_counter() - started, time.process_time() - cpu


def task_throughput(args):
    """Round-robin timed epochs over the batch sizes, after one warm-up epoch each."""
    x = load_array(args.data)[:args.images]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    models = {}
    for bs in sizes:
        models[bs] = make_vae(seed=0, jit_compile=args.jit_compile)
        one_epoch_seconds(models[bs], x[:max(20 * bs, 320)], bs)
    runs = []
    for repeat in range(args.repeats):
        order = sizes if repeat % 2 == 0 else sizes[::-1]
        for bs in order:
            seconds, cpu_seconds = one_epoch_seconds(models[bs], x, bs, seed=repeat)
            runs.append({"batch_size": bs, "seconds": seconds, "cpu_seconds": cpu_seconds, "images": len(x),
                         "images_per_s": len(x) / seconds, "images_per_cpu_s": len(x) / cpu_seconds,
                         "loadavg_1m": os.getloadavg()[0]})
    return {"runs": runs}


def task_quality(args):
    """Train up to ``args.epochs`` epochs in ``args.slices`` slices each; score the test ELBO per slice.

    Each slice is one ``train_vae`` call on the next part of that epoch's shuffled images, with its
    own noise seed. Training seconds and scoring seconds are kept apart.
    """
    set_seed(args.seed)
    x, x_test = load_array(args.data), load_array(args.test)
    vae = make_vae(args.seed, args.learning_rate, optimizer=args.optimizer, loss=args.loss,
                   warmup=args.kl_warmup > 0)
    curve, trained, cpu_trained = [], 0.0, 0.0
    target = args.target
    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, 1000 + epoch]).permutation(len(x))
        for part, chunk in enumerate(np.array_split(order, args.slices)):
            if args.kl_warmup > 0:
                vae.vae_loss.beta.assign(min(1.0, (epoch * args.slices + part + 1) / (args.slices * args.kl_warmup)))
            seconds, cpu_seconds = one_epoch_seconds(vae, x[chunk], args.batch_size,
                                                     seed=args.seed * 1000 + epoch * args.slices + part)
            trained, cpu_trained = trained + seconds, cpu_trained + cpu_seconds
            score = elbo(vae, x_test, n_samples=args.n_samples, seed=0)
            curve.append({"epoch": epoch + (part + 1) / args.slices, "train_seconds": trained,
                          "train_cpu_seconds": cpu_trained,
                          "test_elbo": score, "loadavg_1m": os.getloadavg()[0]})
            print(f"package bs{args.batch_size} lr{args.learning_rate} {args.optimizer} {args.loss} "
                  f"warmup{args.kl_warmup}: epoch {curve[-1]['epoch']:.2f} "
                  f"{trained:.1f} s test ELBO {score:.2f}", file=sys.stderr, flush=True)
        if target is not None and args.stop_after_target and max(c["test_elbo"] for c in curve) >= target:
            break
    return {"curve": curve}


def cpu_per_call(fn, calls):
    """Median CPU seconds of ``fn()`` over ``calls`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(calls):
        cpu = time.process_time()
        fn()
        times.append(time.process_time() - cpu)
    return float(np.median(times))


def task_profile(args):
    """Where a batch-``args.batch_size`` training step spends CPU time: fit loop vs compiled step vs layers.

    * ``fit``: ``train_vae`` over ``args.images`` images (numpy input, Keras' data adapter, callbacks);
    * ``step``: Keras' compiled train function fed from an in-memory tf.data iterator (no adapter);
    * ``forward``: the VAE's forward pass alone; ``layers``: each layer's forward pass on its own.
    """
    from vae_helpers import tf

    bs = args.batch_size
    x = load_array(args.data)[:args.images]
    vae = make_vae(seed=0)
    one_epoch_seconds(vae, x[:20 * bs], bs)
    fit_cpu = []
    for repeat in range(args.repeats):
        fit_cpu.append(one_epoch_seconds(vae, x, bs, seed=repeat)[1] / (len(x) / bs))
    batch = tf.constant(x[:bs])
    iterator = iter(tf.data.Dataset.from_tensors((batch,)).repeat())
    train_function = vae.make_train_function()
    step = cpu_per_call(lambda: train_function(iterator), 50)
    forward_fn = tf.function(lambda b: vae(b, training=False))
    forward = cpu_per_call(lambda: forward_fn(batch), 50)
    layer_times = {}
    for model in (vae.encoder, vae.decoder):
        for layer in model.layers[1:]:
            inputs = tf.constant(np.random.default_rng(0).random((bs, *layer.input.shape[1:]), dtype=np.float32))
            fn = tf.function(lambda t, layer=layer: layer(t))
            layer_times[f"{model.name}/{layer.name}"] = cpu_per_call(lambda: fn(inputs), 100)
    return {"batch_size": bs, "fit_cpu_s_per_step": float(np.median(fit_cpu)), "step_cpu_s": step,
            "forward_cpu_s": forward, "layer_forward_cpu_s": layer_times, "loadavg_1m": os.getloadavg()[0]}


TASKS = {"throughput": task_throughput, "quality": task_quality, "profile": task_profile}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--data", help=".npy file of float32 training images")
    parser.add_argument("--test", help=".npy file of float32 test images")
    parser.add_argument("--images", type=int, default=6400)
    parser.add_argument("--batch-sizes", default="16,32,64,128")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--optimizer", choices=["adam", "rmsprop"], default="adam")
    parser.add_argument("--loss", choices=["elbo", "book"], default="elbo")
    parser.add_argument("--kl-warmup", type=float, default=0.0, help="epochs of linear KL warm-up (0: none)")
    parser.add_argument("--jit-compile", default="auto", type=lambda s: {"true": True, "false": False}.get(s, s))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--slices", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--stop-after-target", action="store_true")
    args = parser.parse_args(argv)
    result = {"task": args.task, **TASKS[args.task](args)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
