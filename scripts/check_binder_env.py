#!/usr/bin/env python3
"""Prove that the files in binder/ alone give a working environment for every notebook.

It repeats what repo2docker (the builder behind mybinder.org) does with this repository, on this
machine and without Docker:

1. a clean virtual environment (no system site-packages) of the Python named in binder/runtime.txt;
2. ``pip install -r binder/requirements.txt`` run from the repository root, as repo2docker does;
3. ``binder/postBuild``, if there is one, from the repository root with the environment first on PATH;
4. ``pip check``, and a check that ``vae_helpers`` is imported from this checkout;
5. every notebook in notebooks/ executed top to bottom by a kernel of that environment, in quick
   mode on the bundled sample (``VAE_HELPERS_QUICK=1``, ``VAE_HELPERS_DATA=sample``), started
   through ``binder/start`` when there is one, so the variables it exports reach the kernels as on
   Binder.

It exits 0 when all of that worked, 1 naming the notebook and cell that failed, and 2 when the
environment could not be built. Run it from anywhere:

    python scripts/check_binder_env.py            # build in a temporary folder, remove it after
    python scripts/check_binder_env.py --venv /tmp/binder-venv --keep   # keep the environment

The same file, run by the environment's own Python with ``--run-notebooks``, is the notebook runner
(step 5), so the check needs nothing outside binder/ inside the environment.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
KERNEL_NAME = "vae-binder-check"
NOTEBOOK_ENV = {"VAE_HELPERS_QUICK": "1", "VAE_HELPERS_DATA": "sample"}
# Variables that would let the parent's packages or settings leak into the clean environment.
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "CONDA_PREFIX",
             "JUPYTER_PATH", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR", "MPLBACKEND")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BinderCheckError(RuntimeError):
    """The Binder environment could not be built or inspected (exit status 2)."""


# ----------------------------------------------------------------------------- binder/ files

def runtime_version(binder_dir):
    """(major, minor) from binder/runtime.txt, e.g. (3, 11) for ``python-3.11``."""
    path = Path(binder_dir) / "runtime.txt"
    if not path.is_file():
        raise BinderCheckError(f"{path} is missing; repo2docker would pick its default Python")
    text = path.read_text().strip()
    match = re.fullmatch(r"python-(\d+)\.(\d+)", text)
    if not match:
        raise BinderCheckError(f"{path} says {text!r}; expected 'python-MAJOR.MINOR', e.g. python-3.11")
    return int(match.group(1)), int(match.group(2))


def interpreter_version(python):
    """(major, minor) of the interpreter at ``python``."""
    out = run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture=True)
    major, minor = out.split()
    return int(major), int(minor)


def check_interpreter(python, binder_dir):
    """Fail unless ``python`` is the version that binder/runtime.txt gives Binder users."""
    wanted, found = runtime_version(binder_dir), interpreter_version(python)
    if wanted != found:
        raise BinderCheckError(f"binder/runtime.txt asks for Python {wanted[0]}.{wanted[1]} but {python} "
                               f"is {found[0]}.{found[1]}; pass --python with a {wanted[0]}.{wanted[1]} interpreter")


def find_notebooks(notebook_dir):
    """Every .ipynb in ``notebook_dir`` (not checkpoints), sorted by name."""
    notebooks = sorted(p for p in Path(notebook_dir).glob("*.ipynb") if p.is_file())
    if not notebooks:
        raise BinderCheckError(f"no notebooks in {notebook_dir}: nothing would prove the environment works")
    return notebooks


# ----------------------------------------------------------------------------- subprocesses

def clean_env(venv=None, extra=None):
    """The environment for child processes: no leaking variables, the venv (if any) first on PATH."""
    env = {key: value for key, value in os.environ.items() if key not in LEAKY_ENV}
    env["PYTHONNOUSERSITE"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{Path(venv) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def run(command, cwd=None, env=None, capture=False):
    """Run ``command``; raise BinderCheckError naming it if it fails. Returns stdout when captured."""
    command = [str(part) for part in command]
    result = subprocess.run(command, cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        details = f"\n{result.stderr.strip()}" if capture and result.stderr else ""
        raise BinderCheckError(f"command failed with exit status {result.returncode}: "
                               f"{' '.join(command)} (in {cwd or os.getcwd()}){details}")
    return result.stdout if capture else None


class Timer:
    """Named wall-clock durations, printed as each step ends and kept for the summary."""

    def __init__(self):
        self.seconds = {}

    def step(self, name, function, *args, **kwargs):
        print(f"\n=== {name}", flush=True)
        started = time.perf_counter()
        result = function(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - started
        print(f"=== {name}: {self.seconds[name]:.1f} s", flush=True)
        return result


# ----------------------------------------------------------------------------- building

def venv_python(venv):
    return Path(venv) / "bin" / "python"


def create_venv(python, venv, reuse=False):
    """A fresh virtual environment at ``venv`` without the system's site-packages.

    With ``reuse`` an existing environment there is kept (pip then only adds what is missing):
    quicker while editing notebooks, but only a fresh build proves binder/ is complete.
    """
    if reuse and venv_python(venv).exists():
        print(f"reusing {venv}")
        return
    run([python, "-m", "venv", "--clear", venv], env=clean_env())


def install_requirements(venv, repo_root):
    """What repo2docker runs once the repository is copied in: pip on binder/requirements.txt from the root."""
    run([venv_python(venv), "-m", "pip", "install", "--progress-bar", "off",
         "-r", Path("binder") / "requirements.txt"], cwd=repo_root, env=clean_env(venv))


def shebang_command(script):
    """The interpreter line of ``script`` plus its path, so it runs without its executable bit."""
    first = Path(script).read_text().splitlines()[:1]
    if first and first[0].startswith("#!"):
        return first[0][2:].split() + [str(script)]
    return ["/bin/sh", str(script)]


def run_post_build(venv, repo_root):
    """binder/postBuild, if present, from the repository root (repo2docker makes it executable first)."""
    script = Path(repo_root) / "binder" / "postBuild"
    if not script.is_file():
        print("no binder/postBuild: nothing to run")
        return
    run(shebang_command(script), cwd=repo_root, env=clean_env(venv))


def check_installation(venv, repo_root):
    """pip's own consistency check, then vae_helpers must come from this checkout (the editable install)."""
    run([venv_python(venv), "-m", "pip", "check"], env=clean_env(venv))
    where = run([venv_python(venv), "-c", "import vae_helpers; print(vae_helpers.__file__)"],
                cwd=tempfile.gettempdir(), env=clean_env(venv), capture=True).strip()
    if not Path(where).resolve().is_relative_to(Path(repo_root).resolve()):
        raise BinderCheckError(f"the Binder environment imports vae_helpers from {where}, "
                               f"not from the repository at {repo_root}")
    print(f"vae_helpers imported from {where}")


