"""docs/diagrams.py: draws its three PNGs headless, byte for byte the same every time and as committed."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "diagrams.py"
NAMES = ("architecture.png", "graphical_model.png", "reparameterization.png")


def load_script():
    spec = importlib.util.spec_from_file_location("diagrams", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The three diagrams drawn by the command line into a fresh folder."""
    out = tmp_path_factory.mktemp("diagrams")
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], check=True, capture_output=True, timeout=120)
    return out


def test_the_script_draws_three_pngs_of_a_readable_width(drawn):
    from PIL import Image

    assert sorted(p.name for p in drawn.iterdir()) == sorted(NAMES)
    for name in NAMES:
        with Image.open(drawn / name) as image:
            assert image.format == "PNG" and 1000 <= image.width <= 1400, (name, image.size)


def test_drawing_twice_gives_identical_bytes(drawn, tmp_path):
    load_script().main(["--out", str(tmp_path)])
    for name in NAMES:
        assert (tmp_path / name).read_bytes() == (drawn / name).read_bytes(), name


def test_the_committed_pngs_are_up_to_date(drawn):
    pinned = re.search(r"^matplotlib==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    if matplotlib.__version__ != pinned:
        pytest.skip(f"the PNGs are rendered with matplotlib {pinned}, this is {matplotlib.__version__}")
    for name in NAMES:
        committed = ROOT / "docs" / "diagrams" / name
        assert committed.read_bytes() == (drawn / name).read_bytes(), (
            f"{committed} is stale: run `python docs/diagrams.py` and commit the PNGs")


def test_every_gradient_arrow_of_the_reparameterized_graph_ends_on_a_box():
    """The red dashed arrows of the right-hand panel (backward pass) must end at a node, not in empty space."""
    from matplotlib.colors import to_hex
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    diagrams = load_script()
    ax = diagrams.reparameterization().axes[0]
    boxes = [patch.get_bbox() for patch in ax.patches if isinstance(patch, FancyBboxPatch)]
    gradients = [patch for patch in ax.patches if isinstance(patch, FancyArrowPatch)
                 and to_hex(patch.get_edgecolor()) == diagrams.LOSS and patch.get_linestyle() != "-"]
    ends = [patch._posA_posB[1] for patch in gradients if patch._posA_posB[0][0] > 6.55]  # right-hand panel
    assert len(ends) == 3  # to z (dL/dz), to mu, to log sigma^2
    for x, y in ends:
        gap = min(max(b.x0 - x, x - b.x1, 0) + max(b.y0 - y, y - b.y1, 0) for b in boxes)
        assert gap < 0.08, f"a gradient arrow ends at ({x:.2f}, {y:.2f}), {gap:.2f} in away from every box"
