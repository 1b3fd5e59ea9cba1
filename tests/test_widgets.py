"""Widgets driven from Python: move a control, check the picture changed and matches a direct decode.

The live training view is driven by tiny real training runs (plain ``fit`` and ``train_vae``) and its
records are checked against Keras' own history and a NumPy computation of the KL.
"""

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


# --- live training view ------------------------------------------------------------------------------


def expected_kl_per_dim(vae, x, factor=1.0):
    """KL of each latent dimension on ``x`` from the encoder's outputs, in NumPy (``factor`` 2: the book's sampling)."""
    z_mean, z_log_var = latent.encode(vae, x, return_log_var=True)
    log_var = factor * z_log_var.astype(np.float64)
    return np.mean(0.5 * (np.exp(log_var) + z_mean.astype(np.float64) ** 2 - 1.0 - log_var), axis=0)


def manifold_pixels(vae, n, dims=(0, 1)):
    from vae_helpers.plotting import manifold_codes, tile_images

    codes = manifold_codes(n, latent_dim=latent.latent_dim_of(vae), dims=dims)
    return widgets.to_pixels(tile_images(latent.decode(vae, codes), n))


@pytest.fixture
def fresh_vae():
    from vae_helpers import set_seed

    set_seed(0)
    return build_vae(latent_dim=2, seed=0)


@pytest.fixture(scope="module")
def probe(sample):
    return sample[1][0][:64]


def test_live_view_under_plain_fit_updates_every_n_steps_and_records_the_window_means(fresh_vae, sample, probe):
    x = sample[0][0][:256]  # 8 steps of 32 per epoch
    live = widgets.LiveTraining(fresh_vae, probe, every=3, manifold_n=4)
    manifold_before = live.manifold_image.value
    history = fresh_vae.fit(x, epochs=2, batch_size=32, verbose=0, callbacks=[live]).history

    # every 3 steps, and at each epoch's end for the steps since the last update
    assert live.history["step"] == [3, 6, 8, 9, 12, 15, 16]
    assert live.history["epoch"] == [1, 1, 1, 2, 2, 2, 2]
    assert live.epochs["step"] == [8, 16] and live.epochs["epoch"] == [1, 2]
    windows = np.diff([0, 3, 6, 8]), np.diff([8, 9, 12, 15, 16])
    for key in ("loss", "reconstruction_loss", "kl_loss"):
        np.testing.assert_allclose(live.epochs[key], history[key], rtol=1e-6)
        means = np.asarray(live.history[key])
        # the windows tile each epoch: their step-weighted means are the epoch's mean
        epoch_means = [np.dot(windows[0], means[:3]) / 8, np.dot(windows[1], means[3:]) / 8]
        np.testing.assert_allclose(epoch_means, history[key], rtol=1e-4)
    assert np.all(np.isnan(live.epochs["val_elbo"]))
    # the last update came after the last step: its KL is the trained model's
    np.testing.assert_allclose(live.history["kl_per_dim"][-1], expected_kl_per_dim(fresh_vae, probe),
                               rtol=1e-4, atol=1e-6)
    assert live.manifold_image.value != manifold_before
    np.testing.assert_array_equal(shown(live.manifold_image), manifold_pixels(fresh_vae, 4))
    assert "step 16, epoch 2" in live.readout.value
    assert 0.0 < live.seconds < live.train_seconds and 0.0 < live.overhead < 1.0

    fresh_vae.fit(x[:64], epochs=1, batch_size=32, verbose=0, callbacks=[live])  # a second fit goes on counting
    assert live.history["step"][-2:] == [16, 18] and live.epochs["step"] == [8, 16, 18]


def test_live_view_under_train_vae_keeps_grouped_steps_and_counts_real_steps(fresh_vae, sample, probe):
    from vae_helpers import training

    x = sample[0][0][:160]  # 80 steps of 2 per epoch: groups of 32 end at steps 32, 64 and 80
    live = widgets.LiveTraining(fresh_vae, probe, every=40, manifold_n=3)
    assert not training.needs_every_batch([live])
    history = training.train_vae(fresh_vae, x, epochs=2, batch_size=2, x_val=probe[:16], progress=None,
                                 callbacks=[live])
    if training.BACKEND != "tensorflow":  # one step per call (see training._set_steps_per_execution): every 40th is seen
        assert fresh_vae.steps_per_execution == 1 and live.history["step"] == [40, 80, 120, 160]
    else:
        # at the end of the first group reaching each multiple of 40; Keras' batch index of the last group
        # is 95 (it passes the epoch's end), the steps really run are 80
        assert fresh_vae.steps_per_execution == training.STEPS_PER_EXECUTION
        assert live.history["step"] == [64, 80, 144, 160]
    assert live.epochs["step"] == [80, 160]
    for key in ("loss", "val_elbo"):  # train_vae's own callbacks score the validation ELBO before the view reads it
        np.testing.assert_allclose(live.epochs[key], history[key], rtol=1e-6)


