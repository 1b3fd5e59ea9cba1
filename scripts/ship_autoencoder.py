"""Train notebook 1's plain 2-D autoencoder exactly as the notebook does, and ship it for notebook 4.

    python scripts/ship_autoencoder.py --mnist ../shared/data/mnist    # writes resources/pretrained/ae_mnist_z2.*

Notebook 1 trains the autoencoder with seed 0 for one epoch of batch 64 on MNIST's first 30,000
training digits, scoring the test digits after the epoch. This script makes the same calls in the
same order, so on TensorFlow it gives the same weights. Notebook 4 loads them
(``pretrained.load_autoencoder``) to measure the autoencoder's holes beside the VAE's, instead of
spending a minute training it again. The record keeps the settings, the library versions, the
SHA-256 of the training digits and of the weights file, and the test loss the notebook prints.
"""

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import vae_helpers
from vae_helpers import data, models, pretrained, training
from vae_helpers.config import DEFAULT_LEARNING_RATE
from vae_helpers.files import write_weights_and_record

RESOURCES = Path(pretrained.__file__).parent / "resources" / "pretrained"
# Notebook 1's settings (its cells "vae_helpers.set_seed(0)", "x_train[:30_000]" and "AE_EPOCHS = 1").
SETTINGS = {"latent_dim": 2, "seed": 0, "train_digits": 30_000, "epochs": 1, "batch_size": 64,
            "learning_rate": DEFAULT_LEARNING_RATE}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default="keras", help="MNIST source: an IDX folder or 'keras' (default)")
    args = parser.parse_args(argv)
    if args.mnist != "keras" and not data.is_canonical_mnist(args.mnist):
        sys.exit(f"ship_autoencoder: {args.mnist} does not hold the canonical MNIST files")
    (x_train, _), (x_test, _) = data.load_mnist(args.mnist)
    x_train = x_train[:SETTINGS["train_digits"]]

    vae_helpers.set_seed(SETTINGS["seed"])
    autoencoder, _, _ = models.build_autoencoder(SETTINGS["latent_dim"])
    started = time.perf_counter()
    history = training.fit_autoencoder(autoencoder, x_train, epochs=SETTINGS["epochs"],
                                       batch_size=SETTINGS["batch_size"], x_val=x_test)
    seconds = time.perf_counter() - started

    # Saved from a fresh, untrained twin: the file holds the network's weights, not the optimizer's state.
    twin = models.build_autoencoder(SETTINGS["latent_dim"])[0]
    twin.set_weights(autoencoder.get_weights())
    with tempfile.TemporaryDirectory() as folder:
        twin.save_weights(Path(folder) / "ae.weights.h5")
        weights = (Path(folder) / "ae.weights.h5").read_bytes()
    record = {
        "model": "models.build_autoencoder(latent_dim=2): the book's encoder (z_mean head) and decoder, no sampling",
        "command": shlex.join(["python", "scripts/ship_autoencoder.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": SETTINGS,
        "data": f"the first {len(x_train):,} of MNIST's training digits",
        "data_sha256": data.data_digest(((x_train,),)),
        "versions": training.versions(),
        "train_seconds": round(seconds, 1),
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
        "test_loss": float(history.history["val_loss"][-1]),  # the loss fit scored on the test digits
        "scored_on": f"MNIST test set, {len(x_test):,} digits",
    }
    # Everything is computed: now the two files, both or neither (the record gets the weights' SHA-256).
    name = pretrained.SHIPPED_AUTOENCODER[SETTINGS["latent_dim"]]
    target = RESOURCES / f"{name}.weights.h5"
    record = write_weights_and_record(weights, target, record, RESOURCES / f"{name}.json")
    print(f"test loss {record['test_loss']:.3f} nats per image after {seconds:.0f} s; wrote {target}")


if __name__ == "__main__":
    main()
