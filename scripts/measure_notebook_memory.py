#!/usr/bin/env python3
"""Peak memory of every notebook's kernel, and an estimate for the full MNIST; written as JSON.

mybinder.org guarantees 1 GB of RAM and restarts the kernel above 2 GB, so each notebook should
stay under 1.5 GB. This script runs each notebook in a fresh kernel of this Python, in default
mode (not quick) on ``VAE_HELPERS_DATA=sample`` unless told otherwise, and reads the kernel's peak
resident memory from ``/proc/<pid>/status`` (``VmHWM``, exact, kept by the Linux kernel) after every
cell. A sampler also adds up processes the kernel starts (``!python -m vae_helpers ...``).

The full 60,000/10,000 MNIST cannot be downloaded here, so the script also runs a probe: the
package's memory-hungry steps (loading and scaling the arrays, one training epoch with validation,
the test ELBO, k-NN accuracy on the codes, importance sampling) on synthetic data of the full size
and of the sample's size, each in a fresh process. The difference between the two is what the full
data adds; added to a notebook's measured peak it gives that notebook's full-MNIST estimate.

    python scripts/measure_notebook_memory.py                  # all notebooks + estimate
    python scripts/measure_notebook_memory.py notebooks/03_*.ipynb --no-estimate

Exit status 1 when a notebook fails or any figure (measured or estimated) passes ``--limit-mib``.
Linux only (it reads /proc).
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "notebook_memory.json"
KERNEL_NAME = "vae-memory"
MIB = 2 ** 20
ANSI = re.compile(r"\x1b\[[0-9;]*m")
FULL_SIZES = {"train": 60_000, "test": 10_000}
SAMPLE_SIZES = {"train": 4_000, "test": 1_000}
VALIDATION_FRACTION = 0.1  # what the CLI's TrainSettings holds out
PROBE_BATCHES = 100  # training batches per probe epoch (see stop_fit_after)
# Which probe steps a notebook pays for at full size, recognised by the functions its code calls.
STEP_TRIGGERS = {
    "load and scale the images": ("load_mnist(",),
    "train one epoch with validation": ("train_vae(", "train_run(", ".fit("),
    "ELBO of the test set": ("elbo(",),
    "k-NN accuracy on the codes": ("knn_latent_accuracy(",),
    "importance-weighted NLL (k=100, 500 images)": ("importance_weighted_nll(",),
    "encode the test set": ("encode(", "plot_latent_scatter("),
}


# ----------------------------------------------------------------------------- /proc readings

def read_status(pid):
    """{"VmRSS": bytes, "VmHWM": bytes} of process ``pid`` (0 for a field the kernel did not report)."""
    fields = {"VmRSS": 0, "VmHWM": 0}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in fields:
                fields[name] = int(value.split()[0]) * 1024  # reported in kB
    return fields


def reset_peak(pid="self"):
    """Make VmHWM start again from the current RSS (Linux >= 4.0), to measure one step's peak."""
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")


def parent_map():
    """{pid: parent pid} of every process visible in /proc."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    # the command name may hold spaces or ")", so split after its last ")"
                    parents[int(entry.name)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # the process ended while we looked
    return parents


def descendants(pid, parents=None):
    """Pids of every process started, directly or not, by ``pid``."""
    parents = parent_map() if parents is None else parents
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found.extend(children)
        frontier = children
    return found


def tree_rss(pid):
    """RSS of ``pid`` plus all its descendants, in bytes (processes that vanish count as 0)."""
    total = 0
    for member in [pid, *descendants(pid)]:
        try:
            total += read_status(member)["VmRSS"]
        except OSError:
            pass
    return total


class TreeSampler(threading.Thread):
    """Polls the RSS of a process tree and keeps the largest total seen."""

    def __init__(self, pid, interval=0.25):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
        return self.peak


# ----------------------------------------------------------------------------- notebooks

def install_kernel(folder):
    """Register this interpreter as kernel KERNEL_NAME under ``folder`` and put it first on JUPYTER_PATH."""
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, prefix=str(folder))
    os.environ["JUPYTER_PATH"] = str(Path(folder) / "share" / "jupyter")


def notebook_env(data, quick, runs_dir):
    """Environment for the kernels: the data source, quick or default mode, a throwaway runs folder."""
    env = dict(os.environ, VAE_HELPERS_DATA=data, VAE_HELPERS_RUNS=str(runs_dir))
    env.pop("MPLBACKEND", None)  # let the kernel use its inline backend, as in Jupyter
    if quick:
        env["VAE_HELPERS_QUICK"] = "1"
    else:
        env.pop("VAE_HELPERS_QUICK", None)
    return env


def display_path(path):
    """``path`` relative to the repository when it lies inside it (stable across machines)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


