"""Command line: ``python -m vae_helpers demo`` and ``python -m vae_helpers train``.

``demo`` is the first thing to run: it loads the shipped weights, scores them on test digits and
draws the latent manifold, in well under a minute. ``train`` trains a VAE into a run folder
(weights, run.json with settings and per-epoch metrics, figures) and can resume after an
interruption.
"""

import argparse
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

from vae_helpers.config import (FAST_ELSEWHERE, FAST_ON_BF16_CPU, LR_SCHEDULES, PRECISIONS, PRESETS, RECIPES,
                                TrainSettings, recipe_settings, runs_dir)
from vae_helpers.files import FileWriteError

DEMO_MARKER = "demo.json"
_STARTED = time.perf_counter()


def _flags(settings):
    """Settings as the command-line flags that ask for them: {"jit_compile": False} is --no-jit-compile."""
    return " ".join(f"--{'no-' if value is False else ''}{key.replace('_', '-')}"
                    + ("" if isinstance(value, bool) else f" {value}") for key, value in settings.items())


def seconds_since_process_start():
    """Wall time since this Python process started, TensorFlow's import included (Linux /proc; else since import)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return float(uptime.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _STARTED


def parser():
    """The argument parser; building it loads no TensorFlow, so ``--help`` answers at once."""
    defaults = TrainSettings()
    main = argparse.ArgumentParser(prog="python -m vae_helpers", description=__doc__.split("\n\n")[1])
    main.add_argument("--debug", action="store_true", help="on an error, show the full Python traceback")
    commands = main.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="score the shipped VAE and draw its latent manifold")
    demo.add_argument("--data", default="auto", help="auto (default), keras, sample, or an IDX folder")
    demo.add_argument("--latent-dim", type=int, default=2, choices=[2, 16], help="which shipped model (default 2)")
    demo.add_argument("--out", default="vae-demo", help="folder for the figures (default: vae-demo)")

    train = commands.add_parser("train", help="train a VAE into a run folder",
                                description="Settings left out take their defaults; with --resume they come from "
                                            "the run's run.json, and only --epochs may change (to extend the run).")
    train.add_argument("--data", help="auto (default), keras, sample, or an IDX folder")
    train.add_argument("--recipe", choices=sorted(RECIPES),
                       help=f"a named set of settings; flags given beside it win. fast: {_flags(RECIPES['fast'])}, "
                            f"and on a CPU with AMX {_flags(FAST_ON_BF16_CPU)}, elsewhere {_flags(FAST_ELSEWHERE)} "
                            "(reached the book's 10-epoch test ELBO after 3.5 to 5 epochs, where the default needs 8.5 "
                            "and the book 10; see BENCHMARKS.md); default: the defaults below")
    train.add_argument("--epochs", type=int, help=f"number of epochs in all (default {defaults.epochs})")
    train.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    train.add_argument("--latent-dim", type=int, help=f"default {defaults.latent_dim}")
    train.add_argument("--loss", choices=sorted(PRESETS),
                       help="elbo: beta = 1 (default); book: the 1st edition's objective and sampling")
    train.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    train.add_argument("--learning-rate", type=float, help=f"default {defaults.learning_rate}")
    train.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                       help="constant (default) or cosine: decay to 5%% of the learning rate over the run")
    train.add_argument("--lr-warmup", type=float,
                       help="epochs over which the learning rate first rises from 0 (default 0: none)")
    train.add_argument("--kl-warmup", type=float,
                       help="epochs over which the KL's weight rises from 0 to 1 (default 0: none)")
    train.add_argument("--validation-fraction", type=float,
                       help=f"share of the training images held out to pick the best epoch (default {defaults.validation_fraction})")
    train.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                       help="compile the training step with XLA on TensorFlow: about 1.25x fewer CPU-seconds per image "
                            "at batch 16 on a CPU without AMX (slower on one with it), a few seconds of compiling first "
                            "(default: off)")
    train.add_argument("--precision", choices=PRECISIONS,
                       help="arithmetic of the hidden layers: float32 (default), or bfloat16, about 2x fewer CPU-seconds "
                            "per image on a CPU with AMX, slower on others (refused on TensorFlow without AVX-512); weights and "
                            "scores stay float32")
    train.add_argument("--out", default=None, help="run folder (default: vae-runs/<loss>-z<dim>-seed<seed>)")
    replace = train.add_mutually_exclusive_group()
    replace.add_argument("--force", action="store_true", help="replace the run files in an existing --out")
    replace.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    train.add_argument("--deterministic", action="store_true",
                       help="TensorFlow's deterministic kernels (CPU runs repeat exactly without them)")
    train.add_argument("--quiet", action="store_true", help="no progress bar, one line per epoch")
    return main


SETTINGS = [field.name for field in dataclasses.fields(TrainSettings)]


def asked_settings(args):
    """The settings given on the command line, as a dict (flags left out are not in it)."""
    return {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}


def run_train(args):
    asked = asked_settings(args)
    if args.recipe is not None:
        if args.resume:
            raise ValueError("--recipe cannot be combined with --resume: a resumed run keeps the settings in its "
                             "run.json; drop --recipe")
        asked = {**recipe_settings(args.recipe), **asked}
    settings = TrainSettings(**asked)
    if not args.resume:  # on resume the values are compared with the run's record instead
        settings.validate()  # a nonsense value is refused before TensorFlow loads
    out = Path(args.out or Path(runs_dir()) / f"{settings.loss}-z{settings.latent_dim}-seed{settings.seed}")

    from vae_helpers.training import CHECKPOINT_DIR, train_run

    try:
        _, record = train_run(out, asked if args.resume else settings, force=args.force, resume=args.resume,
                              deterministic=args.deterministic, progress="epoch" if args.quiet else "bar",
                              command=args.command_line)
    except KeyboardInterrupt:
        if (out / CHECKPOINT_DIR / "backup").is_dir():
            print(f"\nInterrupted. The last finished epoch is saved; continue with:\n"
                  f"  python -m vae_helpers train --out {out} --resume", file=sys.stderr)
        else:
            print("\nInterrupted before the first epoch ended: nothing to resume.", file=sys.stderr)
        return 130
    print(f"\nTest ELBO: {record['test_elbo']:.2f} nats per image "
          f"(best validation epoch {record['best_epoch']}); k-NN accuracy on codes: {record['knn_accuracy']:.3f}")
    print(f"Saved in {out}/: " + ", ".join(record["files"]))
    return 0


def run_demo(args):
    from vae_helpers.data import load_mnist
    from vae_helpers.evaluation import elbo
    from vae_helpers.pretrained import load_pretrained, pretrained_record
    from vae_helpers.training import RunFolderError, save_figures, write_json

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder; pass another --out")
    if out.exists() and any(out.iterdir()) and not (out / DEMO_MARKER).is_file():
        raise RunFolderError(f"{out} holds files that the demo did not write; pass another --out")
    out.mkdir(parents=True, exist_ok=True)
    print(f"Loading the pretrained {args.latent_dim}-D VAE shipped with vae_helpers ...")
    vae = load_pretrained(args.latent_dim)
    _, (x_test, y_test) = load_mnist(args.data)
    score = elbo(vae, x_test, n_samples=4)
    paths = save_figures(vae, out, x_test, y_test, pretrained_record(args.latent_dim)["history"])
    write_json(out / DEMO_MARKER, {"test_images": len(x_test), "test_elbo": score})
    print(f"Test ELBO on {len(x_test):,} test digits: {score:.2f} nats per image "
          f"(the ELBO is a lower bound on log p(x): closer to 0 is better)")
    for path in paths:
        print(f"  wrote {path}")
    print(f"Done in {seconds_since_process_start():.0f} s. Next: open the notebooks with 'jupyter lab notebooks/'.")
    return 0


def error_line(err):
    """The one line printed for an error: an OSError names its file and says why."""
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return str(err)


def main(argv=None):
    argv_given = argv
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    args = parser().parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "vae_helpers", *argv])  # recorded in run.json
    try:
        return run_demo(args) if args.command == "demo" else run_train(args)
    except KeyboardInterrupt:  # before training started (e.g. while TensorFlow loads): nothing to say
        return 130
    except (ValueError, OSError) as err:  # DataError, WeightsError, RunFolderError, TrainingDiverged included
        if args.debug:
            raise
        print(f"error: {error_line(err)}", file=sys.stderr)
        if argv_given is None and isinstance(err, FileWriteError):
            # HDF5 cannot close a file whose write failed (a full disk) and crashes when the interpreter
            # shuts down; everything is reported and recorded, so the process ends here with its own code.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
