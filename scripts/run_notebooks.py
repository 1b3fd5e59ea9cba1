"""Run the chapter notebooks: regenerate their stored outputs, and measure their time and memory.

    VAE_HELPERS_DATA=../shared/data/mnist python scripts/run_notebooks.py   # all of them, default mode, outputs saved
    python scripts/run_notebooks.py notebooks/03_*.ipynb                     # some of them
    python scripts/run_notebooks.py --quick --no-save                       # the tests' quick mode, files untouched
    python scripts/run_notebooks.py --no-save --measure benchmarks/results/notebooks.json

The tests run the notebooks with nbval; this is the one other way they are executed. Each notebook
runs in a fresh kernel from its own folder, as under nbval, and stops at the first failing cell (the
file is then left as it was). Default mode unsets ``VAE_HELPERS_QUICK``; the data source is whatever
``VAE_HELPERS_DATA`` says.

Live widgets are not stored: their saved output is a placeholder plus widget state that GitHub cannot
show. The widget view is dropped from each output, and so is an output left with only its text/plain
placeholder; a static fallback (the quiz's text/html) stays.

With ``--measure`` the kernel reports, after the last cell, its own peak resident memory and CPU
time (``resource.getrusage``: the high-water mark of the whole kernel process, TensorFlow's threads
included), written to a JSON file with the wall time of each notebook.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from vae_helpers.files import atomic_write, write_json  # pure Python: no TensorFlow in this process

REPO = Path(__file__).resolve().parent.parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
USAGE_PROBE = ("import json, resource, sys\n"
               "_usage = resource.getrusage(resource.RUSAGE_SELF)\n"
               "print(json.dumps({'peak_rss_mb': _usage.ru_maxrss / (1024 if sys.platform != 'darwin' else 1024 ** 2),"
               " 'cpu_seconds': _usage.ru_utime + _usage.ru_stime}))")


def chapter_notebooks():
    """The numbered chapter notebooks, in order."""
    return sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def strip_widgets(notebook):
    """Drop widget views (and outputs left with only a text/plain placeholder) and the saved widget state."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                if set(data) <= {"text/plain"}:
                    continue
            kept.append(output)
        cell.outputs = kept
    notebook.metadata.pop("widgets", None)
    return notebook


class NotANotebook(ValueError):
    """A file given to run is not a readable Jupyter notebook."""


def read_notebook(path):
    """The notebook at ``path`` (nbformat 4), or NotANotebook naming the file and what is wrong."""
    try:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
    except OSError as err:
        raise NotANotebook(f"{path}: cannot read it ({err.strerror or err})") from err
    except Exception as err:  # nbformat raises JSON, validation and version errors of several types
        raise NotANotebook(f"{path}: not a Jupyter notebook ({type(err).__name__}: "
                           f"{str(err).splitlines()[0][:200]})") from err
    return notebook


def execute(path, timeout=3600, measure=False, allow_errors=False, kernel_name="python3"):
    """Run one notebook top to bottom in a new kernel; return (executed notebook, usage dict or None)."""
    notebook = read_notebook(path)
    if measure:
        notebook.cells.append(nbformat.v4.new_code_cell(USAGE_PROBE))
    client = NotebookClient(notebook, timeout=timeout, kernel_name=kernel_name, allow_errors=allow_errors,
                            resources={"metadata": {"path": str(Path(path).parent)}},
                            record_timing=False)  # no timestamps in cell metadata: diffs show real changes
    client.execute()
    usage = None
    if measure:
        probe = notebook.cells.pop()
        usage = json.loads(probe.outputs[-1]["text"].strip().splitlines()[-1])
    return strip_widgets(notebook), usage


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--quick", action="store_true", help="quick mode (VAE_HELPERS_QUICK=1), as in the tests")
    parser.add_argument("--no-save", action="store_true", help="execute only; leave the files unchanged")
    parser.add_argument("--measure", type=Path, metavar="JSON", help="write wall time, CPU time and peak memory here")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run (default: 3600)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or chapter_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        sys.exit(f"run_notebooks: no such notebook: {', '.join(missing) or 'notebooks/NN_*.ipynb'}")
    for path in paths:  # every file is checked before the first one runs
        try:
            read_notebook(path)
        except NotANotebook as err:
            sys.exit(f"run_notebooks: {err}")
    if args.quick:
        os.environ["VAE_HELPERS_QUICK"] = "1"
    else:
        os.environ.pop("VAE_HELPERS_QUICK", None)
    mode, data = ("quick" if args.quick else "default"), os.environ.get("VAE_HELPERS_DATA", "auto")
    print(f"{len(paths)} notebook(s), {mode} mode, data={data}", flush=True)
    results = {}
    for path in paths:
        started = time.perf_counter()
        print(f"running {path.name} ...", flush=True)
        try:
            notebook, usage = execute(path, args.timeout, measure=args.measure is not None)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            print(f"FAILED {path.name} after {time.perf_counter() - started:.0f} s; file left unchanged\n{err}",
                  file=sys.stderr)
            return 1
        seconds = time.perf_counter() - started
        if not args.no_save:
            atomic_write(path, lambda tmp, notebook=notebook: nbformat.write(notebook, tmp))
        results[path.name] = {"seconds": round(seconds, 1), **(usage or {})}
        measured = f", {usage['cpu_seconds']:.0f} CPU-s, peak {usage['peak_rss_mb']:.0f} MB" if usage else ""
        print(f"  ok in {seconds:.0f} s{measured}{'' if args.no_save else ' (outputs saved)'}", flush=True)
    if args.measure:
        args.measure.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.measure, {
            "mode": mode, "data": data, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
            "date": time.strftime("%Y-%m-%d %H:%M %z"), "notebooks": results})
        print(f"measurements written to {args.measure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
