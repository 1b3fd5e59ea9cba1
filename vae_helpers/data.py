"""MNIST-style data: the full set through Keras, a bundled real sample, or local IDX files.

Every loader returns ``(x_train, y_train), (x_test, y_test)`` with images as float32 in [0, 1],
shape (N, 28, 28, 1), and labels as int64, so the rest of the package never cares where the
digits came from. ``load_mnist`` says in one line what it loaded; a folder holding the canonical
MNIST files is recognised by their published checksums.

Pure numpy: importing this module does not load TensorFlow.
"""

import gzip
import hashlib
import json
import os
import socket
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from vae_helpers.config import DATA_ENV
from vae_helpers.files import read_error

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
#: MD5 of the uncompressed canonical MNIST files, as published with the data set and by many projects since.
CANONICAL_MNIST = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
_IDX_MAGIC = {0x00000803: 3, 0x00000801: 1}  # unsigned-byte images (3 dims) and labels (1 dim)
KERAS_TIMEOUT_S = 20


class DataError(ValueError):
    """A data file or folder is missing, truncated or not what it claims to be."""


def load_mnist(source="auto"):
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``.

    ``source`` is one of:

    * ``"keras"``: the full 60,000/10,000 MNIST through Keras' cached download;
    * ``"sample"``: 4,000/1,000 real MNIST digits bundled with this package (works offline);
    * a path to a folder of IDX files (``train-images-idx3-ubyte[.gz]`` and friends), e.g. the
      Fashion-MNIST files of Debian's ``dataset-fashion-mnist``;
    * ``"auto"``: ``$VAE_HELPERS_DATA`` if set, else Keras' download, else the bundled sample with
      one message saying so.
    """
    if source == "auto":
        forced = os.environ.get(DATA_ENV, "").strip()
        if forced:
            return load_mnist(forced)
        try:
            return load_mnist("keras")
        except DataError as err:
            print(f"Could not get the full MNIST through Keras ({err}); "
                  "using the bundled 4,000/1,000 sample instead.", file=sys.stderr)
            return load_mnist("sample")
    if source == "keras":
        return _report("Full MNIST through Keras", load_keras_mnist())
    if source == "sample":
        return _report("The bundled MNIST sample", load_sample())
    if isinstance(source, (str, os.PathLike)) and (os.sep in str(source) or Path(source).exists()):
        splits, canonical = _read_idx_folder(source)
        name = Path(source).name
        return _report(f"Full MNIST from {name}/, checksums verified" if canonical
                       else f"IDX files from {name}/ (not the canonical MNIST files)", splits)
    raise DataError(f"unknown data source {source!r}: use 'auto', 'keras', 'sample' "
                    "or the path of a folder of IDX files")


def _report(what, splits):
    """The one line every loader prints: what was loaded and how many digits."""
    (x_train, _), (x_test, _) = splits
    print(f"{what}: {len(x_train):,} training and {len(x_test):,} test digits")
    return splits


def to_images(pixels):
    """uint8 pixels (N, 28, 28) -> float32 images in [0, 1] with a channel axis (N, 28, 28, 1)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 3:
        raise DataError(f"expected pixel arrays of shape (N, height, width), got {pixels.shape}")
    images = pixels.astype(np.float32)
    images /= 255.0  # in place: no second full-size temporary
    return images[..., np.newaxis]


def load_keras_mnist():
    """Full MNIST through ``keras.datasets.mnist`` (downloads once to ``~/.keras/datasets``)."""
    from vae_helpers._backend import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(KERAS_TIMEOUT_S)
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # network errors arrive as many different types
        raise DataError(f"Keras' MNIST download failed: {type(err).__name__}: {err}") from err
    finally:
        socket.setdefaulttimeout(previous)
    return (to_images(x_train), y_train.astype(np.int64)), (to_images(x_test), y_test.astype(np.int64))


def sample_path():
    """Path of the bundled sample (see ``scripts/build_mnist_sample.py`` and ``DATA.md``)."""
    return Path(str(resources.files("vae_helpers") / "resources" / "mnist_sample.npz"))


def load_sample():
    """The bundled real MNIST sample: 4,000 training and 1,000 test digits, 10 classes balanced."""
    path = sample_path()
    try:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"{path}: bundled sample is missing or damaged ({err}); reinstall vae_helpers") from err
    return ((to_images(arrays["x_train"]), arrays["y_train"].astype(np.int64)),
            (to_images(arrays["x_test"]), arrays["y_test"].astype(np.int64)))


def sample_provenance():
    """Where the bundled sample came from, its licence and how it was split (a dict)."""
    with np.load(sample_path()) as stored:
        return json.loads(str(stored["provenance"]))


def find_idx_file(folder, stem):
    """Path of ``stem`` or ``stem.gz`` in ``folder``; DataError naming both if neither exists."""
    folder = Path(folder)
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: no {stem} or {stem}.gz in this folder")


