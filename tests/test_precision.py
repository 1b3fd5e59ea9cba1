"""bfloat16 training (``precision="bfloat16"``, the fast recipe on a CPU with AMX): what it computes, what it keeps
in float32, that its weights are interchangeable with float32 ones, and that its runs resume exactly.

Each comparison is against the same network in float32, a separate computation with separate kernels."""

import json

import numpy as np
import pytest

from tests.test_robustness_runs import make_digits
from vae_helpers import cli, config, models, training
from vae_helpers._backend import keras
from vae_helpers.config import TrainSettings

SEED = 5


def pair(latent_dim=2):
    """A float32 VAE and a bfloat16 VAE with the same weights and the same sampling seed."""
    f32 = models.build_vae(latent_dim, seed=SEED, compile=False)
    b16 = models.build_vae(latent_dim, seed=SEED, compile=False, precision="bfloat16")
    b16.set_weights(f32.get_weights())
    return f32, b16


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))


def test_hidden_layers_compute_in_bfloat16_while_weights_heads_and_pixels_stay_float32():
    _, b16 = pair()
    assert {w.dtype for w in b16.weights} == {"float32"}
    compute = {layer.name: layer.compute_dtype for net in (b16.encoder, b16.decoder) for layer in net.layers
               if layer.weights}
    assert compute.pop("z_mean") == compute.pop("z_log_var") == "float32"
    last = b16.decoder.layers[-1].name
    assert compute.pop(last) == "float32"  # the pixel probabilities
    assert set(compute.values()) == {"bfloat16"} and len(compute) == 7  # 4 + 1 in the encoder, 2 in the decoder
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    z_mean, z_log_var = b16.encoder(x)
    assert keras.backend.standardize_dtype(z_mean.dtype) == "float32"
    assert keras.backend.standardize_dtype(b16.decoder(z_mean).dtype) == "float32"


def test_the_bfloat16_network_gives_the_float32_networks_codes_and_pixels_to_bfloat16_accuracy(small_images):
    f32, b16 = pair()
    x = small_images[0][:64]
    mean32, log_var32 = (numpy(t) for t in f32.encoder(x))
    mean16, log_var16 = (numpy(t) for t in b16.encoder(x))
    spread = np.std(mean32)
    assert 0 < np.max(np.abs(mean16 - mean32)) < 0.05 * spread  # close, and not the same computation
    assert np.max(np.abs(log_var16 - log_var32)) < 0.05 * np.std(log_var32) + 1e-3
    pixels32, pixels16 = numpy(f32.decoder(mean32)), numpy(b16.decoder(mean32))
    assert 0 < np.max(np.abs(pixels16 - pixels32)) < 0.02
    bce = lambda p: -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))  # noqa: E731
    np.testing.assert_allclose(bce(pixels16), bce(pixels32), rtol=0.005)


def test_one_training_step_moves_the_weights_as_float32_does():
    """One SGD step from the same weights and noise: the step is -lr * gradient, so the two steps compare the gradients."""
    x = np.random.default_rng(1).random((16, 28, 28, 1), dtype=np.float32).round()
    steps = []
    for model in pair():
        before = model.get_weights()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-3))
        model.train_on_batch(x)
        steps.append(np.concatenate([(a - b).ravel() for a, b in zip(model.get_weights(), before, strict=True)]))
    step32, step16 = steps
    cosine = step32 @ step16 / (np.linalg.norm(step32) * np.linalg.norm(step16))
    assert cosine > 0.99, f"the bfloat16 step points elsewhere (cosine {cosine:.4f})"
    assert abs(np.linalg.norm(step16) / np.linalg.norm(step32) - 1) < 0.05
    assert not np.array_equal(step32, step16)