@pytest.mark.parametrize("loss, factor", [("elbo", 1.0), ("book", 2.0)])
def test_live_view_kl_per_dimension_matches_numpy(probe, loss, factor):
    vae = build_vae(latent_dim=3, loss=loss, seed=0, compile=False)
    head = vae.encoder.get_layer("z_log_var")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, np.array([-1.0, 0.0, 0.5], np.float32)])  # log-variances far from 0: the factor shows
    live = widgets.LiveTraining(vae, probe, manifold_n=3)
    expected = expected_kl_per_dim(vae, probe, factor)
    np.testing.assert_allclose(live.kl_per_dim, expected, rtol=1e-5)
    assert not np.allclose(expected, expected_kl_per_dim(vae, probe, 3.0 - factor), rtol=1e-2)


def test_live_view_manifold_follows_the_weights(fresh_vae, probe):
    live = widgets.LiveTraining(fresh_vae, probe, manifold_n=5)
    before = shown(live.manifold_image)
    np.testing.assert_array_equal(before, manifold_pixels(fresh_vae, 5))
    last = fresh_vae.decoder.layers[-1]
    kernel, bias = last.get_weights()
    last.set_weights([kernel, bias + 1.5])
    live.refresh()
    after = shown(live.manifold_image)
    assert after.shape == (5 * 28, 5 * 28) and not np.array_equal(after, before)
    np.testing.assert_array_equal(after, manifold_pixels(fresh_vae, 5))
    assert live.history["step"] == []  # refresh draws, it does not record


def test_live_view_in_more_dimensions_spans_the_two_most_active_and_skips_one_dimension(probe):
    vae4 = build_vae(latent_dim=4, seed=0, compile=False)
    head = vae4.encoder.get_layer("z_mean")
    head.set_weights([head.get_weights()[0], np.array([2.0, 0.0, 3.0, 0.0], np.float32)])
    live = widgets.LiveTraining(vae4, probe, manifold_n=3)
    assert live.manifold_dims == (2, 0)
    np.testing.assert_array_equal(shown(live.manifold_image), manifold_pixels(vae4, 3, dims=(2, 0)))
    assert "z3 across, z1 up" in live.manifold_title.value
    chosen = widgets.LiveTraining(vae4, probe, manifold_n=3, dims=(1, 3))
    assert chosen.manifold_dims == (1, 3)

    live1 = widgets.LiveTraining(build_vae(latent_dim=1, seed=0, compile=False), probe)
    assert live1.manifold is None and live1.manifold_dims is None and "1-D" in live1.manifold_title.value
    assert live1.kl_per_dim.shape == (1,)


def test_live_view_charts_draw_the_recorded_numbers():
    bars = widgets.kl_bars_chart([2.0, 0.5, 0.0], highlight=(0,))
    heights = [np.sum(np.all(bars == color, axis=-1), axis=0).max()
               for color in (widgets.BAR_HIGHLIGHT, widgets.BAR_COLOR)]
    assert heights[0] == pytest.approx(4 * heights[1], rel=0.05)  # bars in proportion to the KL
    history = {"step": [10, 20, 30], "loss": [3.0, 2.0, 1.0], "reconstruction_loss": [2.5, 1.5, 0.8],
               "kl_loss": [0.5, 0.5, 0.2]}
    epochs = {"step": [30], "loss": [2.0], "reconstruction_loss": [1.6], "kl_loss": [0.4], "val_elbo": [-2.2]}
    chart = widgets.curves_chart(history, epochs, ("loss", "reconstruction_loss", "val_elbo"), "loss")
    for key in ("loss", "reconstruction_loss", "val_elbo"):
        assert np.all(chart == widgets.CURVE_COLORS[key], axis=-1).sum() > 20, key
    assert not np.all(chart == widgets.CURVE_COLORS["kl_loss"], axis=-1).any()
    rows = np.flatnonzero(np.all(chart == widgets.CURVE_COLORS["loss"], axis=-1).any(axis=1))
    assert rows.min() < chart.shape[0] // 3 and rows.max() > chart.shape[0] // 2  # the loss falls across the chart
    np.testing.assert_allclose(widgets.nice_ticks(0.0, 9.0), [0, 2, 4, 6, 8])
    assert [widgets.tick_label(v, [0.0, 0.5]) for v in (0.5, -0.0)] == ["0.5", "0.0"]


def test_live_view_shows_as_a_widget_without_a_front_end(vae, probe):
    live = widgets.LiveTraining(vae, probe)
    bundle = live._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "vae-live-training" in live.widget._dom_classes
    for picture in (live.losses, live.kl_curve, live.kl_bars, live.manifold_image):
        assert shown(picture).ndim in (2, 3)
    assert "step 0" in live.readout.value


