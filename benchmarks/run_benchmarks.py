"""Benchmarks of vae_helpers against the book's recipe; results as JSON in benchmarks/results/.

Usage (from the repository root, after ``pip install -e . -r requirements-bench.txt``)::

    python benchmarks/run_benchmarks.py --quick        # smoke run, under 3 minutes
    python benchmarks/run_benchmarks.py                # full run, about 40 minutes on 2 cores
    python benchmarks/run_benchmarks.py --only manifold,decode

Every comparison is measured in the same run, alternating the variants (ABAB) so a change in
machine load hits both, and is reported as a ratio of medians. Each measurement carries the
1-minute load average at the time, because the numbers mean little without it on a shared machine.
The book's recipe runs in a subprocess on legacy tf_keras (``book_recipe.py``); the package's
training runs in a subprocess too (``package_worker.py``) so both pay the same start-up.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from book_manifold import book_manifold_loop  # same folder: this file runs as a script

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
SECTIONS = ("machine", "throughput", "quality_sample", "quality_fashion", "manifold", "decode", "notebooks")

# How much work each section does. Full mode is sized to stay under ~45 minutes on 2 shared cores.
PLANS = {
    "quick": {
        "throughput": {"images": 512, "repeats": 1, "rounds": 1, "batch_sizes": "16,32,64,128"},
        "quality_sample": {"train_images": 800, "book_epochs": 2, "package_epochs": 2, "slices": 2,
                           "seeds": [0]},
        "quality_fashion": {"train_images": 1000, "test_images": 1000, "book_epochs": 1, "package_epochs": 1,
                            "slices": 2, "n_samples": 2},
        "manifold": {"rounds": 1, "n": 5},
        "decode": {"updates": 200},
    },
    "full": {
        "throughput": {"images": 3200, "repeats": 2, "rounds": 2, "batch_sizes": "16,32,64,128"},
        "quality_sample": {"train_images": None, "book_epochs": 10, "package_epochs": 12, "slices": 4,
                           "seeds": [0, 1]},
        "quality_fashion": {"train_images": None, "test_images": None, "book_epochs": 2, "package_epochs": 3,
                            "slices": 4, "n_samples": 2},
        "manifold": {"rounds": 5, "n": 15},
        "decode": {"updates": 2000},
    },
}
#: Optional second package recipe for the time-to-quality runs (``--candidate batch:lr``); none by
#: default, because the sweep in sweep_defaults.py found no batch size / learning rate that beats
#: the package's default per unit of compute (see BENCHMARKS.md).
CANDIDATE = None


def log(message):
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {message}", flush=True)


def loadavg():
    return round(os.getloadavg()[0], 2)


def median(values):
    return statistics.median(values) if values else None


# ----------------------------------------------------------------------------- machine


def cpu_model():
    """CPU model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def package_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info():
    """What the figures came from: CPU, cores, memory, library versions, commit, load."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in
                     ("tensorflow", "tensorflow-cpu", "keras", "tf_keras", "numpy", "vae-helpers")},
        "git_commit": commit.stdout.strip() or None,
        "loadavg_at_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


# ----------------------------------------------------------------------------- subprocesses


def run_worker(script, args, legacy=False, timeout=1800):
    """Run a worker script and return the JSON object on its last stdout line."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    command = [sys.executable, str(HERE / script), *map(str, args)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{script} {' '.join(map(str, args))} failed ({done.returncode}):\n{tail}")
    return json.loads(lines[-1])


def book(args):
    return run_worker("book_recipe.py", args, legacy=True)


def package(args):
    return run_worker("package_worker.py", args)


# ----------------------------------------------------------------------------- FLOPs and ceiling


def forward_macs(model):
    """Multiply-accumulates of one forward pass for one image (Conv2D, Conv2DTranspose, Dense)."""
    from vae_helpers import keras

    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, c_in = layer.input.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * c_in * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, _ = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.input.shape[-1] * layer.filters
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def network_flops():
    """Forward FLOPs per image (2 x MACs) and the usual training estimate (3 x forward)."""
    from vae_helpers.models import build_decoder, build_encoder

    macs = forward_macs(build_encoder()) + forward_macs(build_decoder())
    return {"forward_macs_per_image": macs, "forward_flops_per_image": 2 * macs,
            "train_flops_per_image": 6 * macs}


