"""Markdown tables (and one figure) from benchmarks/results/*.json, for BENCHMARKS.md.

    python benchmarks/report.py            # prints the tables; writes results/quality_mnist.png
    python benchmarks/report.py --quick    # from the quick_*.json files
"""

import argparse
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
FLOP_PER_TRAINING_IMAGE = 135e6  # 3 x the forward pass's 45.1 MFLOP (22.55 M multiply-adds, counted per layer)


def load(prefix, section):
    path = RESULTS / f"{prefix}{section}.json"
    return json.loads(path.read_text())["result"] if path.is_file() else None


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def throughput_table(runs):
    book = statistics.median(r["images_per_cpu_s"] for r in runs["book"])
    book_wall = statistics.median(r["images_per_s"] for r in runs["book"])
    rows = []
    groups = [("book recipe, batch 16 (tf_keras graph mode)", runs["book"])]
    for key in sorted({variant(r) for r in runs["package"]}):
        size, xla, precision = key
        groups.append((f"train_vae, batch {size}" + (", XLA" if xla else "") + (", bfloat16" if precision != "float32" else ""),
                       [r for r in runs["package"] if variant(r) == key]))
    for name, group in groups:
        wall = statistics.median(r["images_per_s"] for r in group)
        cpu = statistics.median(r["images_per_cpu_s"] for r in group)
        loads = [r["loadavg_1m"] for r in group]
        rows.append([name, f"{wall:.0f}", f"{wall / book_wall:.2f}", f"{cpu:.0f}", f"{cpu / book:.2f}",
                     f"{cpu * FLOP_PER_TRAINING_IMAGE / 1e9:.0f}", f"{60_000 / cpu:.0f}",
                     f"{min(loads):.1f}-{max(loads):.1f}"])
    return table(["variant", "images/s", "x book", "images per CPU-s", "x book (CPU)", "GFLOP per CPU-s",
                  "CPU-s per 60k epoch", "load (1 min)"], rows)


def variant(run):
    """(batch size, XLA, precision) of one throughput run (runs from before the precision field were float32)."""
    return run["batch_size"], run.get("jit_compile", False), run.get("precision", "float32")


def step_cost_fit(runs):
    """Least-squares fit of the package's time per step to t(B) = a * B + c, wall and CPU, over its batch sizes (ms),
    without XLA, for each precision measured at several batch sizes."""
    import numpy as np

    rows = []
    for precision in sorted({variant(r)[2] for r in runs["package"]}, reverse=True):  # float32 first
        plain = [r for r in runs["package"] if variant(r)[1:] == (False, precision)]
        sizes = sorted({r["batch_size"] for r in plain})
        if len(sizes) < 2:
            continue
        for key, rate in (("wall", "images_per_s"), ("CPU", "images_per_cpu_s")):
            ms = [1000 * size / statistics.median(r[rate] for r in plain if r["batch_size"] == size) for size in sizes]
            a, c = np.polyfit(sizes, ms, 1)
            rows.append([f"{key}, {precision}", f"{a:.3f}", f"{c:.2f}",
                         ", ".join(f"{size}: {m:.1f}" for size, m in zip(sizes, ms))])
    return table(["time, precision", "a (ms per image)", "c (ms per step)", "ms per step by batch size"], rows)


def backends_table(result):
    """``train_vae`` on each Keras backend at batch 16 and 128: images per second and per CPU-second, x TensorFlow."""
    runs = result["runs"]
    rate = {(name, size, key): statistics.median(r[key] for r in group if r["batch_size"] == size)
            for name, group in runs.items() for size in (16, 128) for key in ("images_per_s", "images_per_cpu_s")}
    rows = []
    for name, group in runs.items():
        for size in (16, 128):
            wall, cpu = rate[name, size, "images_per_s"], rate[name, size, "images_per_cpu_s"]
            loads = [r["loadavg_1m"] for r in group if r["batch_size"] == size]
            rows.append([name, size, f"{1000 * size / wall:.0f}", f"{wall:.0f}", f"{cpu:.0f}",
                         f"{cpu / rate['tensorflow', size, 'images_per_cpu_s']:.2f}", f"{60_000 / cpu:.0f}",
                         f"{min(loads):.1f}-{max(loads):.1f}"])
    return table(["backend", "batch", "ms per step", "images/s", "images per CPU-s", "x TensorFlow (CPU)",
                  "CPU-s per 60k epoch", "load (1 min)"], rows)


def diagnose_table(result):
    """Per score of each diagnosed recipe: test ELBO, the KL of its training batches, active units, dead ReLUs."""
    rows = []
    for name, curve in result["recipes"].items():
        for point in curve:
            rows.append([name, f"{point['epoch']:.1f}", f"{point['test_elbo']:.1f}", f"{point['train_kl']:.2f}",
                         f"{point['train_reconstruction']:.1f}", point["active_units"],
                         f"{point['dead_relus']}/{point['hidden_units']}"])
    return table(["recipe", "epoch", "test ELBO", "KL (training batches)", "reconstruction (training)",
                  "active units (of 2)", "dead ReLUs (encoder's Dense)"], rows)


def reached(curve, target):
    """The first point of a curve at or above the target, or None."""
    return next((point for point in curve if point["test_elbo"] >= target), None)


