"""Widgets driven from Python: move a control, check the picture changed and matches a direct decode."""

import sys

import numpy as np
import pytest

pytest.importorskip("ipywidgets", reason="ipywidgets is not installed (pip install 'ipywidgets>=8')")

from vae_helpers import latent, widgets  # noqa: E402
from vae_helpers.models import build_vae  # noqa: E402
from vae_helpers.pretrained import load_pretrained  # noqa: E402


@pytest.fixture(scope="module")
def vae():
    return load_pretrained()


@pytest.fixture(scope="module")
def digits(sample):
    """200 test digits, 20 per class, in a fixed order."""
    _, (x_test, y_test) = sample
    keep = np.concatenate([np.flatnonzero(y_test == label)[:20] for label in range(10)])
    keep = np.random.default_rng(0).permutation(keep)
    return x_test[keep], y_test[keep]


def shown(image_widget):
    """The pixels an Image widget currently shows."""
    assert image_widget.format == "png"
    return widgets.read_png(image_widget.value)


def decoded_png_pixels(vae, code, scale):
    return widgets.to_pixels(latent.decode(vae, np.asarray(code, np.float32)), scale)


# --- pictures --------------------------------------------------------------------------------------


def test_png_round_trip_and_scaling():
    image = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28, 1)
    pixels = widgets.read_png(widgets.png_bytes(image, scale=3))
    assert pixels.shape == (84, 84) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[::3, ::3], np.round(image[..., 0] * 255))
    np.testing.assert_array_equal(pixels[1::3, 2::3], pixels[::3, ::3])


def test_image_strip_lays_out_rows_and_columns_and_highlights_one_column():
    images = np.zeros((2, 3, 28, 28, 1), np.float32)
    images[1, 2] = 1.0
    strip = widgets.image_strip(images, gap=2)
    assert strip.shape == (58, 88, 3)
    assert np.all(strip[30:, 60:] == 255) and np.all(strip[:28, :28] == 0)
    assert np.all(strip[28:30] == 255)  # the white gap between rows
    framed = widgets.highlight_column(strip, 1, rows=2, cols=3)
    changed = np.argwhere(np.any(framed != strip, axis=-1))
    assert changed[:, 1].min() == 30 and changed[:, 1].max() == 57  # only the middle column's border
    assert np.array_equal(framed[0, 30], widgets.HIGHLIGHT_COLOR)


def test_missing_ipywidgets_gives_a_clear_error(monkeypatch, vae):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match="pip install 'ipywidgets>=8'"):
        widgets.LatentExplorer(vae)


# --- latent explorer -------------------------------------------------------------------------------


def test_explorer_slider_move_redraws_the_decoded_digit(vae, digits):
    x, y = digits
    explorer = widgets.LatentExplorer(vae, x, y, scale=4)
    parts = explorer
    assert [s.description for s in parts.sliders] == ["z1", "z2"]
    before = shown(parts.digit)
    np.testing.assert_array_equal(before, decoded_png_pixels(vae, [0.0, 0.0], 4))
    scatter_before = parts.scatter.value

    parts.sliders[0].value = 1.5
    parts.sliders[1].value = -2.0
    after = shown(parts.digit)
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, decoded_png_pixels(vae, [1.5, -2.0], 4))
    assert parts.scatter.value != scatter_before
    assert "+1.50" in parts.readout.value and "-2.00" in parts.readout.value


def test_explorer_marker_sits_where_the_code_is(vae, digits):
    x, y = digits
    parts = widgets.LatentExplorer(vae, x, y)
    for code in ([0.0, 0.0], [2.0, 1.0], [-1.0, -2.5]):
        parts.sliders[0].value, parts.sliders[1].value = code
        row, column = parts.canvas.position(np.array(code))
        np.testing.assert_array_equal(shown(parts.scatter)[row, column + 5], widgets.MARKER_COLOR)
    left = parts.canvas.position(np.array([-1.0, 0.0]))
    right = parts.canvas.position(np.array([1.0, 0.0]))
    up = parts.canvas.position(np.array([0.0, 1.0]))
    assert right[1] > left[1] and right[0] == left[0]  # z1 grows to the right
    assert up[0] < left[0]  # z2 grows upwards


