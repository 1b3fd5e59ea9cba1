"""The widgets in a real browser: JupyterLab + headless Chromium, driven by Playwright.

Writes a small notebook that shows the three widgets of notebook 05 and the two of notebook 06 (the
chapter notebooks are run by nbval only, once), opens it in a throw-away JupyterLab (see
tests/browser/lab.py) and runs every cell in a live kernel. Its last cell trains a small VAE with the
live training view: while that cell still runs, the test waits until the page has shown the view's
charts change twice, then asks the training to stop (it creates a file the notebook's callback looks
for at each epoch's end, so the test waits on what the page shows, never for a fixed time). Then it
drags the explorer's first slider and checks that the digit the page shows really changed, and
clicks a class and drags a slider of the conditional digit designer. Screenshots go to
``--artifacts`` (default: pytest's temporary folder); with ``--update-screenshot`` the combined one
of notebook 05's widgets also replaces docs/widgets.png.

Needs: pip ``playwright`` (no browser download: it drives Debian's ``chromium``), ``jupyterlab``
and ``ipywidgets``. Skips with the reason when any is missing, or fails with it under
``--require-browser`` (as in CI).
"""

import base64
import importlib.util
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest

from tests.browser.lab import CHROMIUM_ARGS, LabServer, find_chromium

REPO = Path(__file__).resolve().parents[1]
DOCS_SCREENSHOT = REPO / "docs" / "widgets.png"
WIDGET_CLASSES = ("vae-latent-explorer", "vae-interpolation-explorer", "vae-concept-editor")  # the README picture
NEW_WIDGET_CLASSES = ("vae-digit-designer", "vae-live-training")  # notebook 06's
STOP_FILE = "stop-live-training"  # created by the test in the notebook's folder: the live cell's training stops
RUN_ALL_TIMEOUT_MS = 240_000  # an upper bound for a loaded 2-core CI machine; the wait ends as soon as the cells are done
WIDGET_NOTEBOOK = [  # what notebook 05 shows, on the digits VAE_HELPERS_DATA gives (the sample in the tests)
    "from vae_helpers import data, pretrained, widgets\n"
    "vae, vae16 = pretrained.load_pretrained(2), pretrained.load_pretrained(16)\n"
    "_, (x_test, y_test) = data.load_mnist('auto')\n"
    "x, y = data.subset(x_test, y_test, per_class=100, seed=0)",
    "widgets.LatentExplorer(vae, x, y)",
    "widgets.InterpolationExplorer(vae16, x, y, start=int(np.flatnonzero(y == 1)[0]), end=int(np.flatnonzero(y == 0)[0]))",
    "widgets.ConceptEditor(vae16, x, y, source=1, target=7)",
    # notebook 06: an untrained conditional VAE, so that the test does not depend on shipped weights
    "from vae_helpers import conditional, keras, models, training\n"
    "cvae = conditional.build_conditional_vae(2, seed=0, compile=False)\n"
    "widgets.DigitDesigner(cvae, label=3)",
    "(x_train, _), _ = data.load_mnist('auto')\n"
    "live_vae = models.build_vae(2, seed=0)\n"
    "live = widgets.LiveTraining(live_vae, x[:100], every=16, manifold_n=8)\n"
    "live",
    # last: the browser test watches the live view while this cell runs, then creates STOP_FILE
    "import os\n"
    "class StopWhenAsked(keras.callbacks.Callback):\n"
    "    def on_epoch_end(self, epoch, logs=None):\n"
    f"        self.model.stop_training = os.path.exists({STOP_FILE!r})\n"
    "_ = training.train_vae(live_vae, x_train[:512], epochs=100, batch_size=32, progress=None,\n"
    "                       callbacks=[live, StopWhenAsked()])",
]


def _missing(chromium):
    for module, install in (("playwright", "pip install playwright"), ("jupyterlab", "pip install jupyterlab"),
                            ("ipywidgets", "pip install 'ipywidgets>=8'")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({install})"
    if find_chromium(chromium) is None:
        return "no Chromium found (apt-get install chromium, or pass --chromium)"
    return None


@pytest.fixture(autouse=True)
def browser_available(request):
    """Skip when a tool is missing; fail instead under ``--require-browser`` (CI)."""
    reason = _missing(request.config.getoption("--chromium"))
    if reason is not None:
        if request.config.getoption("--require-browser"):
            pytest.fail(f"browser test required (--require-browser) but {reason}")
        pytest.skip(reason)


@pytest.fixture
def artifacts(request, tmp_path):
    folder = Path(request.config.getoption("--artifacts") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def notebook(tmp_path):
    path = tmp_path / "widgets.ipynb"
    cells = [nbformat.v4.new_code_cell("import numpy as np")] + [nbformat.v4.new_code_cell(c) for c in WIDGET_NOTEBOOK]
    # Without a kernelspec JupyterLab asks which kernel to use, in a dialog, and never starts one by itself.
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernelspec}), path)
    return path


