"""The command line, run as a learner would: ``python -m vae_helpers ...`` in a fresh process."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from tests.conftest import write_idx

NOISE = ("oneDNN", "cpu_feature_guard", "absl::InitializeLog", "I0000", "W0000", "E0000", "Warning", "WARNING")


def cli(*args, cwd=None, timeout=300, data=""):
    env = {**os.environ, "VAE_HELPERS_DATA": str(data)}
    return subprocess.run([sys.executable, "-m", "vae_helpers", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def assert_no_noise(text):
    found = [word for word in NOISE if word in text]
    assert not found, f"learner-facing output contains {found}:\n{text}"


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory, sample):
    """IDX files with 320 training and 100 test digits: enough for a few short CLI epochs."""
    folder = tmp_path_factory.mktemp("digits")
    (x_train, y_train), (x_test, y_test) = sample
    write_idx(folder / "train-images-idx3-ubyte", np.round(x_train[:320, ..., 0] * 255).astype(np.uint8), 0x803)
    write_idx(folder / "train-labels-idx1-ubyte", y_train[:320].astype(np.uint8), 0x801)
    write_idx(folder / "t10k-images-idx3-ubyte", np.round(x_test[:100, ..., 0] * 255).astype(np.uint8), 0x803)
    write_idx(folder / "t10k-labels-idx1-ubyte", y_test[:100].astype(np.uint8), 0x801)
    return folder


def read_weights(path):
    with h5py.File(path, "r") as handle:
        arrays = []
        handle.visititems(lambda name, obj: arrays.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return dict(arrays)


def train_args(folder, out, epochs=3):
    return ["train", "--data", folder, "--epochs", epochs, "--out", out, "--seed", 3, "--quiet"]


@pytest.fixture(scope="module")
def finished_run(digits_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "straight"
    result = cli(*train_args(digits_folder, out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_weights_record_and_figures(finished_run):
    out, result = finished_run
    assert_no_noise(result.stderr + result.stdout)
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished"
    assert record["settings"]["epochs"] == 3 and record["settings"]["seed"] == 3
    assert record["data"] == {"train": 288, "validation": 32, "test": 100}
    assert len(record["history"]["loss"]) == 3 and len(record["history"]["val_elbo"]) == 3
    assert -600 < record["test_elbo"] < -100
    assert 1 <= record["best_epoch"] <= 3
    for name in ("weights.weights.h5", "manifold.png", "latent.png", "history.png"):
        assert (out / name).stat().st_size > 1000, name
    assert (out / "manifold.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Test ELBO: {record['test_elbo']:.2f}" in result.stdout
    assert sum(line.startswith("epoch ") for line in result.stdout.splitlines()) == 3


def test_train_refuses_to_overwrite_a_run_without_force(finished_run, digits_folder):
    out, _ = finished_run
    before = (out / "weights.weights.h5").read_bytes()
    result = cli(*train_args(digits_folder, out, epochs=1))
    assert result.returncode == 2
    assert "already holds files" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "weights.weights.h5").read_bytes() == before


def test_resume_needs_a_run(tmp_path, digits_folder):
    result = cli("train", "--data", digits_folder, "--out", tmp_path / "empty", "--resume")
    assert result.returncode == 2 and "no run.json here" in result.stderr


def test_bad_data_path_is_one_clear_line(tmp_path):
    result = cli("train", "--data", tmp_path / "no-such-folder", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'no-such-folder'}: not a folder (expected a folder of IDX files)"


def model_weights(path):
    """The network's arrays in a weights file (the optimizer's, if any, left out)."""
    weights = read_weights(path)
    return {name: array for name, array in weights.items() if not name.startswith("optimizer")}


def assert_same_model_weights(path_a, path_b):
    expected, got = model_weights(path_a), model_weights(path_b)
    assert expected and set(expected) == set(got)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_resume_extends_a_run_to_the_weights_of_a_longer_one(finished_run, digits_folder, tmp_path):
    straight, _ = finished_run
    out = tmp_path / "short"
    assert cli(*train_args(digits_folder, out, epochs=2)).returncode == 0
    record = json.loads((out / "run.json").read_text())
    del record["settings"]["jit_compile"]  # as a record written before the setting existed
    (out / "run.json").write_text(json.dumps(record))
    result = cli("train", "--out", out, "--resume", "--epochs", 3, "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"Resuming {out} after epoch 2 of 3." in result.stdout
    assert_same_model_weights(straight / "weights.weights.h5", out / "weights.weights.h5")
    record = json.loads((out / "run.json").read_text())
    assert record["settings"]["epochs"] == 3 and len(record["history"]["loss"]) == 3
    assert record["settings"]["jit_compile"] is False  # the default of a setting the record did not have
    assert record["command"].endswith(" --epochs 2 --out " + str(out) + " --seed 3 --quiet")  # the first command
    assert record["resumes"] == [{"command": f"python -m vae_helpers train --out {out} --resume --epochs 3 --quiet",
                                  "epochs": 3}]


def test_resume_on_other_data_is_refused(digits_folder, tmp_path):
    """A run on "auto" data continued after VAE_HELPERS_DATA changed would silently mix two data sets."""
    out = tmp_path / "auto"
    first = cli("train", "--data", "auto", "--epochs", 1, "--out", out, "--quiet", data=digits_folder)
    assert first.returncode == 0, first.stderr
    before = (out / "weights.weights.h5").read_bytes()
    result = cli("train", "--out", out, "--resume", "--epochs", 2, data="sample")
    assert result.returncode == 2
    assert "resume with the same data" in result.stderr and "Traceback" not in result.stderr
    assert (out / "weights.weights.h5").read_bytes() == before


def test_force_replaces_a_run_and_its_checkpoints(finished_run, digits_folder, tmp_path):
    out = tmp_path / "replaced"
    assert cli(*train_args(digits_folder, out, epochs=3)).returncode == 0
    result = cli(*train_args(digits_folder, out, epochs=1), "--force")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["settings"]["epochs"] == 1 and len(record["history"]["loss"]) == 1
    history = (out / "checkpoint" / "history.csv").read_text().splitlines()
    assert len(history) == 2, history  # the header and the new run's one epoch: the old rows are gone
    again = cli("train", "--out", out, "--resume", "--quiet")  # the backup is the new run's, not the old one's
    assert again.returncode == 0 and "after epoch 1 of 1" in again.stdout


def test_ctrl_c_says_how_to_resume(monkeypatch, tmp_path, capsys):
    from vae_helpers import cli as command_line, training

    def interrupted(out, *args, **kwargs):
        (out / "checkpoint" / "backup").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_run", interrupted)
    assert command_line.main(["train", "--data", "sample", "--out", str(tmp_path / "run")]) == 130
    assert f"python -m vae_helpers train --out {tmp_path / 'run'} --resume" in capsys.readouterr().err


def test_demo_scores_the_pretrained_model_and_draws_the_manifold(tmp_path):
    result = cli("demo", "--data", "sample", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_no_noise(result.stderr + result.stdout)
    assert "Test ELBO on 1,000 test digits" in result.stdout
    assert (tmp_path / "vae-demo" / "manifold.png").stat().st_size > 10_000
    again = cli("demo", "--data", "sample", cwd=tmp_path)  # the demo may refresh its own folder
    assert again.returncode == 0, again.stderr


def test_demo_does_not_write_into_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = cli("demo", "--data", "sample", "--out", tmp_path / "mine")
    assert result.returncode == 2 and "did not write" in result.stderr
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_importing_the_package_prints_nothing():
    result = subprocess.run([sys.executable, "-c", "import vae_helpers, vae_helpers.models; vae_helpers.models.build_vae()"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""


@pytest.mark.parametrize("code", [
    "import vae_helpers.data",                                 # numpy only: loaders and checks
    "import vae_helpers.config, vae_helpers.quiz",
    "from vae_helpers import cli; cli.parser().parse_args(['train', '--epochs', '3'])",  # --help answers at once
])
def test_light_modules_do_not_load_tensorflow(code):
    result = subprocess.run([sys.executable, "-c", f"{code}; import sys; print('tensorflow' in sys.modules)"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_debug_flag_shows_the_traceback(tmp_path):
    plain = cli("train", "--data", tmp_path / "missing", "--out", tmp_path / "run")
    debug = cli("--debug", "train", "--data", tmp_path / "missing", "--out", tmp_path / "run")
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DataError" in debug.stderr


def test_recipe_fast_gives_its_settings_and_flags_beside_it_win(monkeypatch, tmp_path):
    from vae_helpers import cli as command_line, config, training

    seen = {}

    def record(out, settings, **kwargs):
        seen["settings"] = settings
        return None, {"test_elbo": -150.0, "best_epoch": 1, "knn_accuracy": 0.5, "files": []}

    monkeypatch.setattr(training, "train_run", record)
    out = str(tmp_path / "run")
    assert command_line.main(["train", "--data", "sample", "--recipe", "fast", "--epochs", "2", "--out", out]) == 0
    expected = {**config.recipe_settings("fast"), "data": "sample", "epochs": 2}  # with this CPU's precision and XLA
    assert seen["settings"] == config.TrainSettings(**expected)
    assert seen["settings"].lr_schedule == "cosine" and seen["settings"].lr_warmup > 0  # not the defaults
    assert command_line.main(["train", "--data", "sample", "--recipe", "default", "--out", out]) == 0
    assert seen["settings"] == config.TrainSettings(data="sample")


def test_recipe_and_lr_warmup_are_refused_by_name(tmp_path, capsys):
    from vae_helpers import cli as command_line

    out = str(tmp_path / "run")
    assert command_line.main(["train", "--recipe", "fast", "--resume", "--out", out]) == 2
    assert "--recipe cannot be combined with --resume" in capsys.readouterr().err
    assert command_line.main(["train", "--epochs", "3", "--lr-warmup", "3", "--out", out]) == 2
    assert "--lr-warmup must be a number of epochs from 0 to less than --epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        command_line.main(["train", "--recipe", "fastest", "--out", out])
    assert "invalid choice: 'fastest'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