def test_explorer_slider_range_covers_every_encoded_digit(vae, digits):
    x, y = digits
    parts = widgets.LatentExplorer(vae, x, y)
    reach = np.abs(parts.codes).max()
    assert all(s.max >= reach and s.min <= -reach and s.max >= 3.0 for s in parts.sliders)
    assert widgets.slider_limit(np.array([[0.2, 4.2]])) == 4.5


def test_explorer_without_data_uses_the_bundled_test_digits(vae):
    parts = widgets.LatentExplorer(vae)
    assert parts.codes.shape == (1000, 2)


def test_explorer_has_one_slider_per_dimension_in_higher_dimensions(digits):
    x, y = digits
    vae3 = build_vae(latent_dim=3, seed=0, compile=False)
    parts = widgets.LatentExplorer(vae3, x[:50], y[:50])
    assert len(parts.sliders) == 3
    scatter_before = parts.scatter.value
    parts.sliders[2].value = 1.0  # the scatter shows z1 and z2 only, so the marker stays
    assert parts.scatter.value == scatter_before
    np.testing.assert_array_equal(shown(parts.digit), decoded_png_pixels(vae3, [0.0, 0.0, 1.0], 6))


def test_explorer_in_one_dimension_draws_a_line_marker(digits):
    x, y = digits
    vae1 = build_vae(latent_dim=1, seed=0, compile=False)
    parts = widgets.LatentExplorer(vae1, x[:40], y[:40])
    assert len(parts.sliders) == 1
    parts.sliders[0].value = 1.0
    column = parts.canvas.position(np.array([1.0]))[1]
    marker_column = shown(parts.scatter)[:, column]
    assert np.all(marker_column == widgets.MARKER_COLOR)  # a full-height line at z1 = 1
    np.testing.assert_array_equal(shown(parts.digit), decoded_png_pixels(vae1, [1.0], 6))


def test_explorer_without_labels_draws_grey_codes(vae, digits, recwarn):
    x, _ = digits
    parts = widgets.LatentExplorer(vae, x[:40])
    assert not [w for w in recwarn if "color" in str(w.message).lower()]
    assert parts.codes.shape == (40, 2)


def test_explorer_checks_labels_match_images(vae, digits):
    x, y = digits
    with pytest.raises(ValueError, match="x has 200 images but y has 199 labels"):
        widgets.LatentExplorer(vae, x, y[:-1])


# --- interpolation explorer -------------------------------------------------------------------------


def test_interpolation_strip_shows_the_decoded_lerp_and_slerp_paths(vae, digits):
    x, y = digits
    parts = widgets.InterpolationExplorer(vae, x, y, start=3, end=8, n_steps=6, scale=3, strip_scale=1)
    z0, z1 = latent.encode(vae, x[[3, 8]])
    expected = np.stack([latent.decode(vae, latent.interpolate(z0, z1, 6, method)) for method in ("lerp", "slerp")])
    strip = shown(parts.strip)
    np.testing.assert_array_equal(strip, widgets.highlight_column(widgets.image_strip(expected), 0, 2, 6))
    np.testing.assert_array_equal(shown(parts.first), widgets.to_pixels(x[3], 3))
    np.testing.assert_array_equal(shown(parts.last), widgets.to_pixels(x[8], 3))


def test_interpolation_scrubbing_moves_along_the_path(vae, digits):
    x, y = digits
    parts = widgets.InterpolationExplorer(vae, x, y, start=0, end=1, n_steps=5, scale=2)
    z0, z1 = latent.encode(vae, x[[0, 1]])
    first_strip = parts.strip.value
    np.testing.assert_array_equal(shown(parts.lerp), decoded_png_pixels(vae, z0, 2))
    parts.position.value = 2
    np.testing.assert_array_equal(shown(parts.lerp), decoded_png_pixels(vae, latent.lerp(z0, z1, 0.5), 2))
    np.testing.assert_array_equal(shown(parts.slerp), decoded_png_pixels(vae, latent.slerp(z0, z1, 0.5), 2))
    assert parts.strip.value != first_strip
    parts.position.value = 4
    np.testing.assert_array_equal(shown(parts.slerp), decoded_png_pixels(vae, z1, 2))