@pytest.fixture
def lab(tmp_path, notebook):
    with LabServer(tmp_path / "lab", [notebook], env={"VAE_HELPERS_QUICK": "1"}) as server:
        yield server


@pytest.fixture
def page(request, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=find_chromium(request.config.getoption("--chromium")),
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900}, timeout=60_000)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


# --- steps -----------------------------------------------------------------------------------------


def open_notebook(page, lab, name):
    page.goto(lab.url(name), timeout=60_000)
    page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-NotebookPanel .jp-Cell')",
                           timeout=60_000)
    page.wait_for_function("""() => {
        const panel = window.jupyterapp.shell.currentWidget;
        const kernel = panel && panel.sessionContext && panel.sessionContext.session
            && panel.sessionContext.session.kernel;
        return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
    }""", timeout=180_000)  # a kernel that imports TensorFlow can take a minute to start on a busy machine


def start_all_cells(page):
    """Clear stored outputs (so nothing shown comes from the saved file), then start running every cell."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    assert page.locator(".vae-latent-explorer").count() == 0
    page.evaluate("() => { window.__runAll = window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def last_cell_running(page):
    """Whether the notebook's last code cell has not finished yet (no execution count)."""
    return page.evaluate("""() => {
        const cells = window.jupyterapp.shell.currentWidget.content.widgets.filter(cell => cell.model.type === 'code');
        return cells[cells.length - 1].model.executionCount === null;
    }""")


def wait_for_all_cells(page, lab):
    """Wait until every cell has run, then check that none wrote an error."""
    try:
        page.wait_for_function("""() => {
            const panel = window.jupyterapp.shell.currentWidget;
            const kernel = panel.sessionContext.session.kernel;
            const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
            return kernel.status === 'idle' && cells.every(cell => cell.model.executionCount !== null);
        }""", timeout=RUN_ALL_TIMEOUT_MS, polling=500)
    except Exception as err:
        raise AssertionError(f"notebook did not finish running: {err}\n{lab.log_tail()}") from err
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'],"
                          " .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, f"cells wrote errors: {errors.all_inner_texts()}"
    assert "Error displaying widget" not in page.locator(".jp-Notebook").inner_text()


def image_bytes(page, locator):
    """The bytes behind an <img> element's current src (a blob: or data: URL).

    ipywidgets revokes an image's old blob: URL when a new picture arrives, so a read that loses that
    race reads the new src again.
    """
    encoded = locator.evaluate("""async img => {
        for (let attempt = 0; ; attempt++) {
            try {
                const buffer = await (await fetch(img.src)).arrayBuffer();
                let text = '';
                new Uint8Array(buffer).forEach(byte => { text += String.fromCharCode(byte); });
                return btoa(text);
            } catch (error) {
                if (attempt >= 5) throw error;
            }
        }
    }""")
    return base64.b64decode(encoded)


def drag_slider(page, slider, fraction):
    """Drag a noUiSlider handle by ``fraction`` of the track width (positive: to the right)."""
    track = slider.locator(".noUi-target").bounding_box()
    handle = slider.locator(".noUi-handle").bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 6):
        page.mouse.move(x + fraction * track["width"] * step / 5, y)
    page.mouse.up()


def wait_for_change(page, read, before, what, timeout_s=60):
    """Poll ``read()`` until it differs from ``before`` (a condition, not a fixed pause); return it."""
    deadline = page.evaluate("() => performance.now()") + timeout_s * 1000
    while page.evaluate("() => performance.now()") < deadline:
        now = read()
        if not np.array_equal(now, before):
            return now
        page.wait_for_timeout(100)
    raise AssertionError(f"{what} did not change within {timeout_s} s")


def watch_live_view(page, live, changes=2, timeout_s=RUN_ALL_TIMEOUT_MS / 1000):
    """Watch the live view while the last cell trains: return the training steps its readout showed and the
    loss charts its page showed, once the step has changed ``changes`` times.

    Fails if the cell ended first (the changes must be seen *during* training) or the time ran out.
    """
    chart, readout = live.locator("img.vae-live-losses"), live.locator(".vae-live-readout")
    steps, charts = [], []
    deadline = page.evaluate("() => performance.now()") + timeout_s * 1000
    while len(steps) <= changes:
        if not last_cell_running(page):
            raise AssertionError(f"training ended before the live view's step was seen to change {changes} times "
                                 f"(steps seen: {steps})")
        if page.evaluate("() => performance.now()") > deadline:
            raise AssertionError(f"the live view's step changed {len(steps) - 1} times in {timeout_s:.0f} s: {steps}")
        step = int(re.match(r"step ([\d,]+)", readout.inner_text()).group(1).replace(",", ""))
        picture = image_bytes(page, chart)
        if not steps or step != steps[-1]:
            steps.append(step)
        if not charts or picture != charts[-1]:
            charts.append(picture)
        page.wait_for_timeout(100)
    return steps, charts


