"""Interactive latent-space widgets: an explorer, an interpolation scrubber and a concept editor.

They work in JupyterLab, in classic Notebook and outside notebooks (tests set a slider's
``value`` and read the images back). Pictures are
``ipywidgets.Image`` PNG bytes made with Pillow: one decode through the compiled
``latent.decode`` plus a tiny PNG is a few milliseconds, where redrawing a matplotlib figure would
take ten times longer. The latent scatter is drawn once by matplotlib and only the marker is
stamped onto a copy of its pixels on each move.

Each widget is a small class: its controls and pictures are attributes, its ``widget`` is the
ipywidgets container, and a notebook cell that ends with the object displays it.
"""

import io

import numpy as np

from vae_helpers.latent import (
    apply_concept,
    attribute_concept,
    class_concept,
    decode,
    encode,
    ink_amount,
    interpolate,
    latent_dim_of,
    slant,
)
from vae_helpers.plotting import tile_images

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
