"""Which batch size and learning rate reach the book's test ELBO soonest on the bundled sample?

Trains the book's recipe once (10 epochs, as in the chapter) to fix the target ELBO, then trains the
package's VAE (Adam, ``"elbo"`` preset) with each (batch size, learning rate) pair until its test
ELBO reaches that target, scoring after every quarter epoch. Results go to
``benchmarks/results/sweep_sample.json``; the evidence behind the recommended defaults.

    python benchmarks/sweep_defaults.py                       # default grid, about 20 minutes
    python benchmarks/sweep_defaults.py --grid 16:1e-3,16:2e-3 --target -180.5
    python benchmarks/sweep_defaults.py --grid 16:1e-3 --target 0 --epochs 20 --out long_sample.json

A target of 0 is never reached, so the last form trains the whole 20 epochs: the long test-ELBO
curve that shows whether the 4,000-image sample starts to overfit.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import run_benchmarks as rb

DEFAULT_GRID = "16:1e-3,16:2e-3,16:3e-3,16:1e-3:rmsprop,16:1e-3:adam:book,16:1e-3:adam:elbo:1,32:1e-3"


def parse_grid(text):
    """``batch:lr[:optimizer[:loss[:kl_warmup_epochs]]]`` items, comma-separated, into dicts."""
    settings = []
    for item in text.split(","):
        parts = item.split(":")
        setting = {"batch_size": int(parts[0]), "learning_rate": float(parts[1]),
                   "optimizer": parts[2] if len(parts) > 2 else "adam",
                   "loss": parts[3] if len(parts) > 3 else "elbo",
                   "kl_warmup": float(parts[4]) if len(parts) > 4 else 0.0}
        settings.append(setting)
    return settings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default=DEFAULT_GRID, help="comma-separated batch:learning_rate pairs")
    parser.add_argument("--target", type=float, default=None,
                        help="target test ELBO (default: train the book's recipe for 10 epochs to get it)")
    parser.add_argument("--epochs", type=int, default=6, help="most epochs per setting")
    parser.add_argument("--append", help="JSON file of an earlier sweep whose runs to keep (same target)")
    parser.add_argument("--out", default="sweep_sample.json", help="file name in benchmarks/results/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import vae_helpers  # noqa: F401
    from vae_helpers.data import load_mnist

    (x_train, _), (x_test, _) = load_mnist("sample")
    record = {"machine": rb.machine_info(), "grid": args.grid, "seed": args.seed, "epochs": args.epochs, "runs": []}
    if args.append:
        earlier = json.loads(Path(args.append).read_text())
        record["runs"] = earlier["runs"]
        record["book"] = earlier.get("book")
        args.target = args.target if args.target is not None else earlier["target_elbo"]
    with tempfile.TemporaryDirectory(prefix="vae-sweep-") as tmp:
        train_path = rb.save_images(tmp, "train", x_train)
        test_path = rb.save_images(tmp, "test", x_test)
        if args.target is None:
            rb.log("book recipe, 10 epochs")
            book_curve = rb.run_book_training(train_path, x_test, 10, args.seed, tmp, 8)
            record["book"] = book_curve
            args.target = book_curve[-1]["test_elbo"]
        record["target_elbo"] = args.target
        rb.log(f"target test ELBO {args.target:.2f}")
        for setting in parse_grid(args.grid):
            started = time.perf_counter()
            curve = rb.run_package_training(train_path, test_path, args.epochs, 4, args.seed, 8, args.target,
                                            stop_after_target=True, **setting)
            reached = rb.first_reaching(curve, args.target)
            run = {**setting, "curve": curve,
                   "reached": reached is not None, "wall_seconds_incl_scoring": time.perf_counter() - started}
            if reached:
                run.update({"epochs_to_target": reached["epoch"], "seconds_to_target": reached["train_seconds"],
                            "cpu_seconds_to_target": reached["train_cpu_seconds"]})
            record["runs"].append(run)
            rb.log(f"{setting}: " + (f"target after {reached['epoch']:.2f} epochs, "
                                                      f"{reached['train_seconds']:.1f} s, "
                                                      f"{reached['train_cpu_seconds']:.1f} CPU s" if reached else
                                                      f"not reached (best {max(p['test_elbo'] for p in curve):.2f})"))
            rb.write_json(args.out, record)
    rb.write_json(args.out, record)


if __name__ == "__main__":
    main()