def quality_tables(result):
    target, book = result["target"], result["book"]
    book_wall, book_cpu = sum(e["seconds"] for e in book), sum(e["cpu_seconds"] for e in book)
    rows = [["book recipe (RMSprop, batch 16, the chapter's loss)", f"{len(book)}", f"{book_wall:.0f}",
             f"{book_cpu:.0f}", "1.00", "1.00", f"{max(e['test_elbo'] for e in book):.2f}"]]
    for name, curve in result["recipes"].items():
        point = reached(curve, target)
        if point is None:
            rows.append([name, f"not within {curve[-1]['epoch']:.1f}", "-", "-", "-", "-",
                         f"{max(p['test_elbo'] for p in curve):.2f}"])
            continue
        rows.append([name, f"{point['epoch']:.1f}", f"{point['train_seconds']:.0f}", f"{point['train_cpu_seconds']:.0f}",
                     f"{book_wall / point['train_seconds']:.2f}", f"{book_cpu / point['train_cpu_seconds']:.2f}",
                     f"{max(p['test_elbo'] for p in curve):.2f}"])
    curves = ["- book: " + ", ".join(f"{e['epoch']}: {e['test_elbo']:.1f}" for e in book)]
    curves += [f"- {name}: " + ", ".join(f"{p['epoch']:g}: {p['test_elbo']:.1f}" for p in curve)
               for name, curve in result["recipes"].items()]
    header = ["recipe", "epochs to the target", "seconds", "CPU-s", "speed-up (wall)", "speed-up (CPU)", "best test ELBO"]
    return (f"Target: the book's test ELBO after {len(book)} epochs, {target:.2f} nats.\n\n" + table(header, rows)
            + "\n\nTest ELBO curves (epoch: nats):\n\n" + "\n".join(curves))


def quality_figure(result, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    book = result["book"]
    seconds = [sum(e["seconds"] for e in book[:i + 1]) for i in range(len(book))]
    ax.plot(seconds, [e["test_elbo"] for e in book], "k-o", label="book recipe")
    for name, curve in result["recipes"].items():
        ax.plot([p["train_seconds"] for p in curve], [p["test_elbo"] for p in curve], ".-", label=name)
    ax.axhline(result["target"], color="black", linestyle=":")
    ax.set_ylim(result["target"] - 25, max(p["test_elbo"] for c in result["recipes"].values() for p in c) + 3)
    ax.set_xlabel("training seconds (wall)")
    ax.set_ylabel("test ELBO (nats per image)")
    ax.legend(fontsize=8)
    figure.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})


def profile_table(path):
    """``benchmarks/profile_step.py`` before and after, from profile.json ({"before": ..., "after": ...})."""
    result = json.loads(path.read_text())
    result = result.get("result", result)
    rows = []
    for when in ("before", "after"):
        for name, runs in result[when]["times"].items():
            rows.append([when, name, f"{statistics.median(r['ms_per_step'] for r in runs):.2f}",
                         f"{statistics.median(r['cpu_ms_per_step'] for r in runs):.2f}",
                         f"{min(r['load'] for r in runs):.1f}-{max(r['load'] for r in runs):.1f}"])
    return table(["code", "variant", "ms per step", "CPU ms per step", "load (1 min)"], rows)


def notebooks_table(path):
    """Each notebook's wall time, CPU time and peak kernel memory, from ``run_notebooks.py --measure``."""
    result = json.loads(path.read_text())
    rows = [[name, f"{m['seconds']:.0f}", f"{m['cpu_seconds']:.0f}", f"{m['peak_rss_mb']:.0f}"]
            for name, m in result["notebooks"].items()]
    return (f"{result['mode']} mode, data {result['data']}, {result['machine']}, {result['date']}\n\n"
            + table(["notebook", "wall s", "CPU s", "peak kernel RSS (MiB)"], rows)
            + (f"\n\n{result['note']}" if "note" in result else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    prefix = "quick_" if parser.parse_args().quick else ""
    if (runs := load(prefix, "throughput")) is not None:
        print("### Training throughput\n\n" + throughput_table(runs) + "\n")
        print("Per-step cost of train_vae, fitted to t(B) = a * B + c:\n\n" + step_cost_fit(runs) + "\n")
    if (result := load(prefix, "backends")) is not None:
        print("### Keras backends\n\n" + backends_table(result) + "\n")
    if (result := load(prefix, "quality")) is not None:
        print("### Time to the book's test ELBO\n\n" + quality_tables(result) + "\n")
        quality_figure(result, RESULTS / f"{prefix}quality_mnist.png")
    if (result := load(prefix, "diagnose")) is not None:
        print("### What the collapse and the warm-up do\n\n" + diagnose_table(result) + "\n")
    if (RESULTS / f"{prefix}profile.json").is_file():
        print("### Profile of a batch-16 step\n\n" + profile_table(RESULTS / f"{prefix}profile.json") + "\n")
    if not prefix and (RESULTS / "notebooks.json").is_file():
        print("### Notebooks\n\n" + notebooks_table(RESULTS / "notebooks.json") + "\n")
    if (result := load(prefix, "manifold")) is not None:
        grid = statistics.median(result["manifold_grid"])
        rows = [[name, f"{statistics.median(result[key]):.3f}", f"{statistics.median(result[key]) / grid:.0f}x"]
                for name, key in (("book loop, Keras 3 predict per point", "book_loop_keras3"),
                                  ("book loop, tf_keras graph mode", "book_loop_tf_keras"),
                                  ("plotting.manifold_grid (one batched decode)", "manifold_grid"))]
        print("### Manifold 15 x 15\n\n" + table(["path", "seconds (median)", "x manifold_grid"], rows) + "\n")
    if (result := load(prefix, "decode")) is not None:
        ms = sorted(result["ms"])
        pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
        print(f"### Widget decode\n\n{len(ms):,} single-code decodes: median {statistics.median(ms):.2f} ms, "
              f"p90 {pick(0.9):.2f} ms, p99 {pick(0.99):.2f} ms, max {ms[-1]:.1f} ms (load {result['load']:.1f}).\n")


if __name__ == "__main__":
    main()