class MemoryHooks:
    """nbclient hooks that read the kernel's memory when it starts and after every cell."""

    def __init__(self, client):
        self.client, self.cells, self.start_rss, self.sampler = client, [], None, None
        self.current_cell, self._cell_started = None, None

    def pid(self):
        return self.client.km.provisioner.pid

    def on_notebook_start(self, notebook):
        self.start_rss = read_status(self.pid())["VmRSS"]
        self.sampler = TreeSampler(self.pid())
        self.sampler.start()

    def on_cell_start(self, cell, cell_index):
        self.current_cell, self._cell_started = cell_index, time.perf_counter()

    def on_cell_executed(self, cell, cell_index, execute_reply):
        status = read_status(self.pid())
        self.cells.append({"index": cell_index, "seconds": round(time.perf_counter() - self._cell_started, 2),
                           "rss_bytes": status["VmRSS"], "peak_bytes": status["VmHWM"]})


def peak_cell(cells):
    """Index of the first cell after which the kernel's peak had reached its final value."""
    final = max(cell["peak_bytes"] for cell in cells)
    return next(cell["index"] for cell in cells if cell["peak_bytes"] == final)


def measure_notebook(path, env, timeout):
    """Run one notebook in a fresh kernel; return its memory record (peak, per-cell readings, status)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=timeout,
                            resources={"metadata": {"path": str(Path(path).parent)}})
    hooks = MemoryHooks(client)
    for name in ("on_notebook_start", "on_cell_start", "on_cell_executed"):
        setattr(client, name, getattr(hooks, name))
    record = {"notebook": display_path(path), "status": "ok"}
    started = time.perf_counter()
    try:
        with open(os.devnull, "w") as quiet:
            client.execute(env=env, stderr=quiet)  # both are handed to the kernel's Popen
    except Exception as error:  # a failing cell still leaves readings up to that cell
        where = f"cell {hooks.current_cell + 1}" if hooks.current_cell is not None else "kernel start"
        record["status"] = f"error in {where}: {type(error).__name__}"
        lines = ANSI.sub("", str(error)).strip().splitlines()
        record["error"] = lines[-1][:300] if lines else ""
    finally:
        tree_peak = hooks.sampler.stop() if hooks.sampler else 0
    record["seconds"] = round(time.perf_counter() - started, 1)
    if hooks.cells:
        record.update(start_rss_bytes=hooks.start_rss,
                      peak_rss_bytes=max(cell["peak_bytes"] for cell in hooks.cells),
                      peak_reached_in_cell=peak_cell(hooks.cells),
                      peak_tree_rss_sampled_bytes=tree_peak,
                      cells=hooks.cells)
    return record


# ----------------------------------------------------------------------------- full-MNIST probe
# ``--probe N_TRAIN N_TEST`` runs this part in a fresh process and prints JSON.

def synthetic_pixels(n, seed):
    """``n`` uint8 digit images made by repeating the bundled sample's digits (contents do not matter)."""
    import numpy as np

    from vae_helpers import data

    (x_train, _), _ = data.load_sample()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(x_train), size=n)
    return np.round(x_train[picks, ..., 0] * 255).astype(np.uint8), (picks % 10).astype(np.uint8)


def stop_fit_after(vae, batches):
    """Make ``vae.fit`` end each epoch after ``batches`` batches.

    train_vae still copies and shuffles the whole training set and Keras still wraps all of it, so
    the memory that depends on the data size is all there; the remaining batches would only cost time.
    """
    from vae_helpers import keras

    class StopAfter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 >= batches:
                self.model.stop_training = True

    full_fit = vae.fit

    def fit(*args, callbacks=None, **kwargs):
        return full_fit(*args, callbacks=[*(callbacks or []), StopAfter()], **kwargs)

    vae.fit = fit
    return vae