def install_kernel(venv, jupyter_dir):
    """Register the environment's Python as kernel KERNEL_NAME under ``jupyter_dir`` (used as JUPYTER_PATH)."""
    run([venv_python(venv), "-m", "ipykernel", "install", "--prefix", jupyter_dir, "--name", KERNEL_NAME,
         "--display-name", "Python 3 (Binder check)"], env=clean_env(venv), capture=True)
    return Path(jupyter_dir) / "share" / "jupyter"


# ----------------------------------------------------------------------------- running notebooks
# This part runs inside the Binder environment (``--run-notebooks``), so it may import nbclient.

PROBE = ("import json, sys, vae_helpers\n"
         "print(json.dumps({'prefix': sys.prefix, 'vae_helpers': vae_helpers.__file__}))")


def first_line(source):
    """The first non-blank line of a cell (cut to 80 characters), to name the cell in a report."""
    lines = [line for line in source.splitlines() if line.strip()]
    return (lines[0][:80] + (" ..." if len(lines) > 1 else "")) if lines else "(empty)"


def describe_failure(notebook, nb, index, error):
    """A readable account of the failing cell: which cell, its first line, and the error's tail."""
    cell = nb.cells[index] if index is not None and index < len(nb.cells) else None
    code_number = sum(1 for c in nb.cells[:index + 1] if c.cell_type == "code") if cell is not None else None
    where = (f"cell {index + 1} of {len(nb.cells)} (code cell {code_number}): {first_line(cell.source)}"
             if cell is not None else "while starting or stopping the kernel")
    message = ANSI.sub("", str(error)).strip().splitlines()
    tail = "\n      ".join(message[-12:])
    return f"{notebook}\n    at {where}\n    {type(error).__name__}:\n      {tail}"


