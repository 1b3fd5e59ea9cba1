"""Keras on whichever backend the user chose (TensorFlow, JAX or PyTorch), imported once, quietly; seeding.

Keras reads its backend from ``KERAS_BACKEND`` (or ``~/.keras/keras.json``) when it is first
imported, so the choice is made before start-up: ``KERAS_BACKEND=jax jupyter lab``, or ``%env
KERAS_BACKEND=torch`` in a notebook's first cell. TensorFlow is the default. No code of this package
uses TensorFlow unless it is the backend (``tf`` is then the module, otherwise ``None``).

TensorFlow writes its oneDNN and CPU-feature notices straight to the process's stderr (file
descriptor 2) before Python's logging exists, so neither ``warnings`` nor ``logging`` can hide
them. We point descriptor 2 at ``/dev/null`` for the duration of the import only; errors still
surface as ordinary Python exceptions. Set TensorFlow's own ``TF_CPP_MIN_LOG_LEVEL`` to 0, 1 or 2
before the import to see its messages.
"""

import importlib
import importlib.util
import os
import random
import sys
import weakref

import numpy as np

from vae_helpers.config import check_count

BACKENDS = ("tensorflow", "jax", "torch")
_VERBOSE = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "3"  # the user asked TensorFlow for more


def _import_quietly():
    """Import Keras (and TensorFlow, when it is installed: see below) with descriptor 2 pointed at /dev/null.

    On JAX and PyTorch, Keras itself imports an installed TensorFlow the first time it serializes a
    layer (saving, loading, copying a model), so TensorFlow is imported here too, quietly, rather than
    later with its log lines. Without TensorFlow installed, nothing imports it.
    """
    if _VERBOSE or "keras" in sys.modules:
        import keras
        return keras
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras
        if importlib.util.find_spec("tensorflow") is not None:
            import tensorflow  # noqa: F401
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return keras


keras = _import_quietly()
BACKEND = keras.backend.backend()
if BACKEND not in BACKENDS:
    raise ImportError(f"vae_helpers runs on Keras' {', '.join(BACKENDS)} backends; KERAS_BACKEND is {BACKEND!r}")
tf = importlib.import_module("tensorflow") if BACKEND == "tensorflow" else None
if tf is not None and not _VERBOSE:
    tf.get_logger().setLevel("ERROR")


def backend_version():
    """The version of the backend library Keras runs on, for run records."""
    return importlib.import_module(BACKEND).__version__


def set_seed(seed=0, deterministic=False):
    """Seed Python, NumPy, Keras and its backend, so the same code draws the same numbers.

    ``deterministic=True`` also makes the backend pick deterministic kernels for the rest of the
    process (there is no way back), for bit-identical results where a kernel would otherwise vary:
    TensorFlow's op determinism, PyTorch's deterministic algorithms; JAX on the CPU already is.
    """
    seed = check_count(seed, "seed", minimum=0)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic and BACKEND == "tensorflow":
        tf.config.experimental.enable_op_determinism()
    elif deterministic and BACKEND == "torch":
        importlib.import_module("torch").use_deterministic_algorithms(True)


def inference_function(model):
    """``model(x, training=False)`` compiled, as a function from a NumPy batch to NumPy outputs (a list for several).

    On TensorFlow a ``tf.function`` traced once for any batch size, called directly (``predict``
    would set up a data pipeline on every call); on JAX and PyTorch Keras' own compiled
    ``predict_on_batch``. Either reads the model's current weights at every call, and holds the
    model only weakly.
    """
    model_ref = weakref.ref(model)  # a strong reference would keep every model it was made for alive
    if BACKEND != "tensorflow":
        return lambda x: model_ref().predict_on_batch(x)
    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
    compiled = tf.function(lambda x: model_ref()(x, training=False), input_signature=signature, reduce_retracing=True)

    def call(x):
        outputs = compiled(tf.constant(x, tf.float32))
        return [t.numpy() for t in outputs] if isinstance(outputs, (list, tuple)) else outputs.numpy()

    return call

