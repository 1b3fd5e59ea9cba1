"""Latent-space helpers: encode/decode, lerp/slerp paths, concept vectors and image attributes."""

import numpy as np
import pytest

from vae_helpers import keras, latent
from vae_helpers.models import build_vae

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def vae3():
    """An untrained 3-D VAE: enough to check shapes and that decode matches the decoder itself."""
    return build_vae(latent_dim=3, seed=0, compile=False)


# --- encode / decode -------------------------------------------------------------------------------


def test_decode_one_code_and_a_batch_match_the_decoder(vae3):
    z = RNG.normal(size=(5, 3)).astype(np.float32)
    direct = keras.ops.convert_to_numpy(vae3.decoder(z, training=False))
    batch = latent.decode(vae3, z)
    single = latent.decode(vae3.decoder, z[2])
    assert isinstance(batch, np.ndarray) and batch.shape == (5, 28, 28, 1)
    assert single.shape == (28, 28, 1)
    np.testing.assert_allclose(batch, direct, atol=1e-5)
    np.testing.assert_allclose(single, direct[2], atol=1e-5)


def test_decode_splits_large_batches_without_changing_results(vae3):
    z = RNG.normal(size=(7, 3)).astype(np.float32)
    np.testing.assert_allclose(latent.decode(vae3, z, batch_size=3), latent.decode(vae3, z), atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros(2), r"shape \(3,\) or \(n, 3\)"),
    (np.zeros((4, 2)), r"shape \(3,\) or \(n, 3\)"),
    (np.zeros((2, 2, 3)), r"shape \(3,\) or \(n, 3\)"),
    (np.array([0.0, np.nan, 0.0]), "NaN or infinite"),
    (np.array([[0.0, np.inf, 0.0]]), "NaN or infinite"),
])
def test_decode_rejects_bad_codes(vae3, bad, message):
    with pytest.raises(ValueError, match=message):
        latent.decode(vae3, bad)


def test_encode_returns_posterior_means(vae3, small_images):
    x = small_images[0][:6]
    z_mean, z_log_var = latent.encode(vae3, x, return_log_var=True)
    direct_mean, direct_log_var = vae3.encoder(x, training=False)
    assert z_mean.shape == z_log_var.shape == (6, 3)
    np.testing.assert_allclose(z_mean, keras.ops.convert_to_numpy(direct_mean), atol=1e-5)
    np.testing.assert_allclose(z_log_var, keras.ops.convert_to_numpy(direct_log_var), atol=1e-5)
    np.testing.assert_allclose(latent.encode(vae3, x, batch_size=4), z_mean, atol=1e-5)


def test_encode_checks_images_before_tensorflow_sees_them(vae3):
    """The messages themselves are tested with data.check_images; here: encode applies it, naming x."""
    with pytest.raises(ValueError, match="^x must be in"):
        latent.encode(vae3, np.full((2, 28, 28, 1), 255.0))


def test_latent_dim_of_vae_and_decoder(vae3):
    assert latent.latent_dim_of(vae3) == latent.latent_dim_of(vae3.decoder) == 3


# --- lerp / slerp / interpolate --------------------------------------------------------------------


def test_lerp_end_points_midpoint_and_shapes():
    z0, z1 = np.array([1.0, -2.0, 0.5]), np.array([3.0, 2.0, -0.5])
    path = latent.lerp(z0, z1, [0.0, 0.25, 1.0])
    assert path.shape == (3, 3) and path.dtype == np.float32
    np.testing.assert_allclose(path[0], z0)
    np.testing.assert_allclose(path[1], 0.75 * z0 + 0.25 * z1)
    np.testing.assert_allclose(path[2], z1)
    assert latent.lerp(z0, z1, 0.5).shape == (3,)


def test_lerp_on_batches_equals_lerp_of_each_pair():
    z0, z1 = RNG.normal(size=(4, 5)), RNG.normal(size=(4, 5))
    t = np.linspace(0, 1, 6)
    batch = latent.lerp(z0, z1, t)
    assert batch.shape == (6, 4, 5)
    for i in range(4):
        np.testing.assert_allclose(batch[:, i], latent.lerp(z0[i], z1[i], t), atol=1e-6)


def test_slerp_follows_the_arc_between_orthogonal_unit_codes():
    t = np.linspace(0, 1, 7)
    path = latent.slerp([1.0, 0.0], [0.0, 1.0], t)
    angles = np.arctan2(path[:, 1], path[:, 0])
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(angles, t * np.pi / 2, atol=1e-6)  # constant angular speed
    np.testing.assert_allclose(latent.slerp([1.0, 0.0], [0.0, 1.0], 0.5), [np.sqrt(0.5)] * 2, atol=1e-6)