def test_weights_trained_in_bfloat16_save_and_load_as_float32(tmp_path, small_images):
    f32, b16 = pair()
    b16.compile(optimizer=keras.optimizers.Adam(1e-3))
    b16.fit(small_images[0][:64], epochs=1, batch_size=16, verbose=0)
    models.save_vae_weights(b16, tmp_path / "w.weights.h5")
    loaded = models.load_vae_weights(models.build_vae(2, compile=False), tmp_path / "w.weights.h5")
    for a, b in zip(b16.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    copy = models.float32_copy(b16)
    assert {layer.compute_dtype for layer in copy.encoder.layers + copy.decoder.layers} == {"float32"}
    np.testing.assert_array_equal(numpy(copy.decoder(np.zeros((1, 2), "float32"))),
                                  numpy(loaded.decoder(np.zeros((1, 2), "float32"))))


def test_a_bad_precision_is_refused_by_name(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"precision must be one of \('float32', 'bfloat16'\), got 'float16'"):
        models.build_vae(2, precision="float16")
    with pytest.raises(ValueError, match="--precision must be one of"):
        TrainSettings(precision="bf16").validate()
    with pytest.raises(SystemExit):
        cli.main(["train", "--precision", "half", "--out", str(tmp_path / "run")])
    assert "invalid choice: 'half'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, expected", [
    ("fpu vme avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8", True),
    ("fpu vme avx2 avx512f avx512_bf16", False),  # bfloat16 instructions, but no AMX: not measured, float32
    ("fpu vme avx2 fma", False),
])
def test_the_fast_recipe_takes_bfloat16_only_on_a_cpu_with_amx(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some CPU amx_bf16\nflags\t\t: {flags}\nbugs\t\t: amx_bf16\n\n"
                       f"processor\t: 1\nflags\t\t: {flags}\n")
    assert config.cpu_has_bf16_units(cpuinfo) is expected
    fast = config.recipe_settings("fast", bf16_units=expected)
    assert (fast["precision"], fast["jit_compile"]) == (("bfloat16", False) if expected else ("float32", True))
    assert TrainSettings(**fast).validate()


@pytest.mark.backends("tensorflow")  # TensorFlow's oneDNN convolutions: the other backends fall back on their own
def test_bfloat16_on_a_cpu_without_avx512_is_refused_by_name_before_anything_is_built(tmp_path, monkeypatch):
    # Measured here with ONEDNN_MAX_CPU_ISA=AVX2: the first bfloat16 convolution fails inside the training step
    # ("could not create a primitive descriptor for the convolution forward propagation primitive").
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    monkeypatch.setattr(config, "CPUINFO", str(cpuinfo))
    with pytest.raises(ValueError, match=r"needs a CPU with AVX-512 on TensorFlow.*Use precision='float32'"):
        models.build_vae(2, precision="bfloat16")
    assert models.build_vae(2, compile=False).encoder.layers[1].compute_dtype == "float32"  # float32 still builds
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n")  # AVX-512, no AMX: slow, allowed
    assert models.build_vae(2, compile=False, precision="bfloat16").encoder.layers[1].compute_dtype == "bfloat16"


def test_an_unreadable_cpuinfo_means_no_amx(tmp_path):
    assert config.cpu_has_bf16_units(tmp_path / "missing") is False
    assert config.recipe_settings("default", bf16_units=True) == {}


def test_a_bfloat16_run_records_its_precision_scores_in_float32_and_resumes_bit_for_bit(sample, tmp_path):
    digits = make_digits(tmp_path / "digits", sample)
    settings = TrainSettings(data=str(digits), epochs=3, seed=3, precision="bfloat16")
    quiet = {"progress": None, "log": lambda *_: None}
    straight_vae, straight = training.train_run(tmp_path / "straight", settings, **quiet)
    training.train_run(tmp_path / "resumed", TrainSettings(**{**settings.__dict__, "epochs": 2}), **quiet)
    resumed_vae, resumed = training.train_run(tmp_path / "resumed", {"epochs": 3}, resume=True, **quiet)
    assert json.loads((tmp_path / "resumed" / training.RECORD_FILE).read_text())["settings"]["precision"] == "bfloat16"
    for a, b in zip(straight_vae.get_weights(), resumed_vae.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed["test_elbo"] == straight["test_elbo"]
    assert {layer.compute_dtype for layer in resumed_vae.encoder.layers} == {"float32"}  # what was scored
