"""Execute the chapter notebooks in place, so their stored outputs come from a fresh, complete run.

The stored outputs are what ``pytest --nbval`` compares against, so they should come from the
real lesson: by default this runs the *full* mode (``VAE_HELPERS_QUICK`` removed from the
environment). ``--quick`` runs the shrunken CI mode instead, handy to check that everything still
executes without overwriting anything (combine it with ``--no-save``).

    python scripts/run_notebooks.py                       # every notebooks/NN_*.ipynb, full mode
    python scripts/run_notebooks.py notebooks/03_*.ipynb  # some notebooks
    python scripts/run_notebooks.py --quick --no-save     # a fast smoke test, files untouched
    python scripts/run_notebooks.py --data sample         # force the bundled MNIST sample

Each notebook runs in a fresh kernel from its own folder (as nbval does). The first failing cell
stops the run with its traceback and a non-zero exit status; a failed notebook is never written.

Live widgets are not stored: a widget's saved output is only a text placeholder plus a large blob of
widget state, which GitHub's viewer cannot render. After execution the outputs of cells that display
a widget, and the notebook's ``widgets`` metadata, are dropped; the static figures around them show
readers what the widget does.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
QUICK_ENV = "VAE_HELPERS_QUICK"
DATA_ENV = "VAE_HELPERS_DATA"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def default_notebooks():
    """The numbered chapter notebooks, in order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def set_mode(quick, data):
    """Set the environment the kernels inherit: quick or full mode, and the data source."""
    if quick:
        os.environ[QUICK_ENV] = "1"
    else:
        os.environ.pop(QUICK_ENV, None)
    if data:
        os.environ[DATA_ENV] = data


def execute(path, timeout, kernel_name):
    """Run one notebook top to bottom in a new kernel; return the executed notebook."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,  # no timestamps in cell metadata: keeps diffs to real changes
    )
    client.execute()
    return drop_widget_outputs(notebook)


def is_widget_output(output):
    """True for an output that displays a live ipywidgets view."""
    return WIDGET_VIEW in output.get("data", {})


def drop_widget_outputs(notebook):
    """Clear the outputs of cells that display a widget, and the saved widget state; return the notebook."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and any(is_widget_output(o) for o in cell.get("outputs", [])):
            cell.outputs = []
    notebook.metadata.pop("widgets", None)
    return notebook


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--quick", action="store_true",
                        help=f"quick mode ({QUICK_ENV}=1): small data and few epochs, as in the tests")
    parser.add_argument("--data", default=None,
                        help=f"set {DATA_ENV} (e.g. 'sample' offline, 'keras' for full MNIST)")
    parser.add_argument("--no-save", action="store_true", help="execute only; leave the files unchanged")
    parser.add_argument("--timeout", type=int, default=3600,
                        help="seconds one cell may run before the run fails (default: 3600)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or default_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"run_notebooks: no such notebook: {', '.join(missing)}")
    if not paths:
        sys.exit(f"run_notebooks: no numbered notebooks in {NOTEBOOKS}")
    set_mode(args.quick, args.data)
    mode = "quick" if args.quick else "full"
    data = os.environ.get(DATA_ENV, "auto")
    print(f"{len(paths)} notebook(s), {mode} mode, data={data}", flush=True)
    total = time.perf_counter()
    for path in paths:
        started = time.perf_counter()
        print(f"running {path.name} ...", flush=True)
        try:
            notebook = execute(path, args.timeout, args.kernel)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            print(f"FAILED {path.name} after {time.perf_counter() - started:.0f} s; file left unchanged\n{err}",
                  file=sys.stderr)
            return 1
        if not args.no_save:
            nbformat.write(notebook, path)
        print(f"  ok in {time.perf_counter() - started:.0f} s{'' if args.no_save else ' (outputs saved)'}",
              flush=True)
    print(f"all done in {time.perf_counter() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
