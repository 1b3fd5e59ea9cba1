"""Import TensorFlow and Keras once, without the C++ log lines TensorFlow prints at start-up; seeding.

TensorFlow writes its oneDNN and CPU-feature notices straight to the process's stderr (file
descriptor 2) before Python's logging exists, so neither ``warnings`` nor ``logging`` can hide
them. We point descriptor 2 at ``/dev/null`` for the duration of the import only; errors still
surface as ordinary Python exceptions. Set TensorFlow's own ``TF_CPP_MIN_LOG_LEVEL`` to 0, 1 or 2
before the import to see its messages.
"""

import os
import random
import sys

import numpy as np

from vae_helpers.config import check_count

_VERBOSE = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "3"  # the user asked TensorFlow for more


def _import_quietly():
    if _VERBOSE or "tensorflow" in sys.modules:
        import keras
        import tensorflow
        return tensorflow, keras
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras
        import tensorflow
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow, keras


tf, keras = _import_quietly()


def set_seed(seed=0, deterministic=False):
    """Seed Python, NumPy, TensorFlow and Keras, so the same code draws the same numbers.

    ``deterministic=True`` also makes TensorFlow pick deterministic kernels for the rest of the
    process (there is no way back), for bit-identical results where a kernel would otherwise vary.
    """
    seed = check_count(seed, "seed", minimum=0)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
