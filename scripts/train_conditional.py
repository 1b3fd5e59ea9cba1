"""Train the 2-D conditional VAE on MNIST, score it on the 10,000 test digits and, with --ship, ship it.

    TF_NUM_INTEROP_THREADS=1 TF_NUM_INTRAOP_THREADS=1 python scripts/train_conditional.py \\
        --data ../shared/data/mnist --epochs 8 --out vae-runs/cvae-z2 --ship

The run folder receives ``weights.weights.h5`` (no optimizer state), ``run.json`` (the exact command,
settings, per-epoch history, library versions, timings and scores) and ``checkpoint/``: the same
command run again after an interruption continues from the last finished epoch, and ends with the
weights of an uninterrupted run (``training.train_vae``). The defaults are ``--recipe fast`` of the
CLI (batch 16, Adam 2e-3, 0.2-epoch learning-rate warm-up, cosine decay); the first 54,000 of the
training digits train, 6,000 (``training.split_validation``) pick the best epoch by validation ELBO.

Scores (on the MNIST test set unless said otherwise):

* ``test_elbo``: mean ELBO of log p(x | label), 8 draws of z per digit (``conditional.elbo``);
* ``judge``: ``conditional.judge_accuracy``, 1,000 digits per class drawn from the prior and judged
  by a 3-NN on pixels among all 60,000 training digits (overall, per class, confusion matrix);
* ``swap_accuracy``: the style measure: the first 1,000 test digits, each encoded with its own label
  and decoded with all ten labels, judged the same way (does the same code write every digit?);
* ``knn_accuracy``: 5-NN accuracy of the test digits' codes among the training digits' codes: how
  much of the class is left in z (chance is 0.10; the plain 2-D VAE's codes give 0.77);
* ``active_units``: latent dimensions whose posterior means vary across the test digits (variance > 0.01).

``--ship`` copies the weights to ``vae_helpers/resources/pretrained/cvae_mnist_z<d>.weights.h5`` and
writes the record beside it with the copy's SHA-256, which ``pretrained.load_pretrained(d,
conditional=True)`` checks on every load.
"""

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from vae_helpers import conditional, data, pretrained
from vae_helpers._backend import keras, set_seed
from vae_helpers.config import RECIPES, TrainSettings
from vae_helpers.evaluation import classify_digits
from vae_helpers.files import sha256_of, write_json, write_weights_and_record
from vae_helpers.training import (CHECKPOINT_DIR, RECORD_FILE, WEIGHTS_FILE, best_epoch, learning_rate,
                                  split_validation, versions)
from vae_helpers.optimizers import Adam