def probe_step(name, function, steps):
    """Run ``function`` with the peak reset first; record the step's peak and the RSS after it."""
    reset_peak()
    function()
    status = read_status("self")
    steps.append({"step": name, "peak_bytes": status["VmHWM"], "rss_after_bytes": status["VmRSS"]})


def run_probe(n_train, n_test):
    """The package's memory-hungry steps at the given data size; returns the per-step readings."""
    from vae_helpers import data, evaluation, latent, models, set_seed, training

    set_seed(0)
    steps, held = [], {}
    steps.append({"step": "import vae_helpers", "peak_bytes": read_status("self")["VmHWM"],
                  "rss_after_bytes": read_status("self")["VmRSS"]})

    def load():  # what load_keras_mnist does after Keras hands over its uint8 arrays
        (px_train, y_train), (px_test, y_test) = synthetic_pixels(n_train, 1), synthetic_pixels(n_test, 2)
        held["train"] = (data.to_images(px_train), y_train.astype("int64"))
        held["test"] = (data.to_images(px_test), y_test.astype("int64"))

    def train():  # one epoch of the CLI's training: 90 % fit, 10 % validation ELBO every epoch
        x_fit, x_val = training.split_validation(held["train"][0], VALIDATION_FRACTION, 0)
        held["vae"] = stop_fit_after(models.build_vae(2, seed=0), PROBE_BATCHES)
        training.train_vae(held["vae"], x_fit, epochs=1, batch_size=16, x_val=x_val, progress=None)

    def test_elbo():
        evaluation.elbo(held["vae"], held["test"][0], n_samples=8)

    def knn():
        evaluation.knn_latent_accuracy(held["vae"], *held["train"], *held["test"])

    def iwae():
        evaluation.importance_weighted_nll(held["vae"], held["test"][0][:500], k=100)

    def codes():
        latent.encode(held["vae"], held["test"][0])

    for name, function in [("load and scale the images", load), ("train one epoch with validation", train),
                           ("ELBO of the test set", test_elbo), ("k-NN accuracy on the codes", knn),
                           ("importance-weighted NLL (k=100, 500 images)", iwae),
                           ("encode the test set", codes)]:
        probe_step(name, function, steps)
    return {"train_images": n_train, "test_images": n_test, "training_batches": PROBE_BATCHES, "steps": steps,
            "peak_bytes": max(step["peak_bytes"] for step in steps)}