def matmul_ceiling(n=2048, repeats=5):
    """Measured float32 matmul rate of numpy (BLAS) and TensorFlow: the practical ceiling.

    Reports GFLOP per wall second (what two shared cores gave at that moment) and GFLOP per CPU
    second (process CPU time, much less sensitive to other processes' load).
    """
    from vae_helpers import tf

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    flops = 2 * n**3
    results = {}
    for name, fn in (("numpy", lambda: a @ b), ("tensorflow", lambda: tf.linalg.matmul(ta, tb).numpy())):
        fn()
        walls, cpus = [], []
        for _ in range(repeats):
            started, cpu = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
        results[name] = {"gflops": flops / min(walls) / 1e9, "gflops_median": flops / median(walls) / 1e9,
                         "gflops_per_cpu_s": flops / median(cpus) / 1e9, "loadavg_1m": loadavg()}
    results["best_gflops"] = max(results["numpy"]["gflops"], results["tensorflow"]["gflops"])
    results["best_gflops_per_cpu_s"] = max(results["numpy"]["gflops_per_cpu_s"],
                                           results["tensorflow"]["gflops_per_cpu_s"])
    results["matrix"] = n
    return results


# ----------------------------------------------------------------------------- sections


def save_images(tmp, name, x):
    path = Path(tmp) / f"{name}.npy"
    np.save(path, np.ascontiguousarray(x, dtype=np.float32))
    return path


def load_fashion(fashion_dir):
    """Fashion-MNIST through the package's IDX loader, with the time the loader took."""
    from vae_helpers.data import load_mnist

    started = time.perf_counter()
    (x_train, _), (x_test, _) = load_mnist(fashion_dir)
    return x_train, x_test, time.perf_counter() - started


def summarize_runs(runs, key="images_per_s"):
    values = [r[key] for r in runs]
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values)}


def bench_throughput(plan, x, tmp, flops):
    """Book recipe (batch 16) vs train_vae at several batch sizes, alternating book/package rounds."""
    data = save_images(tmp, "throughput", x[:plan["images"]])
    ceiling_before = matmul_ceiling()
    book_runs, package_runs = [], []
    for round_index in range(plan["rounds"]):
        steps = [("book", lambda: book(["--task", "throughput", "--data", data, "--images", plan["images"],
                                        "--repeats", plan["repeats"], "--batch-size", 16])),
                 ("package", lambda: package(["--task", "throughput", "--data", data, "--images", plan["images"],
                                              "--repeats", plan["repeats"], "--batch-sizes", plan["batch_sizes"]]))]
        for name, step in (steps if round_index % 2 == 0 else steps[::-1]):
            log(f"throughput round {round_index + 1}: {name}")
            runs = step()["runs"]
            for run in runs:
                run["round"] = round_index
            (book_runs if name == "book" else package_runs).extend(runs)
    ceiling_after = matmul_ceiling()
    ceiling = max(ceiling_before["best_gflops"], ceiling_after["best_gflops"])
    cpu_ceiling = max(ceiling_before["best_gflops_per_cpu_s"], ceiling_after["best_gflops_per_cpu_s"])
    variants = {"book_bs16": book_runs}
    for bs in sorted({r["batch_size"] for r in package_runs}):
        variants[f"package_bs{bs}"] = [r for r in package_runs if r["batch_size"] == bs]
    table = {}
    for name, runs in variants.items():
        wall, cpu = summarize_runs(runs), summarize_runs(runs, "images_per_cpu_s")
        gflops = wall["median"] * flops["train_flops_per_image"] / 1e9
        table[name] = {"images_per_s": wall, "images_per_cpu_s": cpu, "effective_gflops": gflops,
                       "effective_gflops_per_cpu_s": cpu["median"] * flops["train_flops_per_image"] / 1e9,
                       "share_of_matmul_ceiling": gflops / ceiling,
                       "share_of_matmul_ceiling_per_cpu_s":
                           cpu["median"] * flops["train_flops_per_image"] / 1e9 / cpu_ceiling,
                       "ratio_to_book": wall["median"] / median([r["images_per_s"] for r in book_runs]),
                       "cpu_ratio_to_book": cpu["median"] / median([r["images_per_cpu_s"] for r in book_runs]),
                       "seconds_per_60k_epoch": 60000 / wall["median"]}
    ceilings = {"before": ceiling_before, "after": ceiling_after, "best_gflops": ceiling,
                "best_gflops_per_cpu_s": cpu_ceiling}
    return {"plan": plan, "flops": flops, "matmul_ceiling": ceilings,
            "table": table, "book_runs": book_runs, "package_runs": package_runs}