RESOURCES = Path(pretrained.__file__).parent / "resources" / "pretrained"
FAST = RECIPES["fast"]
SWAP_DIGITS = 1000


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="auto", help="MNIST source: an IDX folder, 'keras', 'sample' or 'auto'")
    parser.add_argument("--out", type=Path, required=True, help="run folder (created; an unfinished run in it is resumed)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=FAST["batch_size"])
    parser.add_argument("--learning-rate", type=float, default=FAST["learning_rate"])
    parser.add_argument("--lr-schedule", default=FAST["lr_schedule"], choices=("constant", "cosine"))
    parser.add_argument("--lr-warmup", type=float, default=FAST["lr_warmup"], help="epochs of learning-rate warm-up")
    parser.add_argument("--kl-warmup", type=float, default=0.0, help="epochs of KL warm-up")
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--judge-per-class", type=int, default=1000, help="generated digits per class for the judge")
    parser.add_argument("--ship", action="store_true", help="copy the weights and record into the package's resources")
    args = parser.parse_args(argv)
    settings = TrainSettings(data=args.data, epochs=args.epochs, batch_size=args.batch_size,
                             latent_dim=args.latent_dim, seed=args.seed, learning_rate=args.learning_rate,
                             lr_schedule=args.lr_schedule, lr_warmup=args.lr_warmup, kl_warmup=args.kl_warmup,
                             validation_fraction=args.validation_fraction)
    try:
        settings.validate()
    except ValueError as err:
        parser.error(str(err))
    if args.judge_per_class < 1:
        parser.error(f"--judge-per-class must be a positive integer, got {args.judge_per_class}")
    if args.ship and settings.latent_dim not in pretrained.SHIPPED_CONDITIONAL:
        parser.error(f"--ship: the package ships conditional models with --latent-dim "
                     f"{sorted(pretrained.SHIPPED_CONDITIONAL)} only (add a name to pretrained.SHIPPED_CONDITIONAL)")
    return args, settings


def check_folder(out, settings):
    """Exit with a message unless ``out`` is new, empty, or holds a run of these very settings (then it is resumed)."""
    record = out / RECORD_FILE
    if record.is_file():
        saved = json.loads(record.read_text()).get("settings", {})
        mine = {**dataclasses.asdict(settings), "n_classes": conditional.N_CLASSES}
        if saved != mine:
            changed = sorted(key for key in mine if saved.get(key) != mine[key])
            sys.exit(f"train_conditional: {out} holds a run with other settings ({', '.join(changed)} differ); "
                     "choose another --out")
        return True
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        sys.exit(f"train_conditional: {out} exists and holds no {RECORD_FILE}; choose another --out")
    return False


def knn_code_accuracy(cvae, x_train, y_train, x_test, y_test, k=5):
    """5-NN accuracy of the test digits' posterior means among the training digits' (each encoded with its label)."""
    from scipy.spatial import cKDTree

    z_train, z_test = conditional.encode(cvae, x_train, y_train), conditional.encode(cvae, x_test, y_test)
    _, nearest = cKDTree(z_train).query(z_test, k=k)
    votes = np.apply_along_axis(np.bincount, 1, y_train[nearest], minlength=conditional.N_CLASSES)
    return float(np.mean(votes.argmax(axis=1) == y_test)), z_test


def swap_accuracy(cvae, x_train, y_train, x_test, y_test, n=SWAP_DIGITS):
    """Each of ``n`` test digits' code (given its own label) decoded with every label; the fraction judged as that label."""
    codes = conditional.encode(cvae, x_test[:n], y_test[:n])
    labels = np.tile(np.arange(conditional.N_CLASSES), n)
    images = conditional.decode(cvae, np.repeat(codes, conditional.N_CLASSES, axis=0), labels)
    return float(np.mean(classify_digits(images, x_train, y_train) == labels))


def scores(cvae, splits, per_class):
    (x_train, y_train), (x_test, y_test) = splits
    started = time.perf_counter()
    judge = conditional.judge_accuracy(cvae, x_train, y_train, per_class=per_class, seed=0)
    knn, z_test = knn_code_accuracy(cvae, x_train, y_train, x_test, y_test)
    result = {
        "test_elbo": conditional.elbo(cvae, x_test, y_test, n_samples=8, seed=0),
        "judge_accuracy": judge.accuracy,
        "judge": judge.as_dict(),
        "swap_accuracy": swap_accuracy(cvae, x_train, y_train, x_test, y_test),
        "knn_accuracy": knn,
        "active_units": int(np.sum(np.var(z_test, axis=0) > 0.01)),
    }
    result["scored_on"] = (f"MNIST test set, {len(x_test):,} digits; judge: {per_class:,} generated digits per class "
                           f"against {len(x_train):,} training digits; {time.perf_counter() - started:.0f} s to score")
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args, settings = parse(argv)
    out = args.out
    resuming = check_folder(out, settings)
    splits = data.load_mnist(settings.data)
    (x_train, y_train), (x_test, y_test) = splits
    x_fit, x_val = split_validation(x_train, settings.validation_fraction, settings.seed)
    y_fit, y_val = split_validation(y_train, settings.validation_fraction, settings.seed)  # the same permutation
    set_seed(settings.seed)
    cvae = conditional.build_conditional_vae(settings.latent_dim, conditional.N_CLASSES, seed=settings.seed,
                                             compile=False)
    cvae.compile(Adam(learning_rate(settings, len(x_fit))))
    record = {
        "command": "python scripts/train_conditional.py " + shlex.join(argv),
        "settings": {**dataclasses.asdict(settings), "n_classes": conditional.N_CLASSES},
        "model": "conditional VAE: the book's network, one-hot label beside the encoder's flattened features "
                 "and beside z (vae_helpers.conditional)",
        "status": "running",
        "versions": versions(),
        "threads": {name: os.environ.get(name) for name in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS")}
                   | {"cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
        "data": {"train": len(x_fit), "validation": 0 if x_val is None else len(x_val), "test": len(x_test)},
        "data_sha256": data.data_digest(splits),
    }
    out.mkdir(parents=True, exist_ok=True)
    if resuming:  # the record keeps the first command; each resume adds its own
        saved = json.loads((out / RECORD_FILE).read_text())
        record = {**saved, "resumes": [*saved.get("resumes", []), record["command"]], "status": "running"}
        print(f"Resuming the run in {out} from its last finished epoch.")
    write_json(out / RECORD_FILE, record)
    wall, cpu = time.perf_counter(), time.process_time()
    history = conditional.train_conditional_vae(cvae, x_fit, y_fit, settings.epochs, settings.batch_size,
                                                x_val=x_val, y_val=y_val, seed=settings.seed, progress="epoch",
                                                checkpoint_dir=out / CHECKPOINT_DIR, kl_warmup=settings.kl_warmup)
    record.update({
        "status": "finished", "history": history, "best_epoch": best_epoch(history),
        "best_val_elbo": max(history["val_elbo"]) if history.get("val_elbo") else None,
        "train_seconds_this_session": time.perf_counter() - wall,
        "train_cpu_seconds_this_session": time.process_time() - cpu,
    })
    record.update(scores(cvae, splits, args.judge_per_class))
    conditional.save_conditional_weights(cvae, out / WEIGHTS_FILE)
    record["weights_sha256"] = sha256_of(out / WEIGHTS_FILE)
    write_json(out / RECORD_FILE, record)
    if args.ship:
        name = pretrained.SHIPPED_CONDITIONAL[settings.latent_dim]
        record = write_weights_and_record((out / WEIGHTS_FILE).read_bytes(), RESOURCES / f"{name}.weights.h5",
                                          record, RESOURCES / f"{name}.json")
        print(f"Shipped as {RESOURCES / name}.weights.h5 and .json")
    print(json.dumps({key: record[key] for key in ("command", "test_elbo", "judge_accuracy", "swap_accuracy",
                                                   "knn_accuracy", "train_seconds_this_session")}, indent=1))
    print("judge per class:", record["judge"]["per_class"])


if __name__ == "__main__":
    main()