@pytest.mark.parametrize("kwargs, message", [
    ({"every": 0}, "every must be a positive integer, got 0"),
    ({"every": 2.5}, "every must be a positive integer, got 2.5"),
    ({"every": True}, "every must be a positive integer, got True"),
    ({"manifold_n": 1}, "manifold_n must be an integer of at least 2, got 1"),
    ({"dims": (0, 0)}, r"dims must be two different latent dimensions in \[0, 1\]"),
    ({"dims": (0, 2)}, r"dims must be two different latent dimensions in \[0, 1\]"),
    ({"x_probe": np.full((4, 28, 28, 1), 255.0)}, r"x_probe must be in \[0, 1\].*divide uint8 pixels by 255"),
    ({"x_probe": np.zeros((4, 32, 32, 1))}, r"x_probe must have shape \(N, 28, 28, 1\)"),
])
def test_live_view_rejects_bad_arguments(vae, probe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        widgets.LiveTraining(vae, **{"x_probe": probe, **kwargs})


def test_live_view_refuses_models_it_cannot_follow(vae, probe, sample, cvae):
    with pytest.raises(TypeError, match="vae must be a VAE with an .encoder and a .decoder"):
        widgets.LiveTraining(vae.decoder, probe)
    with pytest.raises(TypeError, match="encoder also needs labels"):
        widgets.LiveTraining(cvae, probe)
    other = build_vae(latent_dim=2, seed=1)
    live = widgets.LiveTraining(vae, probe)
    with pytest.raises(ValueError, match="made for another model"):
        other.fit(sample[0][0][:32], epochs=1, batch_size=32, verbose=0, callbacks=[live])


# --- conditional digit designer ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cvae():
    from vae_helpers import conditional, set_seed

    set_seed(0)
    return conditional.build_conditional_vae(2, seed=0, compile=False)  # untrained: the widget is tested, not the model


def conditional_pixels(cvae, code, label, scale):
    from vae_helpers import conditional

    return widgets.to_pixels(conditional.decode(cvae, np.asarray(code, np.float32), label)[0], scale)


def test_digit_designer_draws_the_chosen_class_in_the_sliders_style(cvae):
    from vae_helpers import conditional

    parts = widgets.DigitDesigner(cvae, label=3, z=[0.5, -1.0], scale=2, strip_scale=1)
    assert [s.description for s in parts.sliders] == ["z1", "z2"] and list(parts.label.options) == list(range(10))
    three = shown(parts.digit)
    np.testing.assert_array_equal(three, conditional_pixels(cvae, [0.5, -1.0], 3, 2))
    strip = shown(parts.strip)
    ten = conditional.decode(cvae, np.array([0.5, -1.0], np.float32), np.arange(10))
    np.testing.assert_array_equal(strip, widgets.highlight_column(widgets.image_strip(ten[np.newaxis]), 3, 1, 10))

    parts.label.value = 7  # another class, same z: only the digit and the frame change
    seven = shown(parts.digit)
    assert not np.array_equal(seven, three)
    np.testing.assert_array_equal(seven, conditional_pixels(cvae, [0.5, -1.0], 7, 2))
    np.testing.assert_array_equal(shown(parts.strip), widgets.highlight_column(widgets.image_strip(ten[np.newaxis]),
                                                                               7, 1, 10))
    parts.sliders[0].value = -2.0  # another style, same class
    restyled = shown(parts.digit)
    assert not np.array_equal(restyled, seven)
    np.testing.assert_array_equal(restyled, conditional_pixels(cvae, [-2.0, -1.0], 7, 2))
    assert not np.array_equal(shown(parts.strip), strip)
    assert "-2.00" in parts.readout.value and "digit 7" in parts.readout.value
    assert "application/vnd.jupyter.widget-view+json" in parts._repr_mimebundle_()


@pytest.mark.parametrize("kwargs, error, message", [
    ({"label": 10}, ValueError, r"label must be class ids \(whole numbers from 0 to 9\), got 10"),
    ({"label": 2.0}, ValueError, "label must be integer class ids"),
    ({"z": [0.0, 0.0, 0.0]}, ValueError, r"z must have shape \(2,\) or \(n, 2\)"),
    ({"z": [4.0, 0.0]}, ValueError, r"z must lie within the sliders' range \[-3, 3\]"),
    ({"limit": 0}, ValueError, "limit must be a positive number"),
    ({"scale": 0}, ValueError, "scale must be a positive integer, got 0"),
])
def test_digit_designer_rejects_bad_arguments(cvae, kwargs, error, message):
    with pytest.raises(error, match=message):
        widgets.DigitDesigner(cvae, **kwargs)


def test_digit_designer_needs_a_conditional_vae(vae):
    with pytest.raises(TypeError, match="cvae must be a conditional VAE"):
        widgets.DigitDesigner(vae)