def score_book(weights, x_test, n_samples):
    """Test ELBO of each saved book epoch, in the package's "book" preset (sigma = exp(z_log_var))."""
    from vae_helpers.evaluation import elbo
    from vae_helpers.models import build_vae

    vae = build_vae(loss="book", seed=0)
    scores = []
    for path in weights:
        with np.load(path) as saved:
            vae.encoder.set_weights([saved[f"e{i}"] for i in range(len(vae.encoder.get_weights()))])
            vae.decoder.set_weights([saved[f"d{i}"] for i in range(len(vae.decoder.get_weights()))])
        scores.append(elbo(vae, x_test, n_samples=n_samples, seed=0))
    return scores


def first_reaching(curve, target):
    """The first point of a package curve whose test ELBO is at least ``target`` (or None)."""
    return next((point for point in curve if point["test_elbo"] >= target), None)


def run_book_training(train_path, test_x, epochs, seed, tmp, n_samples):
    out = Path(tmp) / f"book-seed{seed}-{int(time.time() * 1000)}"
    out.mkdir()
    result = book(["--task", "train", "--data", train_path, "--epochs", epochs, "--seed", seed, "--out", out])
    scores = score_book([e["weights"] for e in result["epochs"]], test_x, n_samples)
    curve, total, cpu = [], 0.0, 0.0
    for record, score in zip(result["epochs"], scores):
        total, cpu = total + record["seconds"], cpu + record["cpu_seconds"]
        curve.append({"epoch": record["epoch"], "train_seconds": total, "train_cpu_seconds": cpu,
                      "test_elbo": score, "book_loss": record["loss"], "loadavg_1m": record["loadavg_1m"]})
    return curve


def run_package_training(train_path, test_path, epochs, slices, seed, n_samples, target=None, batch_size=16,
                         learning_rate=None, stop_after_target=False, optimizer="adam", loss="elbo", kl_warmup=0.0):
    args = ["--task", "quality", "--data", train_path, "--test", test_path, "--epochs", epochs,
            "--slices", slices, "--seed", seed, "--n-samples", n_samples, "--batch-size", batch_size,
            "--optimizer", optimizer, "--loss", loss, "--kl-warmup", kl_warmup]
    if learning_rate is not None:
        args += ["--learning-rate", learning_rate]
    if target is not None:
        args += ["--target", target]
    if stop_after_target:
        args.append("--stop-after-target")
    return package(args)["curve"]


def compare_recipe(name, curve, book_curve):
    """Time for ``curve`` to reach the book's final test ELBO, as a speed-up over the book's run."""
    target = book_curve[-1]["test_elbo"]
    reached = first_reaching(curve, target)
    entry = {"name": name, "target_elbo": target, "book_seconds": book_curve[-1]["train_seconds"],
             "book_cpu_seconds": book_curve[-1]["train_cpu_seconds"],
             "best_test_elbo": max(p["test_elbo"] for p in curve)}
    if reached is None:
        entry.update({"reached": False, "speedup": None})
    else:
        entry.update({"reached": True, "epochs_to_target": reached["epoch"],
                      "seconds_to_target": reached["train_seconds"],
                      "speedup": entry["book_seconds"] / reached["train_seconds"],
                      "cpu_speedup": entry["book_cpu_seconds"] / reached["train_cpu_seconds"]})
    return entry


