"""The same shipped weights compute the same things on TensorFlow, JAX and PyTorch.

Each test runs ``tests/backend_probe.py`` under the other backends in fresh processes (Keras fixes its
backend at start-up) and compares their results with this process's. A backend that is not
installed is skipped, unless ``--require-backends`` names it (CI does, in each backend's environment).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vae_helpers import BACKEND

PROBE = Path(__file__).with_name("backend_probe.py")
MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _probe_on(backend, tmp_path):
    if backend == BACKEND:
        from tests.backend_probe import probe  # noqa: PLC0415
        return {key: np.asarray(value) for key, value in probe().items()}
    out = tmp_path / f"{backend}.npz"
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run([sys.executable, str(PROBE), str(out)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as arrays:
        return dict(arrays)


@pytest.fixture(params=[name for name in MODULES if name != BACKEND])
def other_backend(request):
    name = request.param
    if importlib.util.find_spec(MODULES[name]) is None:
        if name in request.config.getoption("--require-backends").split(","):
            pytest.fail(f"--require-backends names {name}, which is not installed here")
        pytest.skip(f"{name} is not installed")
    return name


def test_shipped_models_decode_and_encode_alike_on_every_backend(other_backend, tmp_path):
    here, there = _probe_on(BACKEND, tmp_path), _probe_on(other_backend, tmp_path)
    assert (str(here["backend"]), str(there["backend"])) == (BACKEND, other_backend)
    keys = sorted(key for key in here if key != "backend")
    assert keys == sorted(key for key in there if key != "backend") and len(keys) == 7
    for key in keys:
        assert here[key].shape == there[key].shape, key
        assert np.ptp(here[key]) > 0.1, f"{key}: the probe's outputs barely vary; it would not tell backends apart"
        np.testing.assert_allclose(there[key], here[key], atol=1e-5, rtol=0, err_msg=f"{key} on {other_backend}")
