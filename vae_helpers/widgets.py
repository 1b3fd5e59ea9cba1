"""Interactive latent-space widgets: an explorer, an interpolation scrubber and a concept editor.

Each builder returns an ``ipywidgets`` container that works in JupyterLab, in classic Notebook and
outside notebooks (tests set a slider's ``value`` and read the images back). Pictures are
``ipywidgets.Image`` PNG bytes made with Pillow: one decode through the compiled
``latent.decode`` plus a tiny PNG is a few milliseconds, where redrawing a matplotlib figure would
take ten times longer. The latent scatter is drawn once by matplotlib and only the marker is
stamped onto a copy of its pixels on each move.

Every container has a ``parts`` attribute (a ``SimpleNamespace``) naming its controls, pictures
and ``update`` callback, so code and tests can drive it without walking ``children``.
"""

import io
from types import SimpleNamespace

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
    canvas = np.full((rows, h + gap, cols, w + gap), 255, dtype=np.uint8)
    canvas[:, :h, :, :w] = to_pixels(images.reshape(rows, cols, h, w).transpose(0, 2, 1, 3))
    canvas = canvas.reshape(rows * (h + gap), cols * (w + gap))[:-gap, :-gap]
    return np.repeat(canvas[..., np.newaxis], 3, axis=-1)


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
        for label in np.unique(labels):
            members = labels == label
            ax.text(np.median(x[members]), np.median(y[members]), str(label), fontsize=12,
                    ha="center", va="center", weight="bold",
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


def latent_explorer(vae, x=None, y=None, scale=6, limit=None, step=0.05):
    """Sliders choose a latent code; the decoded digit updates live beside a marker on the scatter of encoded digits.

    ``x``/``y`` are the digits to scatter (default: the bundled test sample). One slider per latent
    dimension; the scatter shows the first two.
    """
    ipw = _ipywidgets()
    if x is None:
        x, y = default_test_digits()
    x, y = _check_data(x, y)
    codes = encode(vae, x)
    limit = slider_limit(codes) if limit is None else float(limit)
    scatter = ScatterCanvas(codes, y, limit)
    sliders = [ipw.FloatSlider(value=0.0, min=-limit, max=limit, step=step, description=f"z{i + 1}",
                               continuous_update=True, readout_format=".2f",
                               layout=ipw.Layout(width="420px"))
               for i in range(latent_dim_of(vae))]
    digit = _digit_image(ipw, "vae-explorer-digit", scale)
    scatter_image = ipw.Image(format="png")
    scatter_image.add_class("vae-explorer-scatter")
    readout = ipw.HTML()

    def update(change=None):
        code = np.array([slider.value for slider in sliders], dtype=np.float32)
        digit.value = png_bytes(decode(vae, code), scale)
        scatter_image.value = scatter.png(code)
        readout.value = "z = (" + ", ".join(f"{v:+.2f}" for v in code) + ")"

    for slider in sliders:
        slider.observe(update, names="value")
    update()
    box = ipw.VBox([ipw.HBox([scatter_image, _labelled(ipw, ipw.VBox([digit, readout]), "decoded z")]),
                    ipw.VBox(sliders)])
    box.add_class("vae-latent-explorer")
    box.parts = SimpleNamespace(sliders=sliders, digit=digit, scatter=scatter_image, readout=readout,
                                update=update, codes=codes, canvas=scatter)
    return box


def interpolation_explorer(vae, x, y=None, start=0, end=1, n_steps=9, scale=5, strip_scale=2):
    """Walk from one digit's code to another's: lerp and slerp strips side by side, and a slider to scrub.

    Pick the two digits by index (or by class when labels ``y`` are given). The whole path is
    decoded in one batch whenever the end points or the number of steps change; scrubbing only
    picks from it.
    """
    ipw = _ipywidgets()
    x, y = _check_data(x, y)
    start_box = _index_box(ipw, start, len(x), "from #")
    end_box = _index_box(ipw, end, len(x), "to #")
    steps = ipw.IntSlider(value=n_steps, min=3, max=20, description="steps", continuous_update=False)
    position = ipw.IntSlider(value=0, min=0, max=n_steps - 1, description="position",
                             continuous_update=True, layout=ipw.Layout(width="420px"))
    pictures = {name: _digit_image(ipw, f"vae-interp-{name}", scale) for name in ("first", "lerp", "slerp", "last")}
    strip = ipw.Image(format="png")
    strip.add_class("vae-interp-strip")
    path = {}

    def recompute(change=None):
        z0, z1 = encode(vae, x[[start_box.value, end_box.value]])
        codes = np.concatenate([interpolate(z0, z1, steps.value, method) for method in ("lerp", "slerp")])
        images = decode(vae, codes)
        path["codes"] = codes.reshape(2, steps.value, -1)
        path["images"] = images.reshape(2, steps.value, *images.shape[1:])
        path["strip"] = image_strip(path["images"])
        pictures["first"].value = png_bytes(x[start_box.value], scale)
        pictures["last"].value = png_bytes(x[end_box.value], scale)
        position.value = min(position.value, steps.value - 1)
        position.max = steps.value - 1
        show()

    def show(change=None):
        k = position.value
        pictures["lerp"].value = png_bytes(path["images"][0, k], scale)
        pictures["slerp"].value = png_bytes(path["images"][1, k], scale)
        strip.value = png_bytes(highlight_column(path["strip"], k, 2, steps.value), strip_scale)

    for control in (start_box, end_box, steps):
        control.observe(recompute, names="value")
    position.observe(show, names="value")
    pickers, start_menu, end_menu = [start_box, end_box], None, None
    if y is not None:
        start_menu = _class_menu(ipw, y, y[start], "from class")
        end_menu = _class_menu(ipw, y, y[end], "to class")
        _link_class_and_index(start_menu, start_box, y)
        _link_class_and_index(end_menu, end_box, y, other_box=start_box)
        pickers = [ipw.VBox([start_menu, start_box]), ipw.VBox([end_menu, end_box])]
    recompute()
    row = ipw.HBox([_labelled(ipw, pictures["first"], "from"), _labelled(ipw, pictures["lerp"], "lerp"),
                    _labelled(ipw, pictures["slerp"], "slerp"), _labelled(ipw, pictures["last"], "to")])
    box = ipw.VBox([ipw.HBox([*pickers, steps]), row, _labelled(ipw, strip, "top: lerp, bottom: slerp"), position])
    box.add_class("vae-interpolation-explorer")
    box.parts = SimpleNamespace(start=start_box, end=end_box, start_class=start_menu, end_class=end_menu,
                                steps=steps, position=position, strip=strip, path=path, update=show,
                                recompute=recompute, **pictures)
    return box


#: Concepts measured on the images rather than given by the labels: name -> scoring function.
ATTRIBUTES = {"thicker strokes (ink)": ink_amount, "lean to the right (slant)": slant}
CLASS_CONCEPT = "change class"


def attribute_vectors(codes, x, y=None, fraction=0.25):
    """The vector of each measured attribute in ``ATTRIBUTES``, found within classes when ``y`` is given."""
    return {name: attribute_concept(codes, score(x), labels=y, fraction=fraction)
            for name, score in ATTRIBUTES.items()}


def concept_editor(vae, x, y, index=None, source=1, target=7, strength=1.0, scale=6, strengths=(-2.0, 2.0)):
    """Add a concept vector to a digit's code with a strength slider and watch the edit.

    Concepts: the class change "from ``source`` to ``target``" (the difference of class means)
    and the attributes in ``ATTRIBUTES`` (stroke thickness, slant), each found from the data.
    ``index`` picks the digit to edit (default: the first digit of class ``source``).
    """
    ipw = _ipywidgets()
    x, y = _check_data(x, y)
    if y is None:
        raise ValueError("concept_editor needs labels y: class concepts are differences of class means")
    codes = encode(vae, x)
    class_concept(codes, y, source, target)  # fails early, naming the problem, for absent classes
    attributes = attribute_vectors(codes, x, y)
    index = _first_of(y, source) if index is None else index
    index_box = _index_box(ipw, index, len(x), "digit #")
    concept = ipw.Dropdown(options=[CLASS_CONCEPT, *ATTRIBUTES], value=CLASS_CONCEPT, description="concept",
                           layout=ipw.Layout(width="300px"))
    source_menu = _class_menu(ipw, y, source, "from class")
    target_menu = _class_menu(ipw, y, target, "to class")
    low, high = strengths
    strength_slider = ipw.FloatSlider(value=strength, min=low, max=high, step=0.05, description="strength",
                                      continuous_update=True, readout_format=".2f",
                                      layout=ipw.Layout(width="420px"))
    original = _digit_image(ipw, "vae-concept-original", scale)
    edited = _digit_image(ipw, "vae-concept-edited", scale)
    strip = ipw.Image(format="png")
    readout = ipw.HTML()
    state = {}

    def current_vector():
        if concept.value == CLASS_CONCEPT:
            return class_concept(codes, y, source_menu.value, target_menu.value)
        return attributes[concept.value]

    def recompute(change=None):
        state["vector"] = current_vector()
        state["code"] = codes[index_box.value]
        ladder = apply_concept(state["code"], state["vector"], np.linspace(low, high, 9))
        strip.value = png_bytes(image_strip(decode(vae, ladder)[np.newaxis]), 2)
        original.value = png_bytes(x[index_box.value], scale)
        same_class = concept.value == CLASS_CONCEPT
        source_menu.layout.display = target_menu.layout.display = None if same_class else "none"
        update()

    def update(change=None):
        edited_code = apply_concept(state["code"], state["vector"], strength_slider.value)
        edited.value = png_bytes(decode(vae, edited_code), scale)
        readout.value = (f"|vector| = {np.linalg.norm(state['vector']):.2f}, "
                         f"strength {strength_slider.value:+.2f}")

    for control in (index_box, concept, source_menu, target_menu):
        control.observe(recompute, names="value")
    strength_slider.observe(update, names="value")
    recompute()
    pictures = ipw.HBox([_labelled(ipw, original, "original"), _labelled(ipw, edited, "edited")])
    box = ipw.VBox([ipw.HBox([index_box, concept]), ipw.HBox([source_menu, target_menu]), pictures,
                    strength_slider, readout,
                    _labelled(ipw, strip, f"strength from {low:+g} to {high:+g}")])
    box.add_class("vae-concept-editor")
    box.parts = SimpleNamespace(index=index_box, concept=concept, source=source_menu, target=target_menu,
                                strength=strength_slider, original=original, edited=edited, strip=strip,
                                readout=readout, attributes=attributes, codes=codes, state=state,
                                update=update, recompute=recompute)
    return box