def probe_in_subprocess(sizes, timeout):
    """Run the probe in a fresh interpreter (so nothing measured earlier counts) and return its JSON."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe",
                             str(sizes["train"]), str(sizes["test"])],
                            capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe at {sizes} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def array_sizes(n_train, n_test, knn_chunk=1000, latent_dim=2):
    """Bytes of the big arrays a notebook holds or creates with the full MNIST (analytic, float32)."""
    pixels = 28 * 28
    n_fit = round(n_train * (1 - VALIDATION_FRACTION))
    return {
        "uint8 pixels from Keras (train + test)": (n_train + n_test) * pixels,
        "float32 images (train + test)": (n_train + n_test) * pixels * 4,
        "temporary float32 copy while scaling the training images": n_train * pixels * 4,
        "shuffled copy of the fit set each epoch": n_fit * pixels * 4,
        "k-NN difference block (chunk x train x latent, float32)": knn_chunk * n_train * latent_dim * 4,
        "k-NN squared-distance block (chunk x train, float32)": knn_chunk * n_train * 4,
    }


def step_deltas(full, sample):
    """{step: bytes the full data adds to that step's peak} from the two probes."""
    sample_peaks = {step["step"]: step["peak_bytes"] for step in sample["steps"]}
    return {step["step"]: max(0, step["peak_bytes"] - sample_peaks[step["step"]]) for step in full["steps"]}


def steps_used(notebook):
    """Probe steps whose functions the notebook's code cells call (by name)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    source = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    return [step for step, names in STEP_TRIGGERS.items() if any(name in source for name in names)]


def notebook_estimate(record, deltas, used):
    """A notebook's full-MNIST peak: its measured peak plus the largest data-size cost among its steps."""
    extra = max([deltas[step] for step in used], default=0)
    return {"bytes": record["peak_rss_bytes"] + extra, "extra_bytes": extra, "steps": used}


def full_mnist_estimate(records, paths, timeout):
    """Probe at full and at sample size, then estimate each notebook from the steps it calls."""
    full, sample = probe_in_subprocess(FULL_SIZES, timeout), probe_in_subprocess(SAMPLE_SIZES, timeout)
    deltas = step_deltas(full, sample)
    per_notebook = {record["notebook"]: notebook_estimate(record, deltas, steps_used(path))
                    for record, path in zip(records, paths, strict=True) if "peak_rss_bytes" in record}
    return {
        "method": ("measured peak on the sample + the largest (probe peak at 60,000/10,000 - probe peak at "
                   "4,000/1,000) among the probe steps whose functions the notebook calls"),
        "step_extra_bytes": deltas,
        "probe_full": full,
        "probe_sample": sample,
        "array_sizes_bytes": array_sizes(FULL_SIZES["train"], FULL_SIZES["test"]),
        "notebooks": per_notebook,
    }


# ----------------------------------------------------------------------------- report

def mib(n):
    return f"{n / MIB:8.0f} MiB"


def over_limit(report, limit_bytes):
    """Readable lines for every notebook that failed or whose measured or estimated peak passes the limit."""
    problems = []
    for record in report["notebooks"]:
        if record["status"] != "ok":
            problems.append(f"{record['notebook']}: {record['status']} {record.get('error', '')}")
        if record.get("peak_rss_bytes", 0) > limit_bytes:
            problems.append(f"{record['notebook']}: measured peak {mib(record['peak_rss_bytes'])} > limit")
    estimate = report.get("full_mnist_estimate") or {}
    for name, value in estimate.get("notebooks", {}).items():
        if value["bytes"] > limit_bytes:
            problems.append(f"{name}: full-MNIST estimate {mib(value['bytes'])} > limit "
                            f"(data-size cost from: {', '.join(value['steps'])})")
    return problems


def print_summary(report):
    settings = report["settings"]
    print(f"\nPeak kernel memory ({settings['mode']} mode, data={settings['data']}), "
          f"limit {mib(report['limit_bytes']).strip()}:")
    estimate = report.get("full_mnist_estimate") or {}
    for record in report["notebooks"]:
        peak = mib(record["peak_rss_bytes"]) if "peak_rss_bytes" in record else "     n/a"
        full = estimate.get("notebooks", {}).get(record["notebook"])
        full = f"  full MNIST ~{mib(full['bytes'])}" if full else ""
        print(f"  {peak}{full}  {record['seconds']:7.1f} s  {record['notebook']}  [{record['status']}]")
    if estimate:
        print("  what the full 60,000/10,000 MNIST adds to each step's peak (probe):")
        for step, extra in estimate["step_extra_bytes"].items():
            print(f"    {mib(extra)}  {step}")


def machine():
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to measure (default: notebooks/*.ipynb)")
    parser.add_argument("--data", default="sample", help="VAE_HELPERS_DATA for the kernels (default: sample)")
    parser.add_argument("--quick", action="store_true", help="quick mode (VAE_HELPERS_QUICK=1) instead of default")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell (default 3600)")
    parser.add_argument("--limit-mib", type=float, default=1536, help="fail above this many MiB (default 1536)")
    parser.add_argument("--no-estimate", action="store_true", help="skip the full-MNIST probe")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON file to write (default {DEFAULT_OUT})")
    parser.add_argument("--probe", nargs=2, type=int, metavar=("N_TRAIN", "N_TEST"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.probe:
        print(json.dumps(run_probe(*args.probe)))
        return 0
    paths = [Path(p) for p in args.notebooks] or sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
    if not paths:
        print("no notebooks to measure", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="vae-memory-") as scratch:
        install_kernel(Path(scratch) / "kernel")
        env = notebook_env(args.data, args.quick, Path(scratch) / "runs")
        records = []
        for path in paths:
            print(f"measuring {path} ...", flush=True)
            records.append(measure_notebook(path, env, args.timeout))
    report = {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "limit_bytes": int(args.limit_mib * MIB),
              "settings": {"data": args.data, "mode": "quick" if args.quick else "default"},
              "notebooks": records}
    if not args.no_estimate:
        print("probing full-MNIST memory ...", flush=True)
        report["full_mnist_estimate"] = full_mnist_estimate(records, paths, args.timeout)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)
    print(f"\nwrote {args.out}")
    problems = over_limit(report, report["limit_bytes"])
    for problem in problems:
        print(f"OVER LIMIT / FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
