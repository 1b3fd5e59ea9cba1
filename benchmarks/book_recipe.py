"""The 1st edition's VAE recipe on legacy tf.keras (tf_keras 2.x) in graph mode, as a benchmark worker.

It rebuilds the chapter's network, objective and training settings (batch 16, RMSprop with its
default learning rate, the ``add_loss`` layer that closes over ``z_mean``/``z_log_var``) so the
package can be compared against the recipe it replaces. It never imports ``vae_helpers``: Keras 3
and graph-mode tf_keras do not share a process well, so ``run_benchmarks.py`` starts this file in a
subprocess with ``TF_USE_LEGACY_KERAS=1`` and reads one JSON object from its last stdout line.

What had to change to run the 2017 code on TensorFlow 2.21 (see BENCHMARKS.md):

* ``tf.compat.v1.disable_eager_execution()``: the loss layer reads ``z_mean`` and ``z_log_var``
  from the enclosing scope instead of receiving them as inputs. In TF2's eager functional API those
  are symbolic KerasTensors that cannot be used inside another layer's ``call``; in a v1 graph they
  are ordinary graph tensors, exactly as under Keras 2.0 on TensorFlow 1.
* Nothing else: ``add_loss(loss, inputs=inputs)`` is accepted by tf_keras 2.21, which drops the
  ``inputs`` argument, so the book's math (mean BCE + 5e-4-weighted KL mean, ``exp(z_log_var)``
  sampling) is untouched.

Tasks (``--task``): ``throughput`` (timed ``fit`` calls after a warm-up), ``train`` (epochs with
per-epoch fit seconds and weights saved for scoring by the parent) and ``manifold`` (the book's
15 x 15 loop of per-point ``decoder.predict`` calls).
"""

import argparse
import json
import os
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from book_manifold import book_manifold_loop  # noqa: E402  (same folder: this file runs as a script)

tf.get_logger().setLevel("ERROR")
tf.compat.v1.disable_eager_execution()
keras = tf.keras
K = keras.backend
layers = keras.layers
if not keras.__name__.startswith("tf_keras"):
    sys.exit("book_recipe.py needs tf_keras (pip install -r requirements-bench.txt) and TF_USE_LEGACY_KERAS=1")

IMAGE_SHAPE = (28, 28, 1)
BOOK_BATCH_SIZE = 16
BOOK_KL_WEIGHT = 5e-4


class BookNetwork:
    """The chapter's encoder, sampler, decoder and loss layer wired into one trainable model."""

    def __init__(self, latent_dim=2):
        images = keras.Input(shape=IMAGE_SHAPE)
        specs = ((32, 1), (64, 2), (64, 1), (64, 1))  # (filters, stride) of the 3x3 ReLU convolutions
        self.encoder_layers = [layers.Conv2D(f, kernel_size=3, strides=s, activation="relu", padding="same")
                               for f, s in specs]
        h = images
        for layer in self.encoder_layers:
            h = layer(h)
        feature_shape = tuple(h.shape[1:])
        hidden = layers.Dense(32, activation="relu")
        mean_head, log_var_head = layers.Dense(latent_dim), layers.Dense(latent_dim)
        h = hidden(layers.Flatten()(h))
        z_mean, z_log_var = mean_head(h), log_var_head(h)
        self.encoder_layers += [hidden, mean_head, log_var_head]

        def book_sampler(pair):  # the 1st edition's draw: the standard deviation is exp(z_log_var)
            centre, spread = pair
            return centre + K.exp(spread) * K.random_normal(K.shape(centre))

        z = layers.Lambda(book_sampler)([z_mean, z_log_var])
        code = layers.Input((latent_dim,))
        g = layers.Reshape(feature_shape)(layers.Dense(int(np.prod(feature_shape)), activation="relu")(code))
        g = layers.Conv2DTranspose(32, kernel_size=3, strides=2, activation="relu", padding="same")(g)
        self.decoder = keras.Model(code, layers.Conv2D(1, kernel_size=3, activation="sigmoid", padding="same")(g))

        class BookLossLayer(layers.Layer):
            """Adds the book's objective with add_loss; the posterior tensors come from the closure."""

            def call(self, inputs):
                pixels_in, pixels_out = K.batch_flatten(inputs[0]), K.batch_flatten(inputs[1])
                cross_entropy = keras.metrics.binary_crossentropy(pixels_in, pixels_out)
                prior_term = K.mean(1.0 + z_log_var - K.exp(z_log_var) - z_mean ** 2, axis=-1)
                self.add_loss(K.mean(cross_entropy - BOOK_KL_WEIGHT * prior_term), inputs=inputs)
                return inputs[0]

        out = BookLossLayer()([images, self.decoder(z)])
        self.model = keras.Model(images, out)
        self.model.compile(optimizer="rmsprop", loss=None)

    def weights(self):
        """Encoder weights (layer order of vae_helpers.models.build_encoder) and decoder weights."""
        encoder = [w for layer in self.encoder_layers for w in layer.get_weights()]
        return encoder, self.decoder.get_weights()

    def fit_epoch(self, x, batch_size=BOOK_BATCH_SIZE):
        """One epoch exactly as the book calls fit (shuffle=True); returns (wall s, CPU s, loss)."""
        started, cpu = time.perf_counter(), time.process_time()
        history = self.model.fit(x=x, y=None, shuffle=True, epochs=1, batch_size=batch_size, verbose=0)
        return time.perf_counter() - started, time.process_time() - cpu, float(history.history["loss"][-1])