def test_slerp_keeps_the_length_of_equal_length_codes_where_lerp_shrinks_it():
    z0 = RNG.normal(size=16)
    z1 = RNG.normal(size=16)
    z1 *= np.linalg.norm(z0) / np.linalg.norm(z1)
    t = np.linspace(0, 1, 11)
    slerp_norms = np.linalg.norm(latent.slerp(z0, z1, t), axis=1)
    lerp_norms = np.linalg.norm(latent.lerp(z0, z1, t), axis=1)
    np.testing.assert_allclose(slerp_norms, np.linalg.norm(z0), rtol=1e-5)
    np.testing.assert_allclose(latent.slerp_linear_norm(z0, z1, t), latent.slerp(z0, z1, t), atol=1e-5)
    assert lerp_norms[5] < 0.9 * slerp_norms[5]
    np.testing.assert_allclose(latent.slerp(z0, z1, [0.0, 1.0]), np.stack([z0, z1]), atol=1e-5)


def test_slerp_matches_the_textbook_formula():
    z0, z1 = np.array([2.0, 0.5, -1.0]), np.array([-0.5, 1.5, 0.3])
    omega = np.arccos(z0 @ z1 / np.linalg.norm(z0) / np.linalg.norm(z1))
    for t in (0.0, 0.3, 0.8, 1.0):
        expected = (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)
        np.testing.assert_allclose(latent.slerp(z0, z1, t), expected, atol=1e-6)


def test_slerp_bulges_for_nearly_opposite_codes_where_the_variant_stays_bounded():
    z0 = np.array([3.0, 0.0])
    z1 = 1.0 * np.array([np.cos(np.pi - 1e-3), np.sin(np.pi - 1e-3)])  # almost opposite, shorter
    t = np.linspace(0, 1, 9)
    assert np.linalg.norm(latent.slerp(z0, z1, 0.5)) > 100  # (3 + 1) sin(w/2) / sin(w): huge as w -> pi
    path = latent.slerp_linear_norm(z0, z1, t)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 3.0 - 2.0 * t, rtol=1e-5)
    angles = np.unwrap(np.arctan2(path[:, 1], path[:, 0]))
    np.testing.assert_allclose(np.diff(angles), (np.pi - 1e-3) / 8, rtol=1e-4)


@pytest.mark.parametrize("path", [latent.slerp, latent.slerp_linear_norm])
def test_slerp_on_batches_equals_slerp_of_each_pair(path):
    z0, z1 = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
    t = np.array([0.1, 0.6])
    batch = path(z0, z1, t)
    assert batch.shape == (2, 3, 4)
    for i in range(3):
        np.testing.assert_allclose(batch[:, i], path(z0[i], z1[i], t), atol=1e-6)


@pytest.mark.parametrize("z0, z1", [
    ([0.0, 0.0], [1.0, 2.0]),      # a zero code has no direction
    ([1.0, 2.0], [2.0, 4.0]),      # parallel: the arc is the chord
    ([1.0, 2.0], [-1.0, -2.0]),    # opposite: no unique arc
])
@pytest.mark.parametrize("method", [latent.slerp, latent.slerp_linear_norm])
def test_slerp_falls_back_to_lerp_where_the_angle_is_degenerate(z0, z1, method):
    t = np.linspace(0, 1, 5)
    path = method(z0, z1, t)
    assert np.all(np.isfinite(path))
    np.testing.assert_allclose(path, latent.lerp(z0, z1, t), atol=1e-6)