def bench_quality(plan, x_train, x_test, tmp, label, stop_after_target, candidate=None):
    """Book recipe for its epochs, then the package default and the candidate recipe, per seed."""
    train_images = plan.get("train_images") or len(x_train)
    test_images = plan.get("test_images") or len(x_test)
    train_path = save_images(tmp, f"{label}_train", x_train[:train_images])
    test_x = x_test[:test_images]
    test_path = save_images(tmp, f"{label}_test", test_x)
    n_samples = plan.get("n_samples", 8)
    recipes = {"package_default": {}}
    if candidate:
        recipes["package_candidate"] = candidate
    seeds = plan.get("seeds", [0])
    runs = []
    for index, seed in enumerate(seeds):
        log(f"{label} seed {seed}: book recipe, {plan['book_epochs']} epochs")
        book_curve = run_book_training(train_path, test_x, plan["book_epochs"], seed, tmp, n_samples)
        target = book_curve[-1]["test_elbo"]
        log(f"{label} seed {seed}: book test ELBO {target:.2f} after {book_curve[-1]['train_seconds']:.0f} s")
        order = list(recipes) if index % 2 == 0 else list(recipes)[::-1]
        run = {"seed": seed, "book": book_curve, "curves": {}, "comparisons": []}
        for name in order:
            settings = recipes[name]
            log(f"{label} seed {seed}: {name} {settings or '(defaults)'}")
            curve = run_package_training(train_path, test_path, plan["package_epochs"], plan["slices"], seed,
                                         n_samples, target, stop_after_target=stop_after_target, **settings)
            run["curves"][name] = curve
            run["comparisons"].append(compare_recipe(name, curve, book_curve))
            log(f"{label} seed {seed}: {name} -> {run['comparisons'][-1].get('speedup')}")
        runs.append(run)
    summary = {}
    for name, settings in recipes.items():
        entries = [c for r in runs for c in r["comparisons"] if c["name"] == name]
        speedups = [c["speedup"] for c in entries if c["speedup"] is not None]
        summary[name] = {"settings": settings or {"batch_size": 16, "learning_rate": 1e-3},
                         "reached": sum(c["reached"] for c in entries), "runs": len(entries),
                         "median_speedup": median(speedups),
                         "median_cpu_speedup": median([c["cpu_speedup"] for c in entries if c["speedup"] is not None]),
                         "median_seconds_to_target": median([c["seconds_to_target"] for c in entries if c["reached"]]),
                         "median_epochs_to_target": median([c["epochs_to_target"] for c in entries if c["reached"]])}
    return {"plan": plan, "train_images": train_images, "test_images": test_images, "n_samples": n_samples,
            "book_final_elbo": median([r["book"][-1]["test_elbo"] for r in runs]),
            "book_seconds": median([r["book"][-1]["train_seconds"] for r in runs]),
            "summary": summary, "runs": runs}


def book_loop_keras3(decoder, n=15, digit_size=28, batch_size=16):
    """The book's manifold loop (see book_manifold.py)."""
    return book_manifold_loop(decoder, n, digit_size, batch_size)


def warm_up_predict(decoder, calls=3):
    """A few predict calls so the first timed loop does not pay for tracing."""
    for _ in range(calls):
        decoder.predict(np.zeros((16, 2), dtype=np.float32), batch_size=16, verbose=0)


def bench_manifold(plan):
    """n x n manifold (15 in full mode): the book's per-point predict loop vs manifold_grid, alternating."""
    from vae_helpers.models import build_vae
    from vae_helpers.plotting import manifold_grid

    decoder = build_vae(seed=0).decoder
    warm_up_predict(decoder)
    manifold_grid(decoder)
    loops, grids = [], []
    for _ in range(plan["rounds"]):
        started = time.perf_counter()
        book_loop_keras3(decoder, n=plan["n"])
        loops.append({"seconds": time.perf_counter() - started, "loadavg_1m": loadavg()})
        grid_times = []
        for _ in range(20):
            started = time.perf_counter()
            manifold_grid(decoder, n=plan["n"])
            grid_times.append(time.perf_counter() - started)
        grids.append({"seconds": median(grid_times), "loadavg_1m": loadavg()})
    legacy = book(["--task", "manifold", "--repeats", plan["rounds"], "--grid", plan["n"]])["runs"]
    loop_s, grid_s = median([r["seconds"] for r in loops]), median([r["seconds"] for r in grids])
    legacy_s = median([r["seconds"] for r in legacy])
    return {"n": plan["n"], "book_loop_keras3_seconds": loop_s, "manifold_grid_seconds": grid_s,
            "speedup": loop_s / grid_s,
            "book_loop_tf_keras_graph_seconds": legacy_s, "speedup_vs_tf_keras_loop": legacy_s / grid_s,
            "rounds": {"book_loop_keras3": loops, "manifold_grid": grids, "book_loop_tf_keras": legacy}}


