"""Test-suite defaults: quick notebooks, the bundled data, throwaway run folders, no windows.

Set before any test or notebook kernel starts, so ``python -m pytest`` is deterministic offline.
Export a variable yourself to override it (e.g. ``VAE_HELPERS_QUICK=0`` for full notebook runs).
"""

import os
import tempfile

os.environ.setdefault("VAE_HELPERS_QUICK", "1")
os.environ.setdefault("VAE_HELPERS_DATA", "sample")
os.environ.setdefault("VAE_HELPERS_RUNS", os.path.join(tempfile.gettempdir(), "vae-helpers-test-runs"))
os.environ.setdefault("MPLBACKEND", "Agg")