def test_interpolation_steps_and_end_points_recompute_the_path(vae, digits):
    x, y = digits
    parts = widgets.InterpolationExplorer(vae, x, y, start=0, end=1, n_steps=9, strip_scale=1)
    parts.position.value = 8
    parts.steps.value = 4
    assert parts.position.max == 3 and parts.position.value == 3
    assert parts.images.shape == (2, 4, 28, 28, 1)
    assert shown(parts.strip).shape[1] == 4 * 30 - 2
    parts.end.value = 5
    np.testing.assert_allclose(parts.codes[0, -1], latent.encode(vae, x[5:6])[0], atol=1e-5)


def test_interpolation_class_menus_pick_digits_of_that_class(vae, digits):
    x, y = digits
    parts = widgets.InterpolationExplorer(vae, x, y, start=0, end=1)
    start_menu, end_menu = parts.start_class, parts.end_class
    assert start_menu.value == y[0] and end_menu.value == y[1]
    target = (int(y[parts.start.value]) + 1) % 10
    start_menu.value = target
    assert y[parts.start.value] == target
    end_menu.value = target  # same class: the end picks a different digit of it
    assert y[parts.end.value] == target and parts.end.value != parts.start.value
    parts.start.value = 17
    assert start_menu.value == y[17]


def test_interpolation_works_without_labels(vae, digits):
    x, _ = digits
    parts = widgets.InterpolationExplorer(vae, x, start=2, end=4)
    assert parts.images.shape[:2] == (2, 9) and parts.start_class is None
    with pytest.raises(ValueError, match=r"from # index must be in \[0, 199\]"):
        widgets.InterpolationExplorer(vae, x, start=200)


# --- concept editor --------------------------------------------------------------------------------


def test_concept_editor_strength_slider_applies_the_class_vector(vae, digits):
    x, y = digits
    parts = widgets.ConceptEditor(vae, x, y, source=1, target=7, strength=0.0, scale=3)
    assert y[parts.index.value] == 1
    code = parts.codes[parts.index.value]
    vector = latent.class_concept(parts.codes, y, 1, 7)
    np.testing.assert_array_equal(shown(parts.edited), decoded_png_pixels(vae, code, 3))
    np.testing.assert_array_equal(shown(parts.original), widgets.to_pixels(x[parts.index.value], 3))
    parts.strength.value = 1.5
    np.testing.assert_array_equal(shown(parts.edited), decoded_png_pixels(vae, code + 1.5 * vector, 3))
    assert "+1.50" in parts.readout.value


def test_concept_editor_switches_concepts_and_digits(vae, digits):
    x, y = digits
    parts = widgets.ConceptEditor(vae, x, y, strength=1.0, scale=2)
    strip_before = parts.strip.value
    parts.concept.value = "thicker strokes (ink)"
    ink_vector = latent.attribute_concept(parts.codes, latent.ink_amount(x), labels=y)
    np.testing.assert_allclose(parts.vector, ink_vector, atol=1e-6)
    assert parts.source.layout.display == "none"  # class menus hide for attribute concepts
    assert parts.strip.value != strip_before
    parts.index.value = 42
    np.testing.assert_array_equal(shown(parts.edited), decoded_png_pixels(vae, parts.codes[42] + ink_vector, 2))
    parts.concept.value = widgets.CLASS_CONCEPT
    parts.target.value = 0
    np.testing.assert_allclose(parts.vector, latent.class_concept(parts.codes, y, 1, 0), atol=1e-6)


def test_concept_editor_attribute_vectors_come_from_the_data(vae, digits):
    x, y = digits
    vectors = widgets.attribute_vectors(latent.encode(vae, x), x, y)
    assert set(vectors) == set(widgets.ATTRIBUTES)
    assert all(v.shape == (2,) and np.all(np.isfinite(v)) for v in vectors.values())
    assert not np.allclose(*vectors.values())


def test_concept_editor_rejects_missing_labels_and_classes(vae, digits):
    x, y = digits
    with pytest.raises(ValueError, match="needs labels"):
        widgets.ConceptEditor(vae, x, None)
    with pytest.raises(ValueError, match="no codes with label 7"):
        widgets.ConceptEditor(vae, x[y != 7], y[y != 7])