def seed_everything(seed):
    np.random.seed(seed)
    tf.compat.v1.set_random_seed(seed)


def task_throughput(args, x):
    """Images per second of whole fit calls on ``args.images`` images, after one warm-up call."""
    net = BookNetwork()
    x = x[:args.images]
    net.fit_epoch(x[:max(args.batch_size * 20, 320)], args.batch_size)  # builds the graph and session
    runs = []
    for _ in range(args.repeats):
        seconds, cpu_seconds, _ = net.fit_epoch(x, args.batch_size)
        runs.append({"seconds": seconds, "cpu_seconds": cpu_seconds, "images": len(x),
                     "images_per_s": len(x) / seconds, "images_per_cpu_s": len(x) / cpu_seconds,
                     "loadavg_1m": os.getloadavg()[0]})
    return {"runs": runs}


def task_train(args, x):
    """Train ``args.epochs`` epochs; save weights after each one for the parent to score."""
    seed_everything(args.seed)
    net = BookNetwork()
    epochs = []
    for epoch in range(1, args.epochs + 1):
        seconds, cpu_seconds, loss = net.fit_epoch(x, args.batch_size)
        encoder, decoder = net.weights()
        path = os.path.join(args.out, f"book_epoch{epoch:02d}.npz")
        np.savez(path, **{f"e{i}": w for i, w in enumerate(encoder)}, **{f"d{i}": w for i, w in enumerate(decoder)})
        epochs.append({"epoch": epoch, "seconds": seconds, "cpu_seconds": cpu_seconds, "loss": loss, "weights": path,
                       "loadavg_1m": os.getloadavg()[0]})
        print(f"book epoch {epoch}: {seconds:.1f} s, loss {loss:.4f}", file=sys.stderr, flush=True)
    return {"epochs": epochs}


def book_manifold(decoder, n=15, digit_size=28, batch_size=BOOK_BATCH_SIZE):
    """The book's manifold loop (see book_manifold.py)."""
    return book_manifold_loop(decoder, n, digit_size, batch_size)


def task_manifold(args, x):
    """Seconds per n x n book loop (15 x 15 in the chapter), after a few warm-up predict calls."""
    net = BookNetwork()
    for _ in range(3):  # warm-up: the first predict calls build the predict function
        net.decoder.predict(np.zeros((BOOK_BATCH_SIZE, 2)), batch_size=BOOK_BATCH_SIZE, verbose=0)
    runs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        book_manifold(net.decoder, n=args.grid)
        runs.append({"seconds": time.perf_counter() - started, "loadavg_1m": os.getloadavg()[0]})
    return {"runs": runs}


def tf_keras_version():
    from importlib.metadata import version

    return version("tf_keras")


TASKS = {"throughput": task_throughput, "train": task_train, "manifold": task_manifold}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--data", help=".npy file of float32 training images (N, 28, 28, 1)")
    parser.add_argument("--images", type=int, default=6400)
    parser.add_argument("--batch-size", type=int, default=BOOK_BATCH_SIZE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", type=int, default=15, help="manifold size n (n x n points)")
    parser.add_argument("--out", default=".")
    args = parser.parse_args(argv)
    x = np.load(args.data, mmap_mode="r") if args.data else None
    if x is not None:
        x = np.ascontiguousarray(x, dtype=np.float32)
    result = {"task": args.task, "tf": tf.__version__, "tf_keras": tf_keras_version(), **TASKS[args.task](args, x)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
