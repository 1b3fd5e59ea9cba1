"""Import TensorFlow and Keras once, without the C++ log lines TensorFlow prints at start-up.

TensorFlow writes its oneDNN and CPU-feature notices straight to the process's stderr (file
descriptor 2) before Python's logging exists, so neither ``warnings`` nor ``logging`` can hide
them. We point descriptor 2 at ``/dev/null`` for the duration of the import only; errors still
surface as ordinary Python exceptions. Set ``VAE_HELPERS_VERBOSE_TF=1`` to see everything.
"""

import os
import sys

_VERBOSE = os.environ.get("VAE_HELPERS_VERBOSE_TF", "") not in ("", "0")

if not _VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_quietly():
    if _VERBOSE or "tensorflow" in sys.modules:
        import keras
        import tensorflow
        return tensorflow, keras
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
