"""Benchmarks of vae_helpers against the book's recipe on full MNIST; results as JSON in benchmarks/results/.

    pip install -e . -r requirements-bench.txt            # adds tf_keras for the book's recipe
    python benchmarks/run_benchmarks.py --mnist ../shared/data/mnist          # everything (about 2 hours on 2 cores)
    python benchmarks/run_benchmarks.py --mnist ../shared/data/mnist --quick  # smoke run, a few minutes
    python benchmarks/run_benchmarks.py --mnist ../shared/data/mnist --only manifold,decode

Sections: ``machine``; ``throughput`` (images per second and per CPU-second, the book against
``train_vae`` at four batch sizes, and at 16 and 128 with XLA, which also gives the cost of a 60,000-image epoch); ``quality``
(time for the book's recipe and for several package recipes to reach the book's 10-epoch test
ELBO; ``--recipes`` picks some); ``diagnose`` (the recipes whose curves need explaining, with their
KL, active units and dead ReLUs); ``manifold`` (the book's 225 ``predict`` calls against one batched decode); ``decode`` (a
widget's single-code decode); ``backends`` (``train_vae`` at batch 16 and 128 on TensorFlow, JAX and
PyTorch, each from its own environment with ``--backend-python``). Without ``--mnist`` the data comes from ``load_mnist("auto")``.

Both sides train in fresh subprocesses (the book's code needs graph-mode tf_keras, which cannot
share a process with Keras 3), alternating where they are compared, and every measurement carries
the 1-minute load average. Comparisons are ratios of medians measured in the same run.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SECTIONS = ("machine", "throughput", "quality", "diagnose", "manifold", "decode", "backends")
BACKENDS = ("tensorflow", "jax", "torch")
#: Package recipes for the time-to-quality race: name -> package_worker.py arguments.
RECIPES = {
    "default (batch 16, Adam 1e-3)": [],
    "batch 64, Adam 2e-3": ["--batch-size", "64", "--learning-rate", "2e-3"],
    "batch 128, Adam 3e-3": ["--batch-size", "128", "--learning-rate", "3e-3"],
    "batch 16, cosine decay over 10 epochs": ["--schedule", "cosine"],
    "batch 16, KL warm-up over 1 epoch": ["--kl-warmup", "1"],
    "--recipe fast": ["--recipe", "fast"],
    "--recipe fast, float32 with XLA": ["--recipe", "fast", "--precision", "float32"],
}
#: The package's throughput variants: batch sizes, "x" for the step compiled by XLA (``--recipe fast`` without AMX),
#: "b" for bfloat16 hidden layers (``--recipe fast`` on a CPU with AMX).
THROUGHPUT_BATCHES = "16,16x,16b,32,32b,64,64b,128,128x,128b"
#: Recipes whose curves need explaining (section "diagnose"): trained for a few epochs, logging KL and active units.
DIAGNOSED = ("batch 128, Adam 3e-3", "batch 16, KL warm-up over 1 epoch")
PLANS = {"full": {"images": 12_800, "repeats": 2, "book_epochs": 10, "max_epochs": 10, "decodes": 2000, "rounds": 5,
                  "diagnose_epochs": 2, "backend_images": 1_600},
         "quick": {"images": 1_600, "repeats": 1, "book_epochs": 1, "max_epochs": 1, "decodes": 100, "rounds": 1,
                   "train": 3_200, "test": 500, "diagnose_epochs": 1, "backend_images": 512}}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {message}", flush=True)


def worker(script, *args, legacy=False, backend=None, python=None):
    """Run a benchmark worker in a fresh Python (on Keras' ``backend``, if given); return the JSON it prints last."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"} if legacy else dict(os.environ)
    if backend:
        env["KERAS_BACKEND"] = backend
    result = subprocess.run([python or sys.executable, str(HERE / script), *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=None, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine():
    from importlib.metadata import version

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    libraries = {}
    for name in ("tensorflow-cpu", "keras", "tf_keras", "numpy"):
        try:
            libraries[name] = version(name)
        except Exception:  # not installed
            libraries[name] = None
    from vae_helpers.config import cpu_flags

    vector_units = sorted(flag for flag in cpu_flags() or () if flag.startswith(("avx", "amx")))
    return {"cpu": cpu, "cpu_vector_flags": vector_units, "cpus": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(), "libraries": libraries,
            "commit": commit.stdout.strip(), "started": time.strftime("%Y-%m-%d %H:%M %z"), "load": os.getloadavg()}


def throughput(files, plan):
    """Book (batch 16) and package (batch 16-128) epochs on the same images, book/package/package/book."""
    runs = {"book": [], "package": []}
    for repeat in range(plan["repeats"]):
        for side in ("book", "package") if repeat % 2 == 0 else ("package", "book"):
            log(f"throughput: {side}, repeat {repeat + 1}")
            if side == "book":
                result = worker("book_recipe.py", "--task", "throughput", "--data", files["train"],
                                "--images", plan["images"], "--repeats", 1, legacy=True)
            else:
                result = worker("package_worker.py", "--task", "throughput", "--data", files["train"],
                                "--batch-sizes", THROUGHPUT_BATCHES, "--images", plan["images"], "--repeats", 1)
            runs[side] += result["runs"]
    return runs


def backends(files, plan, pythons):
    """``train_vae`` at batch 16 and 128 on each Keras backend, round-robin (then reversed), the same images."""
    runs = {name: [] for name in pythons}
    for repeat in range(plan["repeats"]):
        for name in list(pythons) if repeat % 2 == 0 else list(pythons)[::-1]:
            log(f"backends: {name}, repeat {repeat + 1}")
            result = worker("package_worker.py", "--task", "throughput", "--data", files["train"], "--batch-sizes",
                            "16,128", "--images", plan["backend_images"], "--repeats", 1, backend=name,
                            python=pythons[name])
            runs[name] += result["runs"]
    return {"runs": runs, "pythons": pythons}


def backend_pythons(spec):
    """{backend: interpreter} from ``--backend-python jax=PATH,torch=PATH``; this Python for the others."""
    pythons = dict.fromkeys(BACKENDS, sys.executable)
    for item in filter(None, (spec or "").split(",")):
        name, _, path = item.partition("=")
        if name not in BACKENDS or not path:
            sys.exit(f"run_benchmarks: --backend-python takes backend=PATH pairs of {BACKENDS}, got {item!r}")
        pythons[name] = path
    return pythons


def score_book_epochs(book, x_test, n_samples):
    """Test ELBO of each saved book epoch, scored with the posterior the book samples (the "book" preset)."""
    from vae_helpers.evaluation import elbo
    from vae_helpers.models import build_vae

    vae = build_vae(loss="book", compile=False)
    for epoch in book["epochs"]:
        saved = np.load(epoch["weights"])
        vae.encoder.set_weights([saved[f"e{i}"] for i in range(len(vae.encoder.get_weights()))])
        vae.decoder.set_weights([saved[f"d{i}"] for i in range(len(vae.decoder.get_weights()))])
        epoch["test_elbo"] = elbo(vae, x_test, n_samples=n_samples, seed=0)
        log(f"book epoch {epoch['epoch']}: {epoch['seconds']:.0f} s, test ELBO {epoch['test_elbo']:.2f}")
    return book


def quality(files, plan, x_test, folder, recipes, together=False):
    """The book's recipe for ``book_epochs`` epochs, then each package recipe until it reaches the book's final ELBO.

    ``together``: each package recipe trains at the same time as the book (a shared machine's load then hits both
    alike), for all its epochs, and its time to the target is read off its curve afterwards.
    """
    started = {}
    if together:
        for name, arguments in recipes.items():
            log(f"quality: {name}, {plan['max_epochs']} epochs at most, beside the book")
            started[name] = subprocess.Popen(
                [sys.executable, str(HERE / "package_worker.py"), "--task", "quality", "--data", str(files["train"]),
                 "--test", str(files["test"]), "--name", name, "--epochs", str(plan["max_epochs"]), *arguments],
                text=True, stdout=subprocess.PIPE)
    log(f"quality: the book's recipe, {plan['book_epochs']} epochs")
    book = worker("book_recipe.py", "--task", "train", "--data", files["train"], "--epochs", plan["book_epochs"],
                  "--out", folder, legacy=True)
    book = score_book_epochs(book, x_test, n_samples=2)
    target = book["epochs"][-1]["test_elbo"]
    results = {}
    for name, arguments in recipes.items():
        if together:
            out, _ = started[name].communicate()
            if started[name].returncode:
                raise subprocess.CalledProcessError(started[name].returncode, name)
            results[name] = json.loads(out.strip().splitlines()[-1])["curve"]
            continue
        log(f"quality: {name}, up to {plan['max_epochs']} epochs or test ELBO {target:.2f}")
        results[name] = worker("package_worker.py", "--task", "quality", "--data", files["train"], "--test",
                               files["test"], "--name", name, "--epochs", plan["max_epochs"], "--target", target,
                               *arguments)["curve"]
    return {"target": target, "book": book["epochs"], "recipes": results, "recipe_arguments": recipes,
            "together": together}


def diagnose(files, plan):
    """The recipes of ``DIAGNOSED`` for a few epochs: test ELBO, training KL, active units and dead ReLUs twice an epoch."""
    curves = {}
    for name in DIAGNOSED:
        log(f"diagnose: {name}, {plan['diagnose_epochs']} epochs")
        curves[name] = worker("package_worker.py", "--task", "quality", "--data", files["train"], "--test",
                              files["test"], "--name", name, "--epochs", plan["diagnose_epochs"], *RECIPES[name])["curve"]
    return {"recipes": curves, "recipe_arguments": {name: RECIPES[name] for name in DIAGNOSED}}


def manifold(files, plan):
    """Seconds to draw the 15 x 15 manifold: the book's predict loop (Keras 3, tf_keras) against one batched decode."""
    from book_manifold import book_manifold_loop  # same folder: this file runs as a script

    from vae_helpers.models import build_vae
    from vae_helpers.plotting import manifold_grid

    vae = build_vae()
    manifold_grid(vae)  # trace once
    book_manifold_loop(vae.decoder, n=2)
    grid, loop = [], []
    for _ in range(plan["rounds"]):
        started = time.perf_counter()
        manifold_grid(vae)
        grid.append(time.perf_counter() - started)
        started = time.perf_counter()
        book_manifold_loop(vae.decoder)
        loop.append(time.perf_counter() - started)
    legacy = worker("book_recipe.py", "--task", "manifold", "--repeats", plan["rounds"], legacy=True)["runs"]
    return {"manifold_grid": grid, "book_loop_keras3": loop, "book_loop_tf_keras": [r["seconds"] for r in legacy]}


def decode_latency(plan):
    """Milliseconds per single-code ``latent.decode``, what a widget does on every slider move."""
    from vae_helpers.latent import decode
    from vae_helpers.pretrained import load_pretrained

    vae = load_pretrained()
    codes = np.random.default_rng(0).normal(size=(plan["decodes"], 2)).astype(np.float32)
    decode(vae, codes[0])
    times = []
    for code in codes:
        started = time.perf_counter()
        decode(vae, code)
        times.append(1000 * (time.perf_counter() - started))
    return {"ms": times, "load": os.getloadavg()[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", help="folder of the MNIST IDX files (default: load_mnist('auto'))")
    parser.add_argument("--quick", action="store_true", help="a smoke run: little data, one epoch")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--together", action="store_true",
                        help="quality: train the package recipes at the same time as the book (for a shared machine)")
    parser.add_argument("--recipes", default=None,
                        help=f"quality: comma-separated numbers (1-based) of the recipes to race, of {list(RECIPES)}")
    parser.add_argument("--backend-python", default=None,
                        help="backends: the Python of each backend's environment, e.g. jax=.venv-jax/bin/python,"
                             "torch=.venv-torch/bin/python (default: this Python for all three)")
    args = parser.parse_args(argv)
    sections = args.only.split(",")
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        sys.exit(f"run_benchmarks: unknown sections {unknown}; choose from {SECTIONS}")
    plan = PLANS["quick" if args.quick else "full"]
    recipes = RECIPES
    if args.recipes:
        names = list(RECIPES)
        recipes = {names[int(i) - 1]: RECIPES[names[int(i) - 1]] for i in args.recipes.split(",")}
    prefix = "quick_" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    sys.path.insert(0, str(HERE))

    from vae_helpers.data import load_mnist

    (x_train, _), (x_test, _) = load_mnist(args.mnist or "auto")
    x_train, x_test = x_train[:plan.get("train")], x_test[:plan.get("test")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        files = {"train": Path(folder) / "x_train.npy", "test": Path(folder) / "x_test.npy"}
        np.save(files["train"], x_train)
        np.save(files["test"], x_test)
        jobs = {"machine": machine, "throughput": lambda: throughput(files, plan),
                "quality": lambda: quality(files, plan, x_test, folder, recipes, args.together),
                "diagnose": lambda: diagnose(files, plan),
                "manifold": lambda: manifold(files, plan), "decode": lambda: decode_latency(plan),
                "backends": lambda: backends(files, plan, backend_pythons(args.backend_python))}
        for section in sections:
            result = {"section": section, "data": {"train": len(x_train), "test": len(x_test)}, **{"result": jobs[section]()}}
            (RESULTS / f"{prefix}{section}.json").write_text(json.dumps(result, indent=1) + "\n")
            log(f"wrote {RESULTS / (prefix + section)}.json")
    log(f"done in {(time.perf_counter() - started) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
