"""Score a finished training run on MNIST's 10,000 test digits and ship it as one of the package's pretrained models.

    python -m vae_helpers train --data ../shared/data/mnist ... --out vae-runs/z2   # the run (its command is recorded)
    python scripts/ship_pretrained.py vae-runs/z2 --mnist ../shared/data/mnist       # writes resources/pretrained/

The record of the run (``run.json``: command, settings, per-epoch history) gains the scores that
the tests and notebooks quote: the test ELBO, the importance-weighted -log p(x) with ``--k``
samples, the 5-NN accuracy of the codes, the active latent dimensions, and which digits a 3-NN
classifier on pixels sees in the 15 x 15 manifold and in 1,000 samples from the prior.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from vae_helpers import data, evaluation, latent, plotting, pretrained
from vae_helpers.models import build_vae, load_vae_weights
from vae_helpers.files import sha256_of, write_weights_and_record
from vae_helpers.training import RECORD_FILE, WEIGHTS_FILE

RESOURCES = Path(pretrained.__file__).parent / "resources" / "pretrained"


def digits_seen(vae, x_train, y_train, seed=0):
    """Class counts (0-9) a pixel classifier gives the manifold grid (2-D models) and 1,000 prior samples."""
    prior = latent.decode(vae, np.random.default_rng(seed).standard_normal((1000, vae.latent_dim)))
    counts = {"prior_sample_classes": np.bincount(evaluation.classify_digits(prior, x_train, y_train), minlength=10)}
    if vae.latent_dim == 2:
        grid = latent.decode(vae, plotting.manifold_codes(15))
        counts["manifold_classes"] = np.bincount(evaluation.classify_digits(grid, x_train, y_train), minlength=10)
    return {name: value.tolist() for name, value in counts.items()}


def scores(vae, mnist, k):
    """The numbers the record keeps, on the 10,000 test digits (time-consuming: IWAE decodes k codes per digit)."""
    (x_train, y_train), (x_test, y_test) = mnist
    started = time.perf_counter()
    result = {"test_elbo": evaluation.elbo(vae, x_test, n_samples=8, seed=0),
              "iwae_nll": evaluation.importance_weighted_nll(vae, x_test, k=k, seed=0), "iwae_k": k,
              "knn_accuracy": evaluation.knn_latent_accuracy(vae, x_train, y_train, x_test, y_test, k=5),
              "active_units": int(np.sum(np.var(latent.encode(vae, x_test), axis=0) > 0.01)),
              **digits_seen(vae, x_train, y_train)}
    result["scored_on"] = f"MNIST test set, {len(x_test):,} digits; {time.perf_counter() - started:.0f} s to score"
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder of 'python -m vae_helpers train'")
    parser.add_argument("--mnist", default="keras", help="MNIST source: an IDX folder or 'keras' (default)")
    parser.add_argument("--k", type=int, default=500, help="importance samples per digit for -log p(x) (default 500)")
    args = parser.parse_args(argv)
    record = json.loads((args.run / RECORD_FILE).read_text())
    if record.get("status") != "finished":
        sys.exit(f"ship_pretrained: {args.run} holds no finished run")
    settings = record["settings"]
    recorded = record.get("weights_sha256")
    if recorded and sha256_of(args.run / WEIGHTS_FILE) != recorded:
        sys.exit(f"ship_pretrained: {args.run / WEIGHTS_FILE} no longer has the SHA-256 its run.json recorded")
    vae = load_vae_weights(build_vae(settings["latent_dim"], settings["loss"], seed=settings["seed"]),
                           args.run / WEIGHTS_FILE)
    if args.mnist != "keras" and not data.is_canonical_mnist(args.mnist):
        sys.exit(f"ship_pretrained: {args.mnist} does not hold the canonical MNIST files")
    mnist = data.load_mnist(args.mnist)
    record.update(scores(vae, mnist, args.k))
    name = pretrained.SHIPPED[settings["latent_dim"]]
    # The record gets the weights' SHA-256, which load_pretrained checks on every load; both files or neither.
    record = write_weights_and_record((args.run / WEIGHTS_FILE).read_bytes(), RESOURCES / f"{name}.weights.h5",
                                      record, RESOURCES / f"{name}.json")
    print(json.dumps({key: record[key] for key in ("command", "test_elbo", "iwae_nll", "knn_accuracy", "active_units")
                      if key in record}, indent=1))


if __name__ == "__main__":
    main()
