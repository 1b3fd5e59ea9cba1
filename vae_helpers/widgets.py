"""Interactive widgets: an explorer, an interpolation scrubber, a concept editor, and a live view of training.

They work in JupyterLab, in classic Notebook and outside notebooks (tests set a slider's
``value`` and read the images back). Pictures are
``ipywidgets.Image`` PNG bytes made with Pillow: one decode through the compiled
``latent.decode`` plus a tiny PNG is a few milliseconds, where redrawing a matplotlib figure would
take ten times longer. The latent scatter is drawn once by matplotlib and only the marker is
stamped onto a copy of its pixels on each move.

Each widget is a small class: its controls and pictures are attributes, its ``widget`` is the
ipywidgets container, and a notebook cell that ends with the object displays it.

``LiveTraining`` is also a Keras callback: passed to ``fit`` (or ``training.train_vae``) it redraws
its charts while the model trains. Its charts are drawn with Pillow, not matplotlib, for the same
reason: a redraw must cost a small fraction of the training it shows.
"""

import io
import numbers
import time

import numpy as np

from vae_helpers._backend import inference_function, keras
from vae_helpers.config import check_count
from vae_helpers.data import check_images
from vae_helpers.latent import (
    apply_concept,
    attribute_concept,
    check_codes,
    class_concept,
    decode,
    encode,
    ink_amount,
    interpolate,
    latent_dim_of,
    slant,
)
from vae_helpers.losses import posterior_log_var
from vae_helpers.plotting import manifold_codes, tile_images

MARKER_COLOR = (220, 20, 60)
HIGHLIGHT_COLOR = (220, 20, 60)
SCATTER_PIXELS = 320


def _ipywidgets():
    """Import ipywidgets on first use, so the rest of the package works without it."""
    try:
        import ipywidgets
    except ImportError as err:
        raise ImportError("vae_helpers.widgets needs ipywidgets 8 or newer: "
                          "pip install 'ipywidgets>=8' (or pip install 'vae-helpers[widgets]')") from err
    return ipywidgets


# --- Pictures ----------------------------------------------------------------------------------


def to_pixels(image, scale=1):
    """A [0, 1] grey image (h, w[, 1]) or an RGB uint8 image (h, w, 3) as uint8 pixels, enlarged ``scale`` times."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    if scale > 1:
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    return image


def png_bytes(image, scale=1):
    """PNG bytes of an image (see ``to_pixels``); fast compression, since these are redrawn live."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(to_pixels(image, scale)).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def read_png(data):
    """Pixels of PNG bytes as a uint8 array (for tests and for checking what a widget shows)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def image_strip(images, gap=2):
    """Lay out rows of digits as one RGB picture with white gaps; ``images`` is (rows, cols, h, w[, 1])."""
    images = np.asarray(images)
    rows, cols, h, w = images.shape[:4]
    grey = to_pixels(tile_images(images.reshape(rows * cols, h, w), rows, gap=gap, fill=1.0))
    return np.repeat(grey[..., np.newaxis], 3, axis=-1)


def highlight_column(strip, column, rows, cols, gap=2, color=HIGHLIGHT_COLOR):
    """A copy of an ``image_strip`` picture with column ``column`` framed in every row (the current step)."""
    strip = strip.copy()
    h = (strip.shape[0] + gap) // rows - gap
    w = (strip.shape[1] + gap) // cols - gap
    left, right = column * (w + gap), column * (w + gap) + w - 1
    for r in range(rows):
        top, bottom = r * (h + gap), r * (h + gap) + h - 1
        strip[[top, bottom], left:right + 1] = color
        strip[top:bottom + 1, [left, right]] = color
    return strip


class ScatterCanvas:
    """The encoded digits drawn once as pixels, plus a marker stamped at any code on demand.

    Only the first two latent dimensions are drawn (for a 1-D space: the code against the class).
    """

    def __init__(self, codes, labels=None, limit=3.0, pixels=SCATTER_PIXELS):
        self.limit = float(limit)
        self.one_dim = codes.shape[1] == 1
        self.pixels, self._to_pixel = _draw_scatter(codes, labels, self.limit, pixels, self.one_dim)
        self._last = None

    def position(self, code):
        """(row, column) of a code's marker in the picture; codes off the axes are clamped to its edge."""
        point = np.clip(np.asarray(code[:2], dtype=np.float64), -self.limit, self.limit)
        x = point[0]
        y = 0.0 if self.one_dim else point[1]
        column, row = self._to_pixel(x, y)
        return int(round(row)), int(round(column))

    def png(self, code):
        """PNG bytes of the scatter with a marker at ``code`` (cached while the marker stays put)."""
        where = self.position(code)
        if self._last is None or self._last[0] != where:
            picture = self.pixels.copy()
            _stamp_marker(picture, *where, full_height=self.one_dim)
            self._last = (where, png_bytes(picture))
        return self._last[1]


