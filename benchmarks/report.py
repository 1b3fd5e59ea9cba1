"""Render the JSON in benchmarks/results/ as the Markdown tables used in BENCHMARKS.md.

    python benchmarks/report.py            # full-run results
    python benchmarks/report.py --quick    # the quick_*.json files

Prints to stdout; nothing here measures anything.
"""

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name, prefix):
    path = RESULTS / f"{prefix}{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(value, digits=1):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def machine_section(m):
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    load_start = ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    load_end = ", ".join(f"{x:.2f}" for x in m.get("loadavg_at_end", []))
    return "\n".join([
        "| | |", "|---|---|",
        f"| CPU | {m['cpu_model']} ({m['logical_cpus']} logical CPUs, {m['usable_cpus']} usable) |",
        f"| Memory | {m['memory_gib']} GiB |",
        f"| OS | {m['platform']} |",
        f"| Python | {m['python']} |",
        f"| Libraries | {versions} |",
        f"| Commit | {m['git_commit']} |",
        f"| Started | {m['started']} |",
        f"| Load average (1/5/15 min) | start {load_start}; end {load_end} |",
        f"| Total wall time | {fmt(m.get('total_seconds', 0) / 60)} min |",
        f"| Command | `{m['command']}` |",
    ])


def throughput_section(t):
    ceiling = t["matmul_ceiling"]
    lines = [
        f"Data: {t['data']}; {t['plan']['images']:,} images per timed epoch, "
        f"{t['plan']['rounds']} rounds x {t['plan']['repeats']} repeats per variant. Training FLOPs per image: "
        f"{t['flops']['train_flops_per_image'] / 1e6:.0f} MFLOP (forward {t['flops']['forward_flops_per_image'] / 1e6:.1f} MFLOP x 3). "
        f"Matmul ceiling (float32 {ceiling['before']['matrix']} x {ceiling['before']['matrix']}, before and after): "
        f"{ceiling['best_gflops']:.0f} GFLOP/s wall (best of numpy/TF), "
        f"{ceiling['best_gflops_per_cpu_s']:.0f} GFLOP per CPU-second.",
        "",
        "| variant | images/s (median, min-max) | x book | images per CPU-s | x book (CPU) | effective GFLOP/s | of ceiling (wall / CPU) | 60k epoch (s) | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = {"book_bs16": t["book_runs"]}
    for r in t["package_runs"]:
        runs.setdefault(f"package_bs{r['batch_size']}", []).append(r)
    for name, row in t["table"].items():
        wall, cpu = row["images_per_s"], row["images_per_cpu_s"]
        loads = [r["loadavg_1m"] for r in runs[name]]
        label = "book recipe, batch 16 (tf_keras graph)" if name == "book_bs16" else \
            f"train_vae, batch {name.split('bs')[1]}"
        lines.append(f"| {label} | {fmt(wall['median'], 0)} ({fmt(wall['min'], 0)}-{fmt(wall['max'], 0)}) | "
                     f"{row['ratio_to_book']:.2f} | {fmt(cpu['median'], 0)} | {row['cpu_ratio_to_book']:.2f} | "
                     f"{row['effective_gflops']:.0f} | {row['share_of_matmul_ceiling']:.0%} / "
                     f"{row['share_of_matmul_ceiling_per_cpu_s']:.0%} | {fmt(row['seconds_per_60k_epoch'], 0)} | "
                     f"{min(loads):.1f}-{max(loads):.1f} |")
    return "\n".join(lines)


def quality_section(q):
    lines = [f"Train/test images: {q['train_images']:,}/{q['test_images']:,}; ELBO by `evaluation.elbo` "
             f"(n_samples={q['n_samples']}); book epochs: {q['plan']['book_epochs']}; "
             f"seeds: {', '.join(str(r['seed']) for r in q['runs'])}.", "",
             "| seed | recipe | target (book's final test ELBO) | book seconds (CPU s) | reached at epoch | seconds (CPU s) | speed-up wall (CPU) | best test ELBO |",
             "|---|---|---|---|---|---|---|---|"]
    for run in q["runs"]:
        for c in run["comparisons"]:
            reached = c["reached"]
            speedup = f"{c['speedup']:.2f}x ({c['cpu_speedup']:.2f}x)" if reached else "-"
            at = fmt(c.get("epochs_to_target"), 2) if reached else "not reached"
            lines.append(f"| {run['seed']} | {c['name']} | {c['target_elbo']:.2f} | {fmt(c['book_seconds'], 0)} "
                         f"({fmt(c['book_cpu_seconds'], 0)}) | {at} | {fmt(c.get('seconds_to_target'), 0)} | "
                         f"{speedup} | {c['best_test_elbo']:.2f} |")
    lines += ["", "| recipe | settings | reached | median speed-up wall | median speed-up CPU |", "|---|---|---|---|---|"]
    for name, s in q["summary"].items():
        settings = ", ".join(f"{k}={v}" for k, v in s["settings"].items())
        lines.append(f"| {name} | {settings} | {s['reached']}/{s['runs']} | {fmt(s['median_speedup'], 2)} | "
                     f"{fmt(s['median_cpu_speedup'], 2)} |")
    lines += ["", "Test-ELBO curve, first seed (epoch: ELBO):", ""]
    run = q["runs"][0]
    lines.append("- book: " + ", ".join(f"{p['epoch']}: {p['test_elbo']:.1f}" for p in run["book"]))
    for name, curve in run["curves"].items():
        lines.append(f"- {name}: " + ", ".join(f"{p['epoch']:g}: {p['test_elbo']:.1f}" for p in curve))
    return "\n".join(lines)


def sweep_section(sweep):
    """One row per (batch size, learning rate, optimizer, objective, warm-up) setting of the sweep."""
    lines = [f"Target: the book recipe's test ELBO after 10 epochs, {sweep['target_elbo']:.2f} nats "
             f"(seed {sweep['seed']}); test ELBO scored every quarter epoch.", "",
             "| batch | learning rate | optimizer | objective | KL warm-up (epochs) | test ELBO after 1 / 2 / 4 epochs | epochs trained | best | reached |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run in sweep["runs"]:
        at = {p["epoch"]: p["test_elbo"] for p in run["curve"]}
        marks = " / ".join(fmt(at.get(e), 1) for e in (1.0, 2.0, 4.0))
        reached = f"epoch {run['epochs_to_target']:.2f}" if run["reached"] else "no"
        lines.append(f"| {run['batch_size']} | {run['learning_rate']:g} | {run.get('optimizer', 'adam')} | "
                     f"{run.get('loss', 'elbo')} | {run.get('kl_warmup', 0):g} | {marks} | {run['curve'][-1]['epoch']:g} | "
                     f"{max(p['test_elbo'] for p in run['curve']):.1f} | {reached} |")
    if sweep.get("book"):
        lines += ["", "Book recipe, same seed: " + ", ".join(f"{p['epoch']}: {p['test_elbo']:.1f}" for p in sweep["book"])]
    return "\n".join(lines)


def notebooks_section(notebooks):
    """Wall time and peak memory per notebook from scripts/measure_notebook_memory.py, or a TODO."""
    if notebooks.get("status") != "ok":
        return f"TODO: {notebooks.get('note', 'no figures')}"
    figures = notebooks["figures"]
    estimate = figures.get("full_mnist_estimate", {}).get("notebooks", {})
    lines = [f"From `{notebooks['source']}` (generated {figures['generated']}, data "
             f"{figures['settings']['data']}, mode {figures['settings']['mode']}).", "",
             "| run | status | wall time (s) | peak RSS (MiB) | full-MNIST estimate (MiB) |", "|---|---|---|---|---|",
             "| quick-mode nbval run of all notebooks | TODO (lead) | TODO | TODO | - |"]
    for entry in figures["notebooks"]:
        name = entry["notebook"]
        full = estimate.get(name, {}).get("bytes")
        lines.append(f"| `{name}` (full run) | {entry['status']} | {entry['seconds']:.0f} | "
                     f"{entry['peak_rss_bytes'] / 2**20:.0f} | {fmt(full / 2**20 if full else None, 0)} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    prefix = "quick_" if args.quick else ""
    parts = []
    machine = load("machine", prefix)
    if machine:
        parts += ["### Machine", "", machine_section(machine)]
    throughput = load("throughput", prefix)
    if throughput:
        parts += ["", "### Training throughput", "", throughput_section(throughput)]
    for name, title in (("quality_sample", "Time to quality: bundled sample"),
                        ("quality_fashion", "Time to quality: Fashion-MNIST")):
        quality = load(name, prefix)
        if quality:
            parts += ["", f"### {title}", "", quality_section(quality)]
    manifold = load("manifold", prefix)
    if manifold:
        parts += ["", f"### Manifold {manifold['n']} x {manifold['n']}", "",
                  "| path | seconds | speed-up of manifold_grid |", "|---|---|---|",
                  f"| book loop, Keras 3 `predict` per point | {manifold['book_loop_keras3_seconds']:.2f} | {manifold['speedup']:.0f}x |",
                  f"| book loop, tf_keras graph mode (subprocess) | {manifold['book_loop_tf_keras_graph_seconds']:.2f} | "
                  f"{manifold['speedup_vs_tf_keras_loop']:.0f}x |",
                  f"| `plotting.manifold_grid` | {manifold['manifold_grid_seconds']:.3f} | 1x |"]
    decode = load("decode", prefix)
    if decode:
        parts += ["", "### Widget decode latency", "",
                  f"{decode['updates']:,} single-code `latent.decode` calls: median {decode['median_ms']:.2f} ms, "
                  f"p90 {decode['p90_ms']:.2f} ms, p99 {decode['p99_ms']:.2f} ms, max {decode['max_ms']:.1f} ms "
                  f"(load {decode['loadavg_1m']:.1f})."]
    notebooks = load("notebooks", prefix)
    if notebooks:
        parts += ["", "### Notebook suite", "", notebooks_section(notebooks)]
    sweep = load("sweep_sample", "")
    if sweep and not args.quick:
        parts += ["", "### Sweep of training settings (bundled sample)", "", sweep_section(sweep)]
    long_run = load("long_sample", "")
    if long_run and long_run["runs"] and not args.quick:
        curve = long_run["runs"][0]["curve"]
        best = max(curve, key=lambda p: p["test_elbo"])
        ends = [p for p in curve if float(p["epoch"]).is_integer()]
        parts += ["", "### Long run on the bundled sample (overfitting check)", "",
                  f"Package defaults, {curve[-1]['epoch']:g} epochs, test ELBO at the end of each epoch: " +
                  ", ".join(f"{p['epoch']:g}: {p['test_elbo']:.1f}" for p in ends) +
                  f". Best {best['test_elbo']:.1f} at epoch {best['epoch']:g}."]
    print("\n".join(parts))


if __name__ == "__main__":
    main()
