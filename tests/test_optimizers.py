"""optimizers.Adam: Adam's update against an independent NumPy Adam and against Keras' own, in a compiled step."""

import numpy as np
import pytest

from vae_helpers import BACKEND, keras
from vae_helpers.optimizers import Adam


def numpy_adam(weights, grads, rates, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Kingma and Ba's Algorithm 1 in float64, one update per gradient in ``grads`` at the learning rates ``rates``.

    Keras adds epsilon to the square root of the raw second moment, not of the bias-corrected one: that is
    the bias-corrected update with epsilon / sqrt(1 - beta_2**t) in epsilon's place.
    """
    theta = [np.asarray(w, np.float64) for w in weights]
    m = [np.zeros_like(t) for t in theta]
    v = [np.zeros_like(t) for t in theta]
    for t, (step_grads, rate) in enumerate(zip(grads, rates), start=1):
        for i, g in enumerate(step_grads):
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g**2
            m_hat, v_hat = m[i] / (1 - beta_1**t), v[i] / (1 - beta_2**t)
            theta[i] = theta[i] - rate * m_hat / (np.sqrt(v_hat) + epsilon / np.sqrt(1 - beta_2**t))
    return theta


def run(optimizer, weights, grads):
    """``optimizer`` applied to variables holding ``weights``, once per gradient list, inside a compiled function."""
    variables = [keras.Variable(w) for w in weights]
    optimizer.build(variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        apply = tf.function(lambda g: optimizer.apply(g, variables))
        for step_grads in grads:
            apply([tf.constant(g) for g in step_grads])
    else:  # JAX and PyTorch: Keras' own update, eagerly (the fused kernel is TensorFlow's)
        for step_grads in grads:
            optimizer.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)
    return [keras.ops.convert_to_numpy(v) for v in variables]


@pytest.fixture
def problem():
    """Two weights and four steps of gradients from large to tiny (where epsilon matters), float32."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]
    scales = [1.0, 1e-2, 1e-4, 3e-6]
    grads = [[(rng.normal(size=w.shape) * s).astype(np.float32) for w in weights] for s in scales]
    return weights, grads


def test_adam_is_adam_against_numpy_and_keras(problem):
    weights, grads = problem
    for epsilon in (1e-7, 1e-3):  # a large epsilon shows where it is added
        got = run(Adam(learning_rate=0.01, epsilon=epsilon), weights, grads)
        keras_adam = run(keras.optimizers.Adam(learning_rate=0.01, epsilon=epsilon), weights, grads)
        expected = numpy_adam(weights, grads, [0.01] * len(grads), epsilon=epsilon)
        for mine, theirs, ref, start in zip(got, keras_adam, expected, weights, strict=True):
            moved = np.abs(ref - start).max()
            assert moved > 1e-3  # the steps did move the weights
            np.testing.assert_allclose(mine, ref, rtol=0, atol=1e-6 * max(moved, 1))
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


def test_adam_follows_a_learning_rate_schedule_step_by_step(problem):
    weights, grads = problem
    rates = [0.02, 0.02, 0.005, 0.005]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.02, 0.005])  # steps 0 and 1, then 2 on
    got = run(Adam(learning_rate=schedule), weights, grads)
    for mine, ref in zip(got, numpy_adam(weights, grads, rates), strict=True):
        np.testing.assert_allclose(mine, ref, rtol=0, atol=1e-6)
    constant = run(Adam(learning_rate=0.02), weights, grads)
    assert max(np.abs(a - b).max() for a, b in zip(got, constant)) > 1e-3  # the schedule made a difference


def test_amsgrad_is_keras_amsgrad(problem):
    weights, grads = problem
    got = run(Adam(learning_rate=0.01, amsgrad=True), weights, grads)
    for mine, theirs in zip(got, run(keras.optimizers.Adam(learning_rate=0.01, amsgrad=True), weights, grads)):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)


def test_adam_round_trips_through_its_config_and_a_keras_file(tmp_path, problem):
    """Its config is Adam's, and a .keras file brings back this class with its moments, for a later fit to go on from."""
    from vae_helpers import models

    optimizer = Adam(learning_rate=3e-3, beta_2=0.99, epsilon=1e-6)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    assert type(again) is Adam and again.get_config() == optimizer.get_config()
    vae = models.build_vae(2, seed=0, compile=False)
    vae.compile(Adam(learning_rate=3e-3))
    x = np.random.default_rng(0).uniform(size=(32, 28, 28, 1)).astype(np.float32)
    vae.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False)
    vae.save(tmp_path / "vae.keras")
    loaded = keras.saving.load_model(tmp_path / "vae.keras")
    assert type(loaded.optimizer) is Adam and int(loaded.optimizer.iterations) == 2
    moments = lambda opt: [keras.ops.convert_to_numpy(v) for v in opt._momentums + opt._velocities]  # noqa: E731
    assert any(np.abs(m).max() > 0 for m in moments(vae.optimizer))
    for a, b in zip(moments(vae.optimizer), moments(loaded.optimizer), strict=True):
        np.testing.assert_array_equal(a, b)