def read_idx_bytes(path):
    """The uncompressed bytes of an IDX file (gzipped or not), or DataError naming the file."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            return handle.read()
    except (PermissionError, FileNotFoundError, IsADirectoryError) as err:  # the file system's answer, not damage
        raise DataError(read_error(path, err, "data file")) from err
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err}); the file is corrupt or truncated") from err


def read_idx(path, raw=None):
    """Read one IDX file (optionally gzipped) of unsigned bytes into a numpy array.

    Checks the magic number and that the payload size matches the header, so a truncated or
    foreign file fails here with its name rather than later with a reshape error.
    """
    path = Path(path)
    raw = read_idx_bytes(path) if raw is None else raw
    if len(raw) < 8:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _IDX_MAGIC:
        raise DataError(f"{path}: wrong magic number 0x{magic:08x}; expected 0x00000803 (images) "
                        "or 0x00000801 (labels) of an unsigned-byte IDX file")
    ndim = _IDX_MAGIC[magic]
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DataError(f"{path}: header truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    payload = len(raw) - header_end
    if payload != expected:
        raise DataError(f"{path}: header promises {expected} bytes of data for shape {shape}, "
                        f"file holds {payload}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape)


def _read_idx_folder(folder):
    """The four arrays of an IDX folder as float32 images and int64 labels, and whether they are the canonical MNIST."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected a folder of IDX files)")
    arrays, canonical = {}, True
    for name, stem in IDX_FILES.items():
        path = find_idx_file(folder, stem)
        raw = read_idx_bytes(path)
        canonical = canonical and hashlib.md5(raw).hexdigest() == CANONICAL_MNIST[stem]
        arrays[name] = read_idx(path, raw)
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{folder}: {split} images must be 3-D and labels 1-D, "
                            f"got {images.shape} and {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    train_size, test_size = arrays["x_train"].shape[1:], arrays["x_test"].shape[1:]
    if train_size != test_size:
        raise DataError(f"{folder}: the training images are {train_size[0]}x{train_size[1]} pixels but the test images "
                        f"({IDX_FILES['x_test']}) are {test_size[0]}x{test_size[1]}; both splits must have one image size")
    splits = ((to_images(arrays["x_train"]), arrays["y_train"].astype(np.int64)),
              (to_images(arrays["x_test"]), arrays["y_test"].astype(np.int64)))
    return splits, canonical


def load_idx_folder(folder):
    """MNIST-format data from a folder of the four standard IDX files (plain or gzipped)."""
    return _read_idx_folder(folder)[0]


def is_canonical_mnist(folder):
    """True when ``folder`` holds the four canonical MNIST files (their MD5 sums match the published ones)."""
    try:
        return all(hashlib.md5(read_idx_bytes(find_idx_file(folder, stem))).hexdigest() == digest
                   for stem, digest in CANONICAL_MNIST.items())
    except DataError:
        return False


def check_images(x, name="x", image_shape=(28, 28, 1)):
    """Validate a batch of images before it reaches TensorFlow; return it as float32.

    Raises ValueError naming the problem: wrong rank or size, NaN/inf, or values outside [0, 1]
    (the usual mistake: forgetting to divide uint8 pixels by 255).
    """
    x = np.asarray(x)
    image_shape = tuple(image_shape)
    if x.ndim == len(image_shape) and image_shape[-1] == 1:
        x = x[..., np.newaxis]
    if x.shape[1:] != image_shape:
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, image_shape))}), got {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        hint = " (divide uint8 pixels by 255)" if high > 1.0 else ""
        raise ValueError(f"{name} must be in [0, 1], got values from {low:g} to {high:g}{hint}")
    return x


def data_digest(splits):
    """SHA-256 of a data set ``((x_train, y_train), (x_test, y_test))``: its arrays' shapes, dtypes and bytes.

    Recorded with every training run, so that resuming on other data (even of the same size) is refused.
    """
    digest = hashlib.sha256()
    for array in (array for split in splits for array in split):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def subset(x, y, per_class, seed=0):
    """A class-balanced subset with ``per_class`` examples of each label (for quick runs)."""
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(y == label))[:per_class]
                           for label in np.unique(y)])
    keep = rng.permutation(keep)
    return x[keep], y[keep]


def pixel_levels():
    """The 256 float32 values ``to_images`` gives the bytes 0..255 (computed the same way)."""
    levels = np.arange(256, dtype=np.float32)
    levels /= 255.0
    return levels


def as_pixel_codes(images, chunk=8192):
    """``images`` as uint8 codes into ``pixel_levels()`` (a quarter of the memory), or None if any pixel is not such a level.

    ``pixel_levels()[codes]`` equals ``images`` bit for bit, so training on the codes sees exactly
    the images it was given. Images that were not made from bytes (noise added, other scaling)
    return None: they are kept as floats.
    """
    images = np.asarray(images)
    if images.dtype != np.float32:
        return None
    levels = pixel_levels()
    codes = np.empty(images.shape, dtype=np.uint8)
    for start in range(0, len(images), chunk):  # in chunks: no full-size float temporaries
        part = images[start:start + chunk]
        scaled = np.rint(part * np.float32(255.0))
        if not (np.all(scaled >= 0) and np.all(scaled <= 255)):
            return None
        codes[start:start + chunk] = scaled.astype(np.uint8)
        if not np.array_equal(levels[codes[start:start + chunk]], part):
            return None
    return codes