def _draw_scatter(codes, labels, limit, pixels, one_dim):
    """Render the scatter with matplotlib's Agg canvas; return (RGB pixels, data -> pixel function)."""
    import matplotlib.patheffects as effects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(pixels / 100, pixels / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes([0.14, 0.12, 0.82, 0.82])
    x = codes[:, 0]
    y = (labels if labels is not None else np.zeros(len(codes))) if one_dim else codes[:, 1]
    if labels is None:
        ax.scatter(x, y, color="0.5", s=4, alpha=0.6, linewidths=0)
    else:
        ax.scatter(x, y, c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=4, alpha=0.6, linewidths=0)
        classes = np.unique(labels)
        centres = np.array([[np.median(x[labels == c]), np.median(y[labels == c])] for c in classes])
        for label, (cx, cy) in zip(classes, spread_apart(centres, 0.14 * limit)):
            ax.text(cx, cy, str(label), fontsize=12, ha="center", va="center", weight="bold",
                    path_effects=[effects.withStroke(linewidth=3, foreground="white")])
    ax.set_xlim(-limit, limit)
    ax.set_xlabel("$z_1$", labelpad=1)
    if one_dim:
        ax.set_ylim(-0.5, 9.5 if labels is not None else 0.5)
        ax.set_ylabel("class")
    else:
        ax.set_ylim(-limit, limit)
        ax.set_ylabel("$z_2$", labelpad=1)
    ax.tick_params(labelsize=8)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    transform = ax.transData.frozen()
    height = rgb.shape[0]

    def to_pixel(x_value, y_value):
        column, up = transform.transform((x_value, y_value))
        return column, height - up

    return rgb, to_pixel


def spread_apart(points, distance, rounds=100):
    """Nudge 2-D label positions apart until no two are closer than ``distance`` (or ``rounds`` run out)."""
    points = np.array(points, dtype=np.float64)
    for _ in range(rounds):
        gaps = points[:, None] - points[None]
        lengths = np.hypot(gaps[..., 0], gaps[..., 1]) + np.eye(len(points))
        close = (lengths < distance) & ~np.eye(len(points), dtype=bool)
        if not close.any():
            break
        push = np.where(close[..., None], gaps / lengths[..., None] * (distance - lengths[..., None]) / 2, 0.0)
        points += push.sum(axis=1)
    return points


def _stamp_marker(rgb, row, column, radius=6, full_height=False):
    """Draw a red ring with a white rim (or a vertical line for a 1-D space) in place."""
    height, width = rgb.shape[:2]
    if full_height:
        rgb[:, max(column - 1, 0):column + 2] = MARKER_COLOR
        return
    top, left = max(row - radius - 2, 0), max(column - radius - 2, 0)
    rows, cols = np.mgrid[top:min(row + radius + 3, height), left:min(column + radius + 3, width)]
    distance = np.hypot(rows - row, cols - column)
    patch = rgb[top:top + rows.shape[0], left:left + rows.shape[1]]
    patch[(distance >= radius - 3) & (distance <= radius + 1.5)] = (255, 255, 255)
    patch[(distance >= radius - 2) & (distance <= radius + 0.5)] = MARKER_COLOR


# --- Shared helpers ------------------------------------------------------------------------------


def default_test_digits():
    """The bundled sample's 1,000 test digits and labels, used when no data is passed."""
    from vae_helpers.data import load_sample

    _, (x_test, y_test) = load_sample()
    return x_test, y_test


def slider_limit(codes, minimum=3.0):
    """Half-width of the slider range: covers every code and at least +-``minimum`` (the prior's bulk)."""
    return float(max(minimum, np.ceil(np.max(np.abs(codes)) * 2) / 2))


def _check_data(x, y):
    if y is not None and len(y) != len(x):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels")
    return x, (None if y is None else np.asarray(y))


def _index_box(ipw, value, n, description):
    if not 0 <= value < n:
        raise ValueError(f"{description} index must be in [0, {n - 1}], got {value}")
    return ipw.BoundedIntText(value=value, min=0, max=n - 1, description=description,
                              layout=ipw.Layout(width="170px"))


def _class_menu(ipw, labels, value, description):
    return ipw.Dropdown(options=[int(label) for label in np.unique(labels)], value=int(value),
                        description=description, layout=ipw.Layout(width="170px"))


def _first_of(labels, label, avoid=None):
    """Index of the first image of class ``label`` (the second one if the first is ``avoid``)."""
    members = np.flatnonzero(labels == label)
    return int(members[1] if len(members) > 1 and members[0] == avoid else members[0])


def _link_class_and_index(menu, box, labels, other_box=None):
    """Choosing a class jumps ``box`` to a digit of that class; typing an index shows its class."""

    def on_class(change):
        if labels[box.value] != change["new"]:
            box.value = _first_of(labels, change["new"], avoid=None if other_box is None else other_box.value)

    def on_index(change):
        menu.value = int(labels[change["new"]])

    menu.observe(on_class, names="value")
    box.observe(on_index, names="value")


def _digit_image(ipw, css_class, scale):
    image = ipw.Image(format="png", width=28 * scale, height=28 * scale)
    image.add_class(css_class)
    return image


def _labelled(ipw, widget, text):
    return ipw.VBox([ipw.HTML(f"<b>{text}</b>"), widget], layout=ipw.Layout(align_items="center"))


# --- The three widgets ---------------------------------------------------------------------------


class _Widget:
    """Shows ``self.widget`` when a notebook cell ends with the object."""

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class LatentExplorer(_Widget):
    """Sliders choose a latent code; the decoded digit updates live beside a marker on the scatter of encoded digits.

    ``x``/``y`` are the digits to scatter (default: the bundled test sample). One slider per latent
    dimension; the scatter shows the first two.
    """

    def __init__(self, vae, x=None, y=None, scale=6, limit=None, step=0.05):
        ipw = _ipywidgets()
        if x is None:
            x, y = default_test_digits()
        x, y = _check_data(x, y)
        self.vae, self.scale = vae, scale
        self.codes = encode(vae, x)
        limit = slider_limit(self.codes) if limit is None else float(limit)
        self.canvas = ScatterCanvas(self.codes, y, limit)
        self.sliders = [ipw.FloatSlider(value=0.0, min=-limit, max=limit, step=step, description=f"z{i + 1}",
                                        continuous_update=True, readout_format=".2f", layout=ipw.Layout(width="420px"))
                        for i in range(latent_dim_of(vae))]
        self.digit = _digit_image(ipw, "vae-explorer-digit", scale)
        self.scatter = ipw.Image(format="png")
        self.scatter.add_class("vae-explorer-scatter")
        self.readout = ipw.HTML()
        for slider in self.sliders:
            slider.observe(self.update, names="value")
        self.update()
        self.widget = ipw.VBox([ipw.HBox([self.scatter, _labelled(ipw, ipw.VBox([self.digit, self.readout]), "decoded z")]),
                                ipw.VBox(self.sliders)])
        self.widget.add_class("vae-latent-explorer")

    @property
    def code(self):
        """The code the sliders point at."""
        return np.array([slider.value for slider in self.sliders], dtype=np.float32)

    def update(self, change=None):
        """Decode the current code and move the marker."""
        code = self.code
        self.digit.value = png_bytes(decode(self.vae, code), self.scale)
        self.scatter.value = self.canvas.png(code)
        self.readout.value = "z = (" + ", ".join(f"{v:+.2f}" for v in code) + ")"


class InterpolationExplorer(_Widget):
    """Walk from one digit's code to another's: lerp and slerp strips side by side, and a slider to scrub.

    Pick the two digits by index (or by class when labels ``y`` are given). The whole path is
    decoded in one batch whenever the end points or the number of steps change; scrubbing only
    picks from it.
    """

    METHODS = ("lerp", "slerp")

    def __init__(self, vae, x, y=None, start=0, end=1, n_steps=9, scale=5, strip_scale=2):
        ipw = _ipywidgets()
        self.vae, self.scale, self.strip_scale = vae, scale, strip_scale
        self.x, self.y = _check_data(x, y)
        self.start = _index_box(ipw, start, len(x), "from #")
        self.end = _index_box(ipw, end, len(x), "to #")
        self.steps = ipw.IntSlider(value=n_steps, min=3, max=20, description="steps", continuous_update=False)
        self.position = ipw.IntSlider(value=0, min=0, max=n_steps - 1, description="position",
                                      continuous_update=True, layout=ipw.Layout(width="420px"))
        self.first, self.lerp, self.slerp, self.last = (
            _digit_image(ipw, f"vae-interp-{name}", scale) for name in ("first", "lerp", "slerp", "last"))
        self.strip = ipw.Image(format="png")
        self.strip.add_class("vae-interp-strip")
        for control in (self.start, self.end, self.steps):
            control.observe(self.recompute, names="value")
        self.position.observe(self.update, names="value")
        pickers, self.start_class, self.end_class = [self.start, self.end], None, None
        if self.y is not None:
            self.start_class = _class_menu(ipw, self.y, self.y[start], "from class")
            self.end_class = _class_menu(ipw, self.y, self.y[end], "to class")
            _link_class_and_index(self.start_class, self.start, self.y)
            _link_class_and_index(self.end_class, self.end, self.y, other_box=self.start)
            pickers = [ipw.VBox([self.start_class, self.start]), ipw.VBox([self.end_class, self.end])]
        self.recompute()
        row = ipw.HBox([_labelled(ipw, self.first, "from"), _labelled(ipw, self.lerp, "lerp"),
                        _labelled(ipw, self.slerp, "slerp"), _labelled(ipw, self.last, "to")])
        self.widget = ipw.VBox([ipw.HBox([*pickers, self.steps]), row,
                                _labelled(ipw, self.strip, "top: lerp, bottom: slerp"), self.position])
        self.widget.add_class("vae-interpolation-explorer")

    def recompute(self, change=None):
        """Encode the two digits and decode both paths between them."""
        z0, z1 = encode(self.vae, self.x[[self.start.value, self.end.value]])
        n = self.steps.value
        codes = np.concatenate([interpolate(z0, z1, n, method) for method in self.METHODS])
        images = decode(self.vae, codes)
        self.codes = codes.reshape(len(self.METHODS), n, -1)
        self.images = images.reshape(len(self.METHODS), n, *images.shape[1:])
        self._strip = image_strip(self.images)
        self.first.value = png_bytes(self.x[self.start.value], self.scale)
        self.last.value = png_bytes(self.x[self.end.value], self.scale)
        self.position.value = min(self.position.value, n - 1)
        self.position.max = n - 1
        self.update()

    def update(self, change=None):
        """Show the step under the position slider."""
        k = self.position.value
        self.lerp.value = png_bytes(self.images[0, k], self.scale)
        self.slerp.value = png_bytes(self.images[1, k], self.scale)
        self.strip.value = png_bytes(highlight_column(self._strip, k, len(self.METHODS), self.steps.value),
                                     self.strip_scale)


#: Concepts measured on the images rather than given by the labels: name -> scoring function.
ATTRIBUTES = {"thicker strokes (ink)": ink_amount, "lean to the right (slant)": slant}
CLASS_CONCEPT = "change class"


def attribute_vectors(codes, x, y=None, fraction=0.25):
    """The vector of each measured attribute in ``ATTRIBUTES``, found within classes when ``y`` is given."""
    return {name: attribute_concept(codes, score(x), labels=y, fraction=fraction)
            for name, score in ATTRIBUTES.items()}


class ConceptEditor(_Widget):
    """Add a concept vector to a digit's code with a strength slider and watch the edit.

    Concepts: the class change "from ``source`` to ``target``" (the difference of class means)
    and the attributes in ``ATTRIBUTES`` (stroke thickness, slant), each found from the data.
    ``index`` picks the digit to edit (default: the first digit of class ``source``).
    """

    def __init__(self, vae, x, y, index=None, source=1, target=7, strength=1.0, scale=6, strengths=(-2.0, 2.0)):
        ipw = _ipywidgets()
        x, y = _check_data(x, y)
        if y is None:
            raise ValueError("ConceptEditor needs labels y: class concepts are differences of class means")
        self.vae, self.x, self.y, self.scale, self.strengths = vae, x, y, scale, strengths
        self.codes = encode(vae, x)
        class_concept(self.codes, y, source, target)  # fails early, naming the problem, for absent classes
        self.attributes = attribute_vectors(self.codes, x, y)
        self.index = _index_box(ipw, _first_of(y, source) if index is None else index, len(x), "digit #")
        self.concept = ipw.Dropdown(options=[CLASS_CONCEPT, *ATTRIBUTES], value=CLASS_CONCEPT,
                                    description="concept", layout=ipw.Layout(width="300px"))
        self.source = _class_menu(ipw, y, source, "from class")
        self.target = _class_menu(ipw, y, target, "to class")
        self.strength = ipw.FloatSlider(value=strength, min=strengths[0], max=strengths[1], step=0.05,
                                        description="strength", continuous_update=True, readout_format=".2f",
                                        layout=ipw.Layout(width="420px"))
        self.original = _digit_image(ipw, "vae-concept-original", scale)
        self.edited = _digit_image(ipw, "vae-concept-edited", scale)
        self.strip = ipw.Image(format="png")
        self.readout = ipw.HTML()
        for control in (self.index, self.concept, self.source, self.target):
            control.observe(self.recompute, names="value")
        self.strength.observe(self.update, names="value")
        self.recompute()
        pictures = ipw.HBox([_labelled(ipw, self.original, "original"), _labelled(ipw, self.edited, "edited")])
        self.widget = ipw.VBox([ipw.HBox([self.index, self.concept]), ipw.HBox([self.source, self.target]), pictures,
                                self.strength, self.readout,
                                _labelled(ipw, self.strip, f"strength from {strengths[0]:+g} to {strengths[1]:+g}")])
        self.widget.add_class("vae-concept-editor")

    def recompute(self, change=None):
        """Find the chosen concept's vector and redraw the ladder of strengths for the chosen digit."""
        is_class = self.concept.value == CLASS_CONCEPT
        self.vector = (class_concept(self.codes, self.y, self.source.value, self.target.value) if is_class
                       else self.attributes[self.concept.value])
        ladder = apply_concept(self.codes[self.index.value], self.vector, np.linspace(*self.strengths, 9))
        self.strip.value = png_bytes(image_strip(decode(self.vae, ladder)[np.newaxis]), 2)
        self.original.value = png_bytes(self.x[self.index.value], self.scale)
        self.source.layout.display = self.target.layout.display = None if is_class else "none"
        self.update()

    def update(self, change=None):
        """Decode the digit's code moved by ``strength`` along the vector."""
        edited = apply_concept(self.codes[self.index.value], self.vector, self.strength.value)
        self.edited.value = png_bytes(decode(self.vae, edited), self.scale)
        self.readout.value = f"|vector| = {np.linalg.norm(self.vector):.2f}, strength {self.strength.value:+.2f}"


# --- Charts drawn with Pillow --------------------------------------------------------------------

#: Colours of the curves (matplotlib's C0, C1 and C2; black for the validation -ELBO).
CURVE_COLORS = {"loss": (31, 119, 180), "reconstruction_loss": (255, 127, 14), "kl_loss": (44, 160, 44),
                "val_elbo": (0, 0, 0)}
CURVE_NAMES = {"loss": "loss", "reconstruction_loss": "reconstruction", "kl_loss": "KL", "val_elbo": "-val ELBO"}
AXIS_COLOR = (110, 110, 110)
BAR_COLOR, BAR_HIGHLIGHT = (31, 119, 180), (255, 127, 14)
CHART_SIZE = (380, 220)
CHART_MARGINS = (50, 22, 12, 32)  # left, top, right, bottom: room for tick labels, title and axis label


def _font(size=11):
    """matplotlib's DejaVu Sans at ``size`` pixels (matplotlib is a dependency already; Pillow's own default font
    cannot be anchored before Pillow 10.1)."""
    import os

    import matplotlib
    from PIL import ImageFont

    key = ("font", size)
    if key not in _FONTS:
        path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
        _FONTS[key] = ImageFont.truetype(path, size)
    return _FONTS[key]


_FONTS = {}


def nice_ticks(low, high, count=4):
    """Round values inside [low, high] for axis ticks, 1, 2 or 5 times a power of ten apart: the closest spacing
    that leaves at most ``count + 1`` intervals."""
    if not high > low:
        return np.array([low], dtype=np.float64)
    power = 10.0 ** np.floor(np.log10((high - low) / count))
    step = power * next(m for m in (1, 2, 5, 10) if (high - low) / (m * power) <= count + 1)
    return np.arange(np.ceil(low / step) * step, high + 1e-9 * step, step)


def tick_label(value, ticks):
    """``value`` with as many decimals as the spacing of ``ticks`` needs ("0.5", "120"), never "-0"."""
    step = np.min(np.diff(ticks)) if len(ticks) > 1 else 1.0
    decimals = max(0, int(-np.floor(np.log10(step) + 1e-9)))
    return f"{round(float(value), decimals) + 0.0:.{decimals}f}"


def value_range(values, pad=0.06):
    """(low, high) spanning the finite ``values`` plus ``pad`` of their span on each side; (0, 1) without any."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-6 * max(1.0, abs(high)):
        return low - 0.5, high + 0.5
    return low - pad * (high - low), high + pad * (high - low)


class Chart:
    """A white RGB picture with a framed plot area, ticks, a title and a legend; maps data to pixels; Pillow draws.

    Curves, points and bars are drawn in data coordinates. Values outside ``y_range`` are drawn on the
    frame's edge, so a curve that leaves the chart is still seen to leave it. ``x_ticks`` is
    ``(positions, labels)`` (default: round numbers).
    """

    def __init__(self, x_range, y_range, title, x_label, size=CHART_SIZE, x_ticks=None):
        from PIL import Image, ImageDraw

        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        left, top, right, bottom = CHART_MARGINS
        self.box = (left, top, size[0] - right, size[1] - bottom)
        self.x_range, self.y_range = x_range, y_range
        self._legend_right = self.box[2]
        self._frame(title, x_label, x_ticks)

    def to_pixels(self, x, y):
        """Pixel coordinates (columns, rows) of data points, clamped to the plot area."""
        x0, y0, x1, y1 = self.box
        (xa, xb), (ya, yb) = self.x_range, self.y_range
        columns = x0 + (np.asarray(x, dtype=np.float64) - xa) / (xb - xa) * (x1 - x0)
        rows = y1 - (np.asarray(y, dtype=np.float64) - ya) / (yb - ya) * (y1 - y0)
        return np.clip(columns, x0, x1), np.clip(rows, y0, y1)

    def _frame(self, title, x_label, x_ticks):
        x0, y0, x1, y1 = self.box
        font, draw = _font(), self.draw
        y_ticks = nice_ticks(*self.y_range)
        for value in y_ticks:
            _, row = self.to_pixels(self.x_range[0], value)
            draw.line([(x0 - 3, row), (x0, row)], fill=AXIS_COLOR)
            draw.text((x0 - 5, row), tick_label(value, y_ticks), fill="black", font=font, anchor="rm")
        if x_ticks is None:
            values = nice_ticks(*self.x_range)
            x_ticks = (values, [tick_label(v, values) for v in values])
        for value, label in zip(*x_ticks):
            column, _ = self.to_pixels(value, self.y_range[0])
            draw.line([(column, y1), (column, y1 + 3)], fill=AXIS_COLOR)
            draw.text((column, y1 + 4), label, fill="black", font=font, anchor="mt")
        draw.rectangle(self.box, outline=AXIS_COLOR)
        draw.text((x0, 4), title, fill="black", font=font, anchor="lt")
        draw.text(((x0 + x1) / 2, self.image.height - 2), x_label, fill="black", font=font, anchor="mb")

    def legend(self, name, color):
        """Add ``name`` in ``color`` to the legend, right-aligned in the top margin, right to left."""
        self.draw.text((self._legend_right, 4), name, fill=color, font=_font(), anchor="rt")
        self._legend_right -= self.draw.textlength(name, font=_font()) + 10

    def line(self, x, y, color, width=2):
        """A polyline through the finite points (a dot when there is only one)."""
        columns, rows = self.to_pixels(x, y)
        keep = np.isfinite(columns) & np.isfinite(rows)
        points = list(zip(columns[keep].tolist(), rows[keep].tolist()))
        if len(points) == 1:
            self.dots(np.asarray(x)[keep], np.asarray(y)[keep], color, radius=width)
        elif points:
            self.draw.line(points, fill=color, width=width, joint="curve")

    def dots(self, x, y, color, radius=3):
        """A filled circle at each finite point."""
        columns, rows = self.to_pixels(x, y)
        for column, row in zip(columns.tolist(), rows.tolist()):
            if np.isfinite(column) and np.isfinite(row):
                self.draw.ellipse([column - radius, row - radius, column + radius, row + radius], fill=color)

    def bars(self, heights, colors, width=0.7):
        """One bar per value at x = 0, 1, 2, ..., rising from 0."""
        for index, (height, color) in enumerate(zip(heights, colors)):
            if not np.isfinite(height):
                continue
            (left, right), (top, bottom) = self.to_pixels([index - width / 2, index + width / 2], [height, 0.0])
            self.draw.rectangle([left, min(top, bottom), max(right, left + 1), max(top, bottom)], fill=color)

    def pixels(self):
        """The picture as an RGB uint8 array (h, w, 3)."""
        return np.asarray(self.image)


def curves_chart(history, epochs, keys, title):
    """Per-window curves of ``keys`` against the training step, with each epoch's mean as a dot on the step it ended.

    ``history`` and ``epochs`` are ``LiveTraining.history`` and ``LiveTraining.epochs``. The first
    window is left out of the y range once there are four or more (it holds the untrained start,
    which would flatten the rest); "val_elbo" is drawn as -ELBO, comparable with the loss.
    """
    signs = {key: -1.0 if key == "val_elbo" else 1.0 for key in keys}
    windows = {key: np.asarray(history[key], dtype=np.float64) for key in keys if key in history}
    points = {key: signs[key] * np.asarray(epochs[key], dtype=np.float64) for key in keys if key in epochs}
    skip = 1 if len(history["step"]) >= 4 else 0
    shown = [v[skip:] for v in windows.values()] + list(points.values())
    y_range = value_range(np.concatenate(shown) if shown else [])
    last = max([1, *history["step"], *epochs["step"]])
    chart = Chart((0, last), y_range, title, "training step")
    for key in keys:
        if key in windows:
            chart.line(history["step"], windows[key], CURVE_COLORS[key])
        if key in points:
            chart.dots(epochs["step"], points[key], CURVE_COLORS[key], radius=4 if key == "val_elbo" else 3)
        if len(windows.get(key, ())) or np.isfinite(points.get(key, [np.nan])).any():
            chart.legend(CURVE_NAMES[key], CURVE_COLORS[key])
    return chart.pixels()


def kl_bars_chart(kl_per_dim, highlight=()):
    """Bar chart of the KL of each latent dimension (nats); the dimensions in ``highlight`` in another colour
    (named in the legend: the ones the manifold spans)."""
    kl = np.asarray(kl_per_dim, dtype=np.float64)
    d = len(kl)
    every = max(1, int(np.ceil(d / 16)))
    labels = np.arange(0, d, every)
    chart = Chart((-0.6, d - 0.4), (0.0, max(float(np.max(kl, initial=0.0)) * 1.1, 0.1)),
                  "KL per latent dimension (nats)", "latent dimension",
                  x_ticks=(labels, [f"z{j + 1}" for j in labels]))
    chart.bars(kl, [BAR_HIGHLIGHT if j in highlight else BAR_COLOR for j in range(d)])
    if len(highlight):
        chart.legend("in the grid", BAR_HIGHLIGHT)
    return chart.pixels()


# --- Live training view --------------------------------------------------------------------------

#: The logged curves the live view follows (nats per image; "loss" is the objective the optimizer sees).
CURVES = ("loss", "reconstruction_loss", "kl_loss")
LOSS_CURVES = ("loss", "reconstruction_loss", "val_elbo")  # the left chart; the KL, much smaller, has its own
PROBE_DIGITS = 200  # default probe: the first 200 bundled test digits


def kl_per_dimension(z_mean, log_var):
    """KL(q(z_j|x) || N(0, 1)) of each latent dimension j in nats, averaged over a batch: (latent_dim,) float64.

    ``log_var`` is the posterior's true log-variance (``losses.posterior_log_var``); summed over j
    this is the mean of the KL the loss layer reports.
    """
    z_mean, log_var = np.asarray(z_mean, np.float64), np.asarray(log_var, np.float64)
    return 0.5 * np.mean(np.exp(log_var) + z_mean ** 2 - 1.0 - log_var, axis=0)


def _check_vae(vae):
    """``vae`` if it is a plain VAE: an encoder of images alone and a decoder (a conditional VAE's need labels too)."""
    if not (hasattr(vae, "encoder") and hasattr(vae, "decoder")):
        raise TypeError("vae must be a VAE with an .encoder and a .decoder (models.build_vae), "
                        f"got {type(vae).__name__}")
    if len(getattr(vae.encoder, "inputs", None) or ()) != 1:
        raise TypeError(f"vae must be a plain VAE whose encoder reads images alone; this {type(vae).__name__}'s "
                        "encoder also needs labels (a conditional VAE), which the live view does not follow")
    return vae


def _check_dims(dims, latent_dim):
    """None (automatic) or two different latent dimensions, as a tuple of ints."""
    if dims is None:
        return None
    dims = tuple(dims) if np.ndim(dims) == 1 else ()
    if (len(dims) != 2 or dims[0] == dims[1]
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 0 <= d < latent_dim
                       for d in dims)):
        raise ValueError(f"dims must be two different latent dimensions in [0, {latent_dim - 1}] (x, y) or None, "
                         f"got {dims!r}")
    return tuple(int(d) for d in dims)


class LiveTraining(_Widget, keras.callbacks.Callback):
    """A Keras callback that shows training as it happens: loss curves, KL per latent dimension, the decoded manifold.

    Pass it to ``vae.fit(..., callbacks=[live])`` or ``training.train_vae(..., callbacks=[live])``
    after showing it (a cell that ends with ``live``). Every ``every`` training steps, and at the end
    of each epoch, it redraws:

    * the curves of the loss, the reconstruction term and the KL (nats per image), each point the
      mean over the steps since the previous point, with each epoch's mean as a dot (and the
      validation -ELBO as a black dot when ``train_vae`` scores one);
    * the KL of each latent dimension on ``x_probe`` (fixed digits, default: the first 200 bundled
      test digits): the dimensions the model really uses, and when the others collapse;
    * the decoded ``manifold_n`` x ``manifold_n`` grid over two latent dimensions: ``dims``, or for a
      2-D space z1 and z2, for a larger one the two dimensions with the most KL (the others at 0).
      A 1-D space has no such grid: a note says so.

    Steps are counted from the optimizer's step counter, so the cadence is right however Keras
    groups them. ``train_vae`` runs 32 steps per call (``STEPS_PER_EXECUTION``) and calls the batch
    hook once per group: ``grouped_steps_ok`` keeps it doing so (a per-batch hook would otherwise make
    it run one step per call), and an update then happens at the end of the first group that reaches
    each multiple of ``every``.

    It keeps what it drew: ``history`` (one entry per update: ``step``, ``epoch``, the window means of
    ``CURVES``, ``kl_per_dim``), ``epochs`` (one per epoch: ``epoch``, ``step``, the epoch means,
    ``val_elbo``), ``kl_per_dim`` and ``manifold`` (the latest), and ``seconds`` spent in its hooks,
    beside ``train_seconds`` of training (``overhead`` is their ratio, shown under the charts). A
    second ``fit`` with the same view goes on where the first stopped. Without a notebook front end it
    works all the same, its pictures are just not seen. (With ``x_val``, ``train_vae`` restores the
    best epoch's weights after training; the view shows the last epoch's.)

    In a notebook, one cell shows it and the next trains::

        live = widgets.LiveTraining(vae, x_val[:200], every=100)
        live
        # next cell
        training.train_vae(vae, x_train, epochs=2, batch_size=64, callbacks=[live])

    Cost, measured on 2 CPU cores shared with two other jobs (load 5 to 7): one update (KL of 200
    probe digits, a 12 x 12 manifold, three charts drawn with Pillow) takes about as long as 0.8
    training steps at batch 64. Two VAEs of the same seed trained side by side with ``train_vae`` on
    full MNIST at batch 64, in alternating blocks of 100 steps (500 steps each, blocks ordered
    A B B A so that the changing load hits both alike), with ``every=50``: the view's hooks took
    5.4 s of 321 s of training, **1.7%**, and the wall-clock totals differed by +1.7% (286.9 s
    without, 291.7 s with). The default ``every=100`` halves that. The share grows as the steps get
    cheaper (small batches): the readout shows it; raise ``every`` if it passes a few per cent.
    """

    grouped_steps_ok = True

    def __init__(self, vae, x_probe=None, every=100, manifold_n=12, dims=None):
        ipw = _ipywidgets()
        super().__init__()
        self.vae = _check_vae(vae)
        self.every = check_count(every, "every")
        self.manifold_n = check_count(manifold_n, "manifold_n", minimum=2)
        self.latent_dim = latent_dim_of(vae)
        self.dims = _check_dims(dims, self.latent_dim)
        if x_probe is None:
            x_probe = default_test_digits()[0][:PROBE_DIGITS]
        self.x_probe = check_images(x_probe, "x_probe", tuple(vae.encoder.input_shape[1:]))
        self._encode = inference_function(vae.encoder)  # compiled: a third faster than eager
        self._sampling = getattr(getattr(vae, "preset", None), "sampling", "standard")
        self.history = {key: [] for key in ("step", "epoch", *CURVES, "kl_per_dim")}
        self.epochs = {key: [] for key in ("epoch", "step", *CURVES, "val_elbo")}
        self.step, self.seconds, self.train_seconds = 0, 0.0, 0.0
        self.kl_per_dim = self.manifold = self.manifold_dims = None
        self._epoch, self._epoch_steps, self._window, self._fit_started = 0, 0, (0, {}), None
        self.losses, self.kl_curve, self.kl_bars, self.manifold_image = (
            _picture(ipw, f"vae-live-{name}") for name in ("losses", "kl", "kl-dims", "manifold"))
        self.manifold_title = ipw.HTML()
        self.readout = ipw.HTML()
        self.readout.add_class("vae-live-readout")
        self.refresh()
        self.widget = ipw.VBox([ipw.HBox([self.losses, self.kl_curve]),
                                ipw.HBox([self.kl_bars, ipw.VBox([self.manifold_title, self.manifold_image],
                                                                 layout=ipw.Layout(align_items="center"))]),
                                self.readout])
        self.widget.add_class("vae-live-training")

    # -- what it measures --

    def probe_kl(self):
        """KL per latent dimension (nats) of the model as it is now, averaged over the probe digits."""
        z_mean, z_log_var = self._encode(self.x_probe)
        return kl_per_dimension(z_mean, keras.ops.convert_to_numpy(posterior_log_var(z_log_var, self._sampling)))

    @property
    def overhead(self):
        """Time spent in this callback's hooks as a fraction of the time ``fit`` ran (0 before any training)."""
        running = 0.0 if self._fit_started is None else time.perf_counter() - self._fit_started
        total = self.train_seconds + running
        return self.seconds / total if total > 0 else 0.0

    def _chosen_dims(self):
        """The two dimensions the manifold spans (see the class docstring), or None for a 1-D space."""
        if self.dims is not None:
            return self.dims
        if self.latent_dim < 2:
            return None
        if self.latent_dim == 2:
            return (0, 1)
        first, second = np.argsort(-self.kl_per_dim, kind="stable")[:2]
        return (int(first), int(second))

    # -- Keras hooks --

    def on_train_begin(self, logs=None):
        if self.model is not self.vae:
            raise ValueError("this LiveTraining view was made for another model: make one for the model you fit")
        self._iterations = self._optimizer_steps()
        self._fit_started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._epoch_steps, self._window = epoch, 0, (0, {})

    def on_train_batch_end(self, batch, logs=None):
        """Count the steps really run and update at each multiple of ``every`` they pass.

        Under grouped steps ``batch`` is the group's last index, which passes the epoch's end in its
        last group; the optimizer's counter is exact.
        """
        started = time.perf_counter()
        before = self.step
        self._count_steps()
        if self.step // self.every > before // self.every:
            self._update(logs)
        self.seconds += time.perf_counter() - started

    def on_epoch_end(self, epoch, logs=None):
        """Record the epoch's means; update first if steps ran since the last update (every step is in one window)."""
        started = time.perf_counter()
        self._count_steps()
        if self._epoch_steps > self._window[0]:
            self._update(logs)
        self._record_epoch(epoch, logs or {})
        self._draw_curves()
        self._draw_readout()
        self.seconds += time.perf_counter() - started

    def on_train_end(self, logs=None):
        self.train_seconds += time.perf_counter() - self._fit_started
        self._fit_started = None
        self._draw_readout()

    # -- bookkeeping --

    def _optimizer_steps(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _count_steps(self):
        now = self._optimizer_steps()
        new = max(0, now - self._iterations)
        self._iterations = now
        self.step += new
        self._epoch_steps += new

    def _window_means(self, logs):
        """Mean of each curve over the steps since the last window, from the epoch's running means in ``logs``.

        Keras logs the mean since the epoch began; the sum over the epoch's first t steps is that
        mean times t, so a window's mean is a difference of two sums over its steps (exact when the
        batches have the same size; the epoch's last, smaller batch counts as a full one).
        """
        done, sums_before = self._window
        sums = {key: float(logs[key]) * self._epoch_steps for key in CURVES if key in (logs or {})}
        means = {key: (sums[key] - sums_before.get(key, 0.0)) / (self._epoch_steps - done) for key in sums}
        self._window = (self._epoch_steps, sums)
        return means

    def _update(self, logs):
        """Record the window since the last update and the model's KL per dimension now, then redraw."""
        means = self._window_means(logs)
        self._measure()
        for key, value in (("step", self.step), ("epoch", self._epoch + 1), ("kl_per_dim", self.kl_per_dim)):
            self.history[key].append(value)
        for key in CURVES:
            self.history[key].append(means.get(key, np.nan))
        self._draw_all()

    def _record_epoch(self, epoch, logs):
        self.epochs["epoch"].append(epoch + 1)
        self.epochs["step"].append(self.step)
        for key in (*CURVES, "val_elbo"):
            self.epochs[key].append(float(logs.get(key, np.nan)))

    # -- drawing --

    def refresh(self):
        """Measure and redraw everything from the model as it is now (also before training; records nothing)."""
        self._measure()
        self._draw_all()

    def _measure(self):
        """The KL per dimension on the probe digits, and from it the dimensions the manifold spans."""
        self.kl_per_dim = self.probe_kl()
        self.manifold_dims = self._chosen_dims()

    def _draw_all(self):
        self._draw_curves()
        self._draw_kl_bars()
        self._draw_manifold()
        self._draw_readout()

    def _draw_curves(self):
        self.losses.value = png_bytes(curves_chart(self.history, self.epochs, LOSS_CURVES, "loss (nats per image)"))
        self.kl_curve.value = png_bytes(curves_chart(self.history, self.epochs, ("kl_loss",), "KL (nats per image)"))

    def _draw_kl_bars(self):
        """The bars; the manifold's two dimensions are marked when the space has more than two."""
        marked = self.manifold_dims if self.manifold_dims and self.latent_dim > 2 else ()
        self.kl_bars.value = png_bytes(kl_bars_chart(self.kl_per_dim, marked))

    def _draw_manifold(self):
        """Decode the grid over ``manifold_dims`` in one batch (the other dimensions at 0)."""
        dims = self.manifold_dims
        if dims is None:
            self.manifold_title.value = "<b>a 1-D latent space has no 2-D manifold to draw</b>"
            self.manifold_image.layout.display = "none"
            return
        codes = manifold_codes(self.manifold_n, latent_dim=self.latent_dim, dims=dims)
        self.manifold = tile_images(decode(self.vae, codes), self.manifold_n)
        self.manifold_image.value = png_bytes(self.manifold)
        why = " (the two with most KL)" if self.dims is None and self.latent_dim > 2 else ""
        self.manifold_title.value = f"<b>decoded grid: z{dims[0] + 1} across, z{dims[1] + 1} up{why}</b>"

    def _draw_readout(self):
        text = f"step {self.step:,}"
        if self.history["step"]:
            last = {key: self.history[key][-1] for key in CURVES}
            text += (f", epoch {self.history['epoch'][-1]} | last window: loss {last['loss']:.2f}, reconstruction "
                     f"{last['reconstruction_loss']:.2f}, KL {last['kl_loss']:.2f} nats")
        text += f" | updates every {self.every} steps; this view took {100 * self.overhead:.1f}% of the training time"
        self.readout.value = text


def _picture(ipw, css_class):
    image = ipw.Image(format="png")
    image.add_class(css_class)
    return image


# --- Conditional digits --------------------------------------------------------------------------


class DigitDesigner(_Widget):
    """Pick a digit class and move the latent sliders: a conditional VAE draws that digit in that style.

    ``cvae`` is a conditional VAE (``vae_helpers.conditional``). The class buttons say *which* digit
    to draw; the sliders choose the code z, which then only has to say *how* it is written (slant,
    stroke, width). Below, the strip shows every class decoded from the same z, the chosen one
    framed: one handwriting, ten digits. All ten are decoded in one batch whenever z changes;
    choosing another class only picks from them.

    ``widgets.DigitDesigner(pretrained.load_pretrained(2, conditional=True), label=3)`` in a cell
    shows it; ``z`` sets the sliders' start (default: the prior's centre), ``limit`` their range.
    """

    def __init__(self, cvae, label=0, z=None, scale=6, strip_scale=2, limit=3.0, step=0.05):
        from vae_helpers import conditional

        ipw = _ipywidgets()
        if not isinstance(cvae, conditional.ConditionalVAE):
            raise TypeError("cvae must be a conditional VAE (conditional.build_conditional_vae), "
                            f"got {type(cvae).__name__}")
        self.cvae, self._decode = cvae, conditional.decode
        label = int(conditional.check_labels(label, cvae.n_classes, name="label")[0])
        z = np.zeros(cvae.latent_dim, np.float32) if z is None else check_codes(z, cvae.latent_dim, "z")[0][0]
        self.scale, self.strip_scale = check_count(scale, "scale"), check_count(strip_scale, "strip_scale")
        if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or not 0 < limit < np.inf:
            raise ValueError(f"limit must be a positive number (the sliders' range is -limit to limit), got {limit!r}")
        if np.max(np.abs(z)) > limit:
            raise ValueError(f"z must lie within the sliders' range [-{limit:g}, {limit:g}], got {z.tolist()}; "
                             "raise limit")
        self.label = ipw.ToggleButtons(options=list(range(cvae.n_classes)), value=label, description="digit",
                                       style={"button_width": "32px"})
        self.sliders = [ipw.FloatSlider(value=float(value), min=-limit, max=limit, step=step, description=f"z{i + 1}",
                                        continuous_update=True, readout_format=".2f", layout=ipw.Layout(width="420px"))
                        for i, value in enumerate(z)]
        self.digit = _digit_image(ipw, "vae-designer-digit", self.scale)
        self.strip = _picture(ipw, "vae-designer-strip")
        self.readout = ipw.HTML()
        for slider in self.sliders:
            slider.observe(self.recompute, names="value")
        self.label.observe(self.update, names="value")
        self.recompute()
        self.widget = ipw.VBox([self.label, ipw.HBox([_labelled(ipw, self.digit, "decoded"),
                                                      ipw.VBox(self.sliders + [self.readout])]),
                                _labelled(ipw, self.strip, "the same z with every label")])
        self.widget.add_class("vae-digit-designer")

    @property
    def code(self):
        """The code the sliders point at."""
        return np.array([slider.value for slider in self.sliders], dtype=np.float32)

    def recompute(self, change=None):
        """Decode the sliders' code with every class, in one batch."""
        self.images = self._decode(self.cvae, self.code, np.arange(self.cvae.n_classes))
        self._strip = image_strip(self.images[np.newaxis])
        self.update()

    def update(self, change=None):
        """Show the chosen class's digit and frame it in the strip."""
        k = self.label.value
        self.digit.value = png_bytes(self.images[k], self.scale)
        self.strip.value = png_bytes(highlight_column(self._strip, k, 1, self.cvae.n_classes), self.strip_scale)
        self.readout.value = "z = (" + ", ".join(f"{v:+.2f}" for v in self.code) + f"), digit {k}"