def probe_result(nb):
    """The JSON printed by the probe cell appended to ``nb``, or None if it printed nothing."""
    for output in nb.cells[-1].get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            return json.loads(output["text"].strip().splitlines()[-1])
    return None


def check_probe(notebook, nb, expected_prefix, repo_root):
    """Problems shown by the probe: the kernel ran another Python, or vae_helpers came from elsewhere."""
    probe = probe_result(nb)
    if probe is None:
        return [f"{notebook}\n    the probe cell printed nothing; the kernel is not the Binder environment's"]
    problems = []
    if Path(probe["prefix"]).resolve() != Path(expected_prefix).resolve():
        problems.append(f"{notebook}\n    ran on the kernel of {probe['prefix']}, not of {expected_prefix}")
    if not Path(probe["vae_helpers"]).resolve().is_relative_to(Path(repo_root).resolve()):
        problems.append(f"{notebook}\n    imported vae_helpers from {probe['vae_helpers']}, not from {repo_root}")
    return problems


def stderr_lines(nb):
    """(cell number, text) of every stderr stream left in the executed notebook (warnings, log spam)."""
    found = []
    for index, cell in enumerate(nb.cells[:-1]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                found.append((index + 1, output["text"].strip()))
    return found


def kernel_log_tail(log_path, lines=15):
    """The last lines the kernel process wrote to its own stderr (crashes, fatal C++ errors)."""
    text = Path(log_path).read_text(errors="replace").strip() if Path(log_path).exists() else ""
    tail = text.splitlines()[-lines:]
    return ("\n    kernel's own stderr (last lines):\n      " + "\n      ".join(tail)) if tail else ""


def execute_notebook(path, kernel_name, timeout, repo_root):
    """Run one notebook in its own folder; return (problems, stderr outputs, seconds).

    The kernel process's own stderr (not the notebook's) goes to a log file that is shown only when
    the notebook fails, so the check's output stays readable.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    current = {"index": None}

    def on_cell_start(cell, cell_index):
        current["index"] = cell_index

    client = NotebookClient(nb, kernel_name=kernel_name, timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(Path(path).parent)}},
                            on_cell_start=on_cell_start)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "kernel-stderr.log"
        try:
            with open(log_path, "w") as kernel_log:
                client.execute(stderr=kernel_log)
        except Exception as error:  # CellExecutionError, CellTimeoutError, DeadKernelError, ...
            report = describe_failure(path, nb, current["index"], error) + kernel_log_tail(log_path)
            return [report], [], time.perf_counter() - started
    seconds = time.perf_counter() - started
    return check_probe(path, nb, sys.prefix, repo_root), stderr_lines(nb), seconds


def run_notebooks(paths, kernel_name, timeout, repo_root, fail_on_stderr=False):
    """Execute each notebook, print a line per notebook and every problem; return the problems."""
    problems = []
    for path in paths:
        found, stderr, seconds = execute_notebook(path, kernel_name, timeout, repo_root)
        if fail_on_stderr and stderr:
            found = found + [f"{path}\n    wrote to stderr in cell(s) {sorted({c for c, _ in stderr})}"]
        print(f"  {'FAILED' if found else 'ok':6} {Path(path).name}  {seconds:6.1f} s", flush=True)
        for cell_number, text in stderr:
            print(f"         stderr in cell {cell_number}: {text[:300]}")
        problems.extend(found)
    return problems


# ----------------------------------------------------------------------------- driver

def start_command(repo_root):
    """binder/start as a command prefix (it must end in ``exec "$@"``), or nothing without one."""
    start = Path(repo_root) / "binder" / "start"
    return shebang_command(start) if start.is_file() else []


def execute_in_venv(venv, notebooks, jupyter_dir, runs_dir, timeout, fail_on_stderr, repo_root):
    """Start this script inside the environment (via binder/start) to run the notebooks; True if all passed."""
    command = [*start_command(repo_root), venv_python(venv), Path(__file__).resolve(), "--run-notebooks",
               *notebooks, "--timeout", timeout, "--repo", repo_root]
    if fail_on_stderr:
        command.append("--fail-on-stderr")
    env = clean_env(venv, {**NOTEBOOK_ENV, "JUPYTER_PATH": str(jupyter_dir), "VAE_HELPERS_RUNS": str(runs_dir)})
    return subprocess.run([str(part) for part in command], cwd=repo_root, env=env).returncode == 0


def build_and_check(args):
    """Steps 1-5 of the module docstring; returns the exit status."""
    repo_root = Path(args.repo).resolve()
    binder_dir = repo_root / "binder"
    notebooks = [Path(p).resolve() for p in args.notebooks] or find_notebooks(repo_root / "notebooks")
    check_interpreter(args.python, binder_dir)
    work = Path(tempfile.mkdtemp(prefix="binder-check-"))
    venv = Path(args.venv).resolve() if args.venv else work / "venv"
    timer = Timer()
    try:
        timer.step("create a clean virtual environment", create_venv, args.python, venv, args.reuse)
        timer.step("pip install -r binder/requirements.txt (from the repository root)",
                   install_requirements, venv, repo_root)
        timer.step("binder/postBuild", run_post_build, venv, repo_root)
        timer.step("pip check and vae_helpers location", check_installation, venv, repo_root)
        jupyter_dir = timer.step("register the environment's kernel", install_kernel, venv, work / "jupyter")
        passed = timer.step(f"execute {len(notebooks)} notebook(s) in quick mode", execute_in_venv, venv,
                            notebooks, jupyter_dir, work / "runs", args.timeout, args.fail_on_stderr, repo_root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.venv and not args.keep:
            shutil.rmtree(venv, ignore_errors=True)
    print("\nTimings:")
    for name, seconds in timer.seconds.items():
        print(f"  {seconds:7.1f} s  {name}")
    print(f"  {sum(timer.seconds.values()):7.1f} s  total")
    if not passed:
        print("\nBinder check FAILED: a notebook broke in the environment built from binder/ alone.")
        return 1
    print(f"\nBinder check passed: binder/ alone builds an environment that runs all {len(notebooks)} notebook(s).")
    return 0


def notebooks_mode(args):
    """``--run-notebooks``: execute the given notebooks with the kernel of this interpreter's environment."""
    print(f"Running {len(args.run_notebooks)} notebook(s) with kernel {args.kernel} ({sys.prefix})")
    problems = run_notebooks(args.run_notebooks, args.kernel, args.timeout, Path(args.repo).resolve(),
                             args.fail_on_stderr)
    for problem in problems:
        print(f"\nFAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: every notebooks/*.ipynb)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the environment; must match binder/runtime.txt (default: this one)")
    parser.add_argument("--venv", help="build the environment here instead of a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the --venv folder afterwards")
    parser.add_argument("--reuse", action="store_true",
                        help="with --venv: keep an environment already there instead of a fresh one")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (default 900)")
    parser.add_argument("--fail-on-stderr", action="store_true",
                        help="also fail when a notebook leaves stderr output (warnings, log lines)")
    parser.add_argument("--repo", default=str(REPO_ROOT), help=argparse.SUPPRESS)
    parser.add_argument("--run-notebooks", nargs="+", metavar="NOTEBOOK", help=argparse.SUPPRESS)
    parser.add_argument("--kernel", default=KERNEL_NAME, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.run_notebooks:
        return notebooks_mode(args)
    try:
        return build_and_check(args)
    except BinderCheckError as error:
        print(f"\nBinder check could not build the environment: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