def save_screenshots(page, artifacts, update_docs):
    """One picture per widget plus the three of notebook 05 stacked into one (the README picture)."""
    from PIL import Image

    paths = []
    for name in WIDGET_CLASSES + NEW_WIDGET_CLASSES:
        widget = page.locator(f".{name}").first
        widget.scroll_into_view_if_needed()
        paths.append(artifacts / f"{name}.png")
        widget.screenshot(path=str(paths[-1]))
    paths = paths[:len(WIDGET_CLASSES)]
    page.screenshot(path=str(artifacts / "page.png"))
    pictures = [Image.open(path).convert("RGB") for path in paths]
    combined = Image.new("RGB", (max(p.width for p in pictures), sum(p.height + 16 for p in pictures) - 16),
                         "white")
    top = 0
    for picture in pictures:
        combined.paste(picture, (0, top))
        top += picture.height + 16
    combined.save(artifacts / "widgets.png")
    if update_docs:
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(artifacts / "widgets.png", DOCS_SCREENSHOT)
    return artifacts / "widgets.png"


# --- the test --------------------------------------------------------------------------------------


def test_notebook_widgets_update_in_a_real_browser(request, notebook, lab, page, artifacts):
    open_notebook(page, lab, notebook.name)
    start_all_cells(page)
    live = page.locator(".vae-live-training")
    live.wait_for(state="visible", timeout=RUN_ALL_TIMEOUT_MS)
    live.scroll_into_view_if_needed()
    chart = live.locator("img.vae-live-losses")
    chart_before = _pixels(chart.screenshot())
    steps, charts = watch_live_view(page, live)
    assert steps[0] < steps[1] < steps[2], steps
    assert len(charts) >= 3 and all(picture[:8] == b"\x89PNG\r\n\x1a\n" for picture in charts)
    wait_for_change(page, lambda: _pixels(chart.screenshot()), chart_before, "the loss chart the page shows")
    (lab.root / STOP_FILE).touch()
    wait_for_all_cells(page, lab)
    for name in WIDGET_CLASSES + NEW_WIDGET_CLASSES:
        assert page.locator(f".{name}").count() == 1, f"widget .{name} is not on the page"

    explorer = page.locator(".vae-latent-explorer")
    digit = explorer.locator("img.vae-explorer-digit")
    scatter = explorer.locator("img.vae-explorer-scatter")
    first_slider = explorer.locator(".widget-slider").first
    explorer.scroll_into_view_if_needed()
    digit_before, scatter_before = image_bytes(page, digit), image_bytes(page, scatter)
    shown_before = np.asarray(_pixels(digit.screenshot()))
    readout_before = first_slider.locator(".widget-readout").inner_text()

    drag_slider(page, first_slider, 0.3)
    digit_after = wait_for_change(page, lambda: image_bytes(page, digit), digit_before, "the digit image's bytes")
    readout_after = first_slider.locator(".widget-readout").inner_text()
    assert float(readout_after) > float(readout_before), (readout_before, readout_after)
    assert image_bytes(page, scatter) != scatter_before  # the marker moved too
    assert digit_after[:8] == b"\x89PNG\r\n\x1a\n"
    shown_after = wait_for_change(page, lambda: np.asarray(_pixels(digit.screenshot())), shown_before,
                                  "the digit the page shows")
    assert shown_after.shape == shown_before.shape

    designer = page.locator(".vae-digit-designer")
    designer_digit = designer.locator("img.vae-designer-digit")
    designer.scroll_into_view_if_needed()
    three = image_bytes(page, designer_digit)
    designer.get_by_role("button", name="8", exact=True).click()
    eight = wait_for_change(page, lambda: image_bytes(page, designer_digit), three, "the designer's digit (class)")
    drag_slider(page, designer.locator(".widget-slider").first, 0.3)
    wait_for_change(page, lambda: image_bytes(page, designer_digit), eight, "the designer's digit (slider)")

    screenshot = save_screenshots(page, artifacts, request.config.getoption("--update-screenshot"))
    print(f"browser screenshots in {artifacts} (README picture: {screenshot})")


def _pixels(png):
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
