"""Fine-tune the shipped 2-D VAE at each beta of ``beta.SWEEP_BETAS`` and ship what notebook 6 plots.

    python scripts/beta_sweep.py --mnist ../shared/data/mnist

Each run starts from the shipped weights and trains ``--steps`` steps of ``--batch-size`` digits
(Adam, ``beta.FINE_TUNE_LEARNING_RATE``) with ``reconstruction + beta * KL``; two more runs at the
largest beta show what a KL warm-up and free bits change. Each model is scored on the first
``--test`` test digits: rate (KL), distortion (reconstruction), KL per dimension, active units, and
which digits a pixel classifier sees in 500 samples from the prior. Writes
``vae_helpers/resources/beta_sweep.json`` and ``beta_sweep.npz`` (each model's 12 x 12 manifold, uint8).
"""

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

from vae_helpers import beta as beta_module
from vae_helpers import data, evaluation, latent, losses, plotting
from vae_helpers.files import atomic_write, write_json
from vae_helpers.training import versions

RESOURCES = Path(beta_module.__file__).parent / "resources"
GRID = 12


def score(vae, x_test, x_train, y_train, seed=0):
    """Rate, distortion and code use on the test digits, and the classes of 500 digits drawn from the prior."""
    scores = evaluation.rate_distortion(vae, x_test, n_samples=2, seed=seed)
    prior = latent.decode(vae, np.random.default_rng(seed).standard_normal((500, 2)))
    classes = np.bincount(evaluation.classify_digits(prior, x_train, y_train), minlength=10)
    return {"rate": scores["rate"], "distortion": scores["distortion"], "elbo": scores["elbo"],
            "kl_per_dim": scores["kl_per_dim"].tolist(), "active_units": scores["active_units"],
            "prior_sample_classes": classes.tolist(),
            "prior_sample_pixel_std": float(prior.std(axis=0).mean())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", required=True, help="folder of the canonical MNIST files")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--test", type=int, default=5000, help="test digits to score on (default 5,000)")
    parser.add_argument("--free-bits", type=float, default=1.5, help="nats per dimension in the free-bits run")
    parser.add_argument("--out", type=Path, default=RESOURCES)
    args = parser.parse_args(argv)
    (x_train, y_train), (x_test, _) = data.load_mnist(args.mnist)
    x_test = x_test[:args.test]
    largest = max(beta_module.SWEEP_BETAS)
    runs = [{"beta": b, "variant": "plain"} for b in beta_module.SWEEP_BETAS]
    runs += [{"beta": largest, "variant": "kl_warmup", "warmup_steps": args.steps // 2},
             {"beta": largest, "variant": "free_bits", "free_bits": args.free_bits}]
    grids = {}
    for i, run in enumerate(runs):
        started = time.perf_counter()
        penalty = (functools.partial(losses.free_bits_kl, free_bits=run["free_bits"])
                   if run["variant"] == "free_bits" else None)
        vae = beta_module.from_shipped(run["beta"], kl_penalty=penalty)
        history = beta_module.fine_tune(vae, x_train, steps=args.steps, batch_size=args.batch_size,
                                        warmup_steps=run.get("warmup_steps", 0))
        run.update(score(vae, x_test, x_train, y_train), key=f"run{i}",
                   train_loss=history["loss"][-1], seconds=round(time.perf_counter() - started, 1))
        grids[run["key"]] = np.round(latent.decode(vae, plotting.manifold_codes(GRID)).reshape(GRID, GRID, 28, 28)
                                     * 255).astype(np.uint8)
        print(f"beta {run['beta']:g} {run['variant']}: rate {run['rate']:.2f}, distortion {run['distortion']:.2f}, "
              f"active {run['active_units']}, KL/dim {np.round(run['kl_per_dim'], 2)}, {run['seconds']} s", flush=True)
    record = {"command": "python scripts/beta_sweep.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "settings": {"steps": args.steps, "batch_size": args.batch_size,
                           "learning_rate": beta_module.FINE_TUNE_LEARNING_RATE, "test_digits": len(x_test),
                           "free_bits": args.free_bits, "warmup_steps": args.steps // 2,
                           "start": "the shipped 2-D model (vae_mnist_z2)", "grid": GRID},
              "versions": versions(), "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "beta_sweep.npz", lambda tmp: np.savez_compressed(tmp, **grids))
    write_json(args.out / "beta_sweep.json", record)
    print(f"wrote {args.out / 'beta_sweep.json'} and beta_sweep.npz")


if __name__ == "__main__":
    main()