@pytest.mark.parametrize("path", [latent.lerp, latent.slerp, latent.slerp_linear_norm])
def test_paths_reject_bad_input(path):
    with pytest.raises(ValueError, match="different latent spaces|latent dimension 3 but 2"):
        path([0.0, 1.0], [0.0, 1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="same shape"):
        path(np.zeros((2, 2)), np.zeros((3, 2)), 0.5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        path([0.0, np.nan], [1.0, 1.0], 0.5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        path([0.0, 1.0], [1.0, 1.0], [0.0, np.inf])
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        path([0.0, 1.0], [1.0, 1.0], 1.5)
    with pytest.raises(ValueError, match="shape"):
        path(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), 0.5)
    with pytest.raises(ValueError, match="1-D array"):
        path([0.0, 1.0], [1.0, 1.0], np.zeros((2, 2)))


def test_interpolate_includes_both_end_points():
    z0, z1 = np.array([2.0, 0.0]), np.array([0.0, 2.0])
    for method in latent.INTERPOLATION_METHODS:
        path = latent.interpolate(z0, z1, n_steps=5, method=method)
        assert path.shape == (5, 2)
        np.testing.assert_allclose(path[[0, -1]], [z0, z1], atol=1e-6)
    assert not np.allclose(latent.interpolate(z0, z1, 5, "lerp"), latent.interpolate(z0, z1, 5, "slerp"))


def test_interpolate_rejects_bad_settings():
    with pytest.raises(ValueError, match="n_steps"):
        latent.interpolate([0.0], [1.0], n_steps=1)
    with pytest.raises(ValueError, match="n_steps"):
        latent.interpolate([0.0], [1.0], n_steps=2.5)
    with pytest.raises(ValueError, match="unknown interpolation method 'cubic'"):
        latent.interpolate([0.0], [1.0], method="cubic")


# --- concept vectors -------------------------------------------------------------------------------


def test_concept_vector_is_the_difference_of_group_means():
    ones, sevens = RNG.normal(size=(30, 2)), RNG.normal(loc=[2.0, -1.0], size=(20, 2))
    vector = latent.concept_vector(ones, sevens)
    np.testing.assert_allclose(vector, sevens.mean(0) - ones.mean(0), atol=1e-6)
    np.testing.assert_allclose(latent.concept_vector(ones[0], sevens[0]), sevens[0] - ones[0], atol=1e-6)
    # adding it moves the mean of the first group exactly onto the mean of the second
    np.testing.assert_allclose(latent.apply_concept(ones, vector).mean(0), sevens.mean(0), atol=1e-5)


def test_concept_vector_rejects_bad_groups():
    with pytest.raises(ValueError, match="different latent spaces"):
        latent.concept_vector(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="z_to is empty"):
        latent.concept_vector(np.zeros((3, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="z_from contains NaN"):
        latent.concept_vector([[np.nan, 0.0]], [[1.0, 0.0]])


def test_class_concept_uses_the_labels():
    z = RNG.normal(size=(40, 3))
    labels = np.repeat([1, 7, 3, 3], 10)
    np.testing.assert_allclose(latent.class_concept(z, labels, 1, 7), z[10:20].mean(0) - z[:10].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="no codes with label 9"):
        latent.class_concept(z, labels, 1, 9)
    with pytest.raises(ValueError, match="same class"):
        latent.class_concept(z, labels, 3, 3)
    with pytest.raises(ValueError, match="one entry per code"):
        latent.class_concept(z, labels[:-1], 1, 7)


def confounded_codes(n_per_class=200):
    """Codes where axis 0 encodes the class and axis 1 an attribute whose average differs by class."""
    labels = np.repeat(np.arange(4), n_per_class)
    score = RNG.normal(size=len(labels)) + labels  # higher classes score higher on average
    z = np.stack([3.0 * labels + 0.1 * RNG.normal(size=len(labels)),
                  score - labels + 0.1 * RNG.normal(size=len(labels))], axis=1)
    return z, score, labels


def test_attribute_concept_within_classes_separates_the_attribute_from_the_class():
    z, score, labels = confounded_codes()
    within = latent.attribute_concept(z, score, labels=labels)
    pooled = latent.attribute_concept(z, score)
    assert within[1] > 1.0 and abs(within[0]) < 0.2 * within[1]
    assert pooled[0] > within[1]  # ignoring the classes mostly changes the class instead


def test_attribute_concept_points_from_low_to_high_scores():
    z = RNG.normal(size=(100, 2))
    vector = latent.attribute_concept(z, z[:, 0], fraction=0.1)
    order = np.argsort(z[:, 0])
    np.testing.assert_allclose(vector, z[order[-10:]].mean(0) - z[order[:10]].mean(0), atol=1e-6)


def test_attribute_concept_rejects_bad_input():
    z = RNG.normal(size=(10, 2))
    with pytest.raises(ValueError, match="one value per code"):
        latent.attribute_concept(z, np.zeros(9))
    with pytest.raises(ValueError, match="fraction"):
        latent.attribute_concept(z, np.zeros(10), fraction=0.6)
    with pytest.raises(ValueError, match="scores contains NaN"):
        latent.attribute_concept(z, np.full(10, np.nan))
    with pytest.raises(ValueError, match="at least two codes"):
        latent.attribute_concept(z, np.arange(10.0), labels=np.arange(10))


def test_apply_concept_shapes_and_linearity():
    z, vector = RNG.normal(size=(4, 3)), np.array([1.0, 0.0, -1.0])
    np.testing.assert_allclose(latent.apply_concept(z, vector, 0.0), z, atol=1e-6)
    np.testing.assert_allclose(latent.apply_concept(z[0], vector, -2.0), z[0] - 2 * vector, atol=1e-6)
    ladder = latent.apply_concept(z, vector, [-1.0, 0.0, 2.5])
    assert ladder.shape == (3, 4, 3)
    np.testing.assert_allclose(ladder[2], z + 2.5 * vector, atol=1e-6)
    assert latent.apply_concept(z[0], vector, [0.0, 1.0]).shape == (2, 3)


def test_apply_concept_rejects_bad_input():
    with pytest.raises(ValueError, match="latent dimension 2 but 3"):
        latent.apply_concept(np.zeros((4, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="one direction"):
        latent.apply_concept(np.zeros((4, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="strength contains NaN"):
        latent.apply_concept(np.zeros(3), np.ones(3), np.nan)
    with pytest.raises(ValueError, match="z contains NaN"):
        latent.apply_concept([np.inf, 0.0, 0.0], np.ones(3))


# --- attributes measured on images -----------------------------------------------------------------


def line_image(slope, width=1):
    """A 28x28 stroke through the centre: column = 14 + slope * (height above the centre)."""
    image = np.zeros((28, 28, 1), dtype=np.float32)
    for row in range(4, 24):
        column = int(round(14 + slope * (13.5 - row)))
        image[row, column:column + width, 0] = 1.0
    return image


def test_ink_amount_grows_with_stroke_width():
    thin, thick = line_image(0.0, width=1), line_image(0.0, width=3)
    ink = latent.ink_amount(np.stack([thin, thick]))
    np.testing.assert_allclose(ink, [20 / 784, 60 / 784])


def test_slant_sign_follows_the_lean():
    images = np.stack([line_image(0.0), line_image(0.5), line_image(-0.5), np.zeros((28, 28, 1), np.float32)])
    upright, forward, backward, blank = latent.slant(images)
    assert abs(upright) < 1e-9 and blank == 0.0
    assert forward == pytest.approx(0.5, abs=0.05) and backward == pytest.approx(-0.5, abs=0.05)


def test_slant_of_real_digits_changes_with_shear(sample):
    x = sample[1][0][:50]
    sheared = np.zeros_like(x)
    for row in range(28):  # shift each row right by a third of its height above the centre
        shift = int(round((13.5 - row) / 3))
        sheared[:, row] = np.roll(x[:, row], shift, axis=1)
    assert np.mean(latent.slant(sheared) - latent.slant(x)) > 0.25


def test_image_attributes_accept_channel_less_images_and_reject_bad_ones():
    x = np.stack([line_image(0.3)[..., 0]])
    assert latent.slant(x).shape == latent.ink_amount(x).shape == (1,)
    with pytest.raises(ValueError, match="batch of grey images"):
        latent.ink_amount(np.zeros((28, 28)))
    with pytest.raises(ValueError, match="batch of grey images"):
        latent.slant(np.zeros((2, 28, 28, 3)))
    with pytest.raises(ValueError, match="NaN"):
        latent.ink_amount(np.full((1, 28, 28), np.nan))


def test_encode_accepts_a_plain_autoencoders_encoder(small_images):
    from vae_helpers.models import build_autoencoder

    x, *_ = small_images
    _, encoder, _ = build_autoencoder(2)
    codes = latent.encode(encoder, x[:7], batch_size=3)
    np.testing.assert_allclose(codes, encoder.predict(x[:7], verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="no z_log_var output"):
        latent.encode(encoder, x[:7], return_log_var=True)


# --- holes --------------------------------------------------------------------------------------------


def test_nearest_distance_matches_brute_force():
    points, codes = RNG.normal(size=(50, 3)), RNG.normal(size=(200, 3))
    brute = np.sqrt(((points[:, None] - codes[None]) ** 2).sum(-1)).min(axis=1)
    np.testing.assert_allclose(latent.nearest_distance(points, codes), brute, rtol=1e-12)
    with pytest.raises(ValueError, match="same d"):
        latent.nearest_distance(points, codes[:, :2])


def test_hole_ratio_is_about_1_when_random_codes_follow_the_data_and_large_when_they_do_not():
    train, test = RNG.normal(size=(5000, 2)), RNG.normal(size=(1000, 2))
    assert 0.8 < latent.hole_ratio(train, test, RNG.normal(size=(1000, 2))) < 1.25
    box = RNG.uniform(-20, 20, size=(1000, 2))  # mostly far from a unit Gaussian cloud
    assert latent.hole_ratio(train, test, box) > 10
