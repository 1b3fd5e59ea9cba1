"""Test-suite defaults and options.

Before any test or notebook kernel starts: quick notebooks, the bundled data, throwaway run folders,
no windows, so ``python -m pytest`` is deterministic offline. Export a variable yourself to override
it (e.g. ``VAE_HELPERS_QUICK=0`` for full notebook runs). The options below are listed by
``pytest --help``; CI turns on the two ``--require-*`` ones (see ``.ci/run``).
"""

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("VAE_HELPERS_QUICK", "1")
os.environ.setdefault("VAE_HELPERS_DATA", "sample")
os.environ.setdefault("VAE_HELPERS_RUNS", os.path.join(tempfile.gettempdir(), "vae-helpers-test-runs"))
os.environ.setdefault("MPLBACKEND", "Agg")

collect_ignore = ["notebooks/exercises"]  # learner versions: their check cells fail by design (tests/test_exercises.py)


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run only on these Keras backends (the others skip, saying why)")


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("backends")]
    if not marked:
        return
    from vae_helpers import BACKEND  # noqa: PLC0415  (imports Keras: only when a test is marked)

    for item in marked:
        names = item.get_closest_marker("backends").args
        if BACKEND not in names:
            item.add_marker(pytest.mark.skip(reason=f"runs on the {' and '.join(names)} backend(s) only; "
                                                    f"this is {BACKEND}"))


def pytest_addoption(parser):
    group = parser.getgroup("vae_helpers")
    group.addoption("--mnist-dir", default=str(Path(__file__).resolve().parent.parent / "shared" / "data" / "mnist"),
                    help="folder of the four canonical MNIST files, for the tests on full MNIST "
                         "(default: ../shared/data/mnist next to this repository)")
    group.addoption("--require-full-mnist", action="store_true",
                    help="fail, instead of skipping, the tests that need full MNIST when --mnist-dir has none")
    group.addoption("--require-browser", action="store_true",
                    help="fail, instead of skipping, the browser test when Chromium or Playwright is missing")
    group.addoption("--require-backends", default="",
                    help="comma-separated Keras backends (tensorflow, jax, torch) whose cross-backend tests must run: "
                         "fail, instead of skipping, when one is not installed")
    group.addoption("--chromium", default=None, help="Chromium executable for the browser test (default: search)")
    group.addoption("--artifacts", default=None, help="folder for the browser test's screenshots "
                                                      "(default: pytest's temporary folder)")
    group.addoption("--update-screenshot", action="store_true",
                    help="the browser test also refreshes docs/widgets.png")
