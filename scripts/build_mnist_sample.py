"""Rebuild ``vae_helpers/resources/mnist_sample.npz``, the bundled sample, from the canonical MNIST files.

The sample holds 4,000 training digits (400 per class) from MNIST's training set and 1,000 test
digits (100 per class) from MNIST's official test set (t10k), drawn with a fixed seed. So a model
trained on all of MNIST's training set has never seen the sample's test digits. A test image that
is byte-for-byte equal to a training image is never picked. The script is deterministic: CI rebuilds
the sample and checks that the arrays are equal to the bundled ones.

    python scripts/build_mnist_sample.py ../shared/data/mnist     # a folder of the four canonical files

The files are checked against MNIST's published checksums first (``vae_helpers.data.CANONICAL_MNIST``).
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from vae_helpers import data

TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100
SEED = 20141113  # fixed forever: changing it changes the bundled sample
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "vae_helpers" / "resources" / "mnist_sample.npz"


def read_canonical(folder):
    """The four canonical MNIST arrays (uint8 pixels, labels) from ``folder``; DataError unless the checksums match."""
    arrays = {}
    for name, stem in data.IDX_FILES.items():
        path = data.find_idx_file(folder, stem)
        raw = data.read_idx_bytes(path)
        if hashlib.md5(raw).hexdigest() != data.CANONICAL_MNIST[stem]:
            raise data.DataError(f"{path}: not the canonical MNIST file (its MD5 differs from the published one)")
        arrays[name] = data.read_idx(path, raw)
    return arrays


def per_class(labels, count, rng, allowed):
    """Indices of ``count`` images of each digit among the ``allowed`` ones, in a shuffled order."""
    picked = [rng.permutation(np.flatnonzero((labels == digit) & allowed))[:count] for digit in range(10)]
    return rng.permutation(np.concatenate(picked)).astype(np.int32)


def build(folder):
    """The arrays stored in the bundled sample, built from the canonical MNIST files in ``folder``."""
    mnist = read_canonical(folder)
    rng = np.random.default_rng(SEED)
    train_index = per_class(mnist["y_train"], TRAIN_PER_CLASS, rng, np.ones(len(mnist["y_train"]), bool))
    seen = {image.tobytes() for image in mnist["x_train"]}
    unseen = np.array([image.tobytes() not in seen for image in mnist["x_test"]])
    test_index = per_class(mnist["y_test"], TEST_PER_CLASS, rng, unseen)
    provenance = {
        "origin": "MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges): training digits from "
                  "train-images-idx3-ubyte, test digits from MNIST's official test set t10k-images-idx3-ubyte",
        "licence": "MNIST: CC BY-SA 3.0 (as stated by its authors)",
        "source_md5": data.CANONICAL_MNIST,
        "selection": f"{TRAIN_PER_CLASS} training and {TEST_PER_CLASS} test digits per class, "
                     f"numpy default_rng({SEED}); train_index and test_index are positions in the source files",
        "test_digits_equal_to_a_training_image_excluded": int((~unseen).sum()),
    }
    return {"x_train": mnist["x_train"][train_index], "y_train": mnist["y_train"][train_index],
            "x_test": mnist["x_test"][test_index], "y_test": mnist["y_test"][test_index],
            "train_index": train_index, "test_index": test_index, "provenance": np.array(json.dumps(provenance))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mnist", type=Path, help="folder of the four canonical MNIST files (plain or gzipped)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    try:
        arrays = build(args.mnist)
    except data.DataError as err:
        sys.exit(f"build_mnist_sample: {err}")
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): "
          f"{len(arrays['x_train'])} training and {len(arrays['x_test'])} test digits")


if __name__ == "__main__":
    main()