def bench_decode(plan):
    """latent.decode of one code per call, as a widget slider does: latency percentiles in ms."""
    from vae_helpers.latent import decode
    from vae_helpers.pretrained import load_pretrained

    vae = load_pretrained()
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(plan["updates"], vae.latent_dim)).astype(np.float32)
    for z in codes[:20]:
        decode(vae, z)
    times = []
    for z in codes:
        started = time.perf_counter()
        decode(vae, z)
        times.append((time.perf_counter() - started) * 1000)
    times = np.array(times)
    return {"updates": len(times), "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "p99_ms": float(np.percentile(times, 99)), "max_ms": float(times.max()), "loadavg_1m": loadavg()}


def bench_notebooks():
    """Figures from scripts/measure_notebook_memory.py, when that file exists."""
    path = RESULTS / "notebook_memory.json"
    if not path.is_file():
        return {"status": "TODO", "note": f"{path.relative_to(HERE.parent)} not found; run "
                                           "scripts/measure_notebook_memory.py and rerun --only notebooks"}
    return {"status": "ok", "source": str(path.relative_to(HERE.parent)), "figures": json.loads(path.read_text())}


# ----------------------------------------------------------------------------- plots and main


def plot_throughput(result, path):
    """Images/s and images per CPU-second vs batch size for train_vae, with the book's batch-16 point.

    Wall-clock throughput on a shared machine moves with everyone else's load; CPU-normalized
    throughput (images per second of this process's CPU time) is the steadier of the two.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["table"]
    sizes = sorted(int(k.split("bs")[1]) for k in table if k.startswith("package"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "images_per_s", "training images / s (wall clock)"),
                           (axes[1], "images_per_cpu_s", "training images / CPU-second")):
        stats = [table[f"package_bs{b}"][key] for b in sizes]
        med = [s["median"] for s in stats]
        err = [[m - s["min"] for m, s in zip(med, stats)], [s["max"] - m for m, s in zip(med, stats)]]
        ax.errorbar(sizes, med, yerr=err, marker="o", capsize=4, label="vae_helpers train_vae (Keras 3)")
        book_stats = table["book_bs16"][key]
        ax.errorbar([16], [book_stats["median"]], yerr=[[book_stats["median"] - book_stats["min"]],
                                                        [book_stats["max"] - book_stats["median"]]],
                    marker="s", color="C3", capsize=4, linestyle="none", label="book recipe (tf_keras, graph mode)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel(f"{label}\n(median, min-max)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right")
    fig.suptitle("Training throughput vs batch size, 2 shared CPU cores (medians over interleaved runs)")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_quality(result, path, title):
    """Test ELBO against training seconds for the book and both package recipes (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = result["runs"][0]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    book_curve = run["book"]
    ax.plot([p["train_seconds"] for p in book_curve], [p["test_elbo"] for p in book_curve], "s-", color="C3",
            label="book recipe (RMSprop, batch 16)")
    for i, (name, curve) in enumerate(run["curves"].items()):
        ax.plot([p["train_seconds"] for p in curve], [p["test_elbo"] for p in curve], "o-", color=f"C{i}",
                markersize=3, label=name.replace("_", " "))
    ax.axhline(book_curve[-1]["test_elbo"], color="C3", linestyle=":", linewidth=1)
    ax.set_xlabel("training seconds (scoring excluded)")
    ax.set_ylabel("test ELBO (nats/image, higher is better)")
    low = min(p["test_elbo"] for p in book_curve)
    ax.set_ylim(bottom=low - 5)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def quality_title(name, result):
    return f"{name} ({result['train_images']:,} train / {result['test_images']:,} test images)"


def replot(prefix):
    """Redraw the PNGs from the JSON already in benchmarks/results/ (no measuring)."""
    throughput = RESULTS / f"{prefix}throughput.json"
    if throughput.is_file():
        plot_throughput(json.loads(throughput.read_text()), RESULTS / f"{prefix}throughput_vs_batch.png")
    for label, name in (("sample", "Bundled MNIST sample"), ("fashion", "Fashion-MNIST")):
        path = RESULTS / f"{prefix}quality_{label}.json"
        if path.is_file():
            result = json.loads(path.read_text())
            plot_quality(result, RESULTS / f"{prefix}quality_{label}.png", quality_title(name, result))


def write_json(name, data):
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (under 3 minutes)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--fashion", default=FASHION_DIR, help="folder of Fashion-MNIST IDX files")
    parser.add_argument("--candidate", help="also time a second package recipe, as batch_size:learning_rate")
    parser.add_argument("--replot", action="store_true", help="only redraw the figures from existing JSON")
    args = parser.parse_args(argv)
    if args.replot:
        replot("quick_" if args.quick else "")
        return
    candidate = CANDIDATE
    if args.candidate:
        batch, rate = args.candidate.split(":")
        candidate = {"batch_size": int(batch), "learning_rate": float(rate)}
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    mode = "quick" if args.quick else "full"
    plan = PLANS[mode]
    prefix = "quick_" if args.quick else ""
    started = time.perf_counter()
    command = "python benchmarks/run_benchmarks.py" + (" --quick" if args.quick else "") + \
              ("" if args.only == ",".join(SECTIONS) else f" --only {args.only}") + \
              (f" --candidate {args.candidate}" if args.candidate else "")
    log(f"{mode} benchmark run: {command}")

    import vae_helpers  # noqa: F401  (quiet TensorFlow import)
    from vae_helpers.data import load_mnist

    machine = machine_info()
    complete = set(only) == set(SECTIONS)  # a subset run must not overwrite the full run's record
    run_info = {"command": command, "mode": mode, "started": machine["started"], "git_commit": machine["git_commit"],
                "cpu_model": machine["cpu_model"]}

    def save(name, result):
        return write_json(f"{prefix}{name}.json", {**result, "run": run_info})

    if complete:
        write_json(f"{prefix}machine.json", {**machine, "command": command, "mode": mode})
    (x_sample, _), (x_sample_test, _) = load_mnist("sample")
    fashion = None
    if {"throughput", "quality_fashion"} & set(only):
        if Path(args.fashion).is_dir():
            fashion = load_fashion(args.fashion)
            log(f"Fashion-MNIST via the IDX loader: {len(fashion[0])}/{len(fashion[1])} images in {fashion[2]:.2f} s")
        else:
            log(f"{args.fashion} not found: throughput uses the sample, Fashion-MNIST quality is skipped")

    with tempfile.TemporaryDirectory(prefix="vae-bench-") as tmp:
        if "throughput" in only:
            x = fashion[0] if fashion else x_sample
            result = bench_throughput(plan["throughput"], x, tmp, network_flops())
            result.update({"data": "fashion-mnist (IDX loader)" if fashion else "bundled sample",
                           "idx_load_seconds": fashion[2] if fashion else None})
            save("throughput", result)
            plot_throughput(result, RESULTS / f"{prefix}throughput_vs_batch.png")
            for name, row in result["table"].items():
                log(f"{name}: {row['images_per_s']['median']:.0f} img/s ({row['ratio_to_book']:.2f}x book), "
                    f"{row['effective_gflops']:.1f} GFLOP/s of {result['matmul_ceiling']['best_gflops']:.0f}")
        if "quality_sample" in only:
            p = plan["quality_sample"]
            result = bench_quality(p, x_sample, x_sample_test, tmp, "sample", stop_after_target=True,
                                   candidate=candidate)
            save("quality_sample", result)
            plot_quality(result, RESULTS / f"{prefix}quality_sample.png", quality_title("Bundled MNIST sample", result))
            log(f"sample: {json.dumps(result['summary'])}")
        if "quality_fashion" in only and fashion:
            p = plan["quality_fashion"]
            result = bench_quality(p, fashion[0], fashion[1], tmp, "fashion", stop_after_target=True,
                                   candidate=candidate)
            result["idx_load_seconds"] = fashion[2]
            save("quality_fashion", result)
            plot_quality(result, RESULTS / f"{prefix}quality_fashion.png", quality_title("Fashion-MNIST", result))
            log(f"fashion: {json.dumps(result['summary'])}")
        if "manifold" in only:
            result = bench_manifold(plan["manifold"])
            save("manifold", result)
            log(f"manifold: book loop {result['book_loop_keras3_seconds']:.2f} s, grid "
                f"{result['manifold_grid_seconds'] * 1000:.1f} ms, {result['speedup']:.0f}x")
        if "decode" in only:
            result = bench_decode(plan["decode"])
            save("decode", result)
            log(f"decode: median {result['median_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms")
        if "notebooks" in only:
            save("notebooks", bench_notebooks())
    total = time.perf_counter() - started
    if complete:
        write_json(f"{prefix}machine.json", {**machine, "command": command, "mode": mode, "sections": only,
                                             "total_seconds": total, "loadavg_at_end": os.getloadavg()})
    log(f"done in {total:.0f} s; results in {RESULTS}")


if __name__ == "__main__":
    main()
