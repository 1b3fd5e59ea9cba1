"""Binder's configuration stays the project's one pinned environment, and the Binder scripts report well.

The static checks read files only (no network, no build): binder/requirements.txt must bring in the
top-level requirements.txt rather than repeat its pins, anything Binder-only must be pinned too, and
binder/runtime.txt must name a Python that pyproject.toml accepts. scripts/check_binder_env.py does
the slow proof (a fresh environment that runs every notebook); here we test how it reports failures.
"""

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
# Files that switch repo2docker to another build pack, which would ignore binder/requirements.txt.
OTHER_BUILD_PACKS = ("environment.yml", "Pipfile", "Pipfile.lock", "Dockerfile", "Project.toml",
                     "install.R", "DESCRIPTION", "setup.py", "pyproject.toml")


def load_script(name):
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_binder_env = load_script("check_binder_env")
measure_notebook_memory = load_script("measure_notebook_memory")


# ----------------------------------------------------------------------------- reading requirements

def requirement_lines(path):
    """(file, line) for every non-comment line pip reads, following ``-r`` the way pip does.

    pip resolves a nested ``-r`` file next to the file that names it, but a local path such as
    ``-e .`` from the directory pip runs in (repo2docker runs it in the repository root).
    """
    path = Path(path)
    found = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            found.extend(requirement_lines(path.parent / line.split(None, 1)[1]))
        else:
            found.append((path, line))
    return found


def local_paths(lines):
    """The local project paths installed by these lines (``-e .``, ``.``, ``./sub``), as written."""
    paths = []
    for _, line in lines:
        target = line.split(None, 1)[1] if line.startswith(("-e ", "--editable ")) else line
        if target.startswith("."):
            paths.append(target)
    return paths


def named_requirements(lines):
    """{file: [Requirement, ...]} for the lines that name a package."""
    by_file = {}
    for source, line in lines:
        if line.startswith("-") or line.startswith("."):
            continue
        by_file.setdefault(source, []).append(Requirement(line))
    return by_file


@pytest.fixture(scope="module")
def binder_lines():
    return requirement_lines(BINDER / "requirements.txt")


@pytest.fixture(scope="module")
def top_level_pins():
    """{package name: version} pinned with == in the top-level requirements.txt."""
    assert (ROOT / "requirements.txt").is_file(), "requirements.txt (the one pinned environment) is missing"
    pins = {}
    for requirement in named_requirements(requirement_lines(ROOT / "requirements.txt"))[ROOT / "requirements.txt"]:
        pins[requirement.name.lower()] = str(requirement.specifier).removeprefix("==")
    return pins


# ----------------------------------------------------------------------------- static checks

def test_binder_requirements_include_the_top_level_file():
    text = (BINDER / "requirements.txt").read_text().splitlines()
    includes = [line.split(None, 1)[1] for line in text if line.startswith(("-r ", "--requirement "))]
    assert [(BINDER / target).resolve() for target in includes] == [(ROOT / "requirements.txt").resolve()]


def test_binder_does_not_repeat_a_top_level_pin(binder_lines, top_level_pins):
    binder_only = named_requirements(binder_lines).get(BINDER / "requirements.txt", [])
    repeated = sorted(r.name for r in binder_only if r.name.lower() in top_level_pins)
    assert not repeated, f"binder/requirements.txt pins {repeated} again; pin them only in requirements.txt"


def test_every_package_binder_installs_is_pinned_exactly(binder_lines):
    loose = [f"{source.relative_to(ROOT)}: {requirement}"
             for source, requirements in named_requirements(binder_lines).items()
             for requirement in requirements
             if len(requirement.specifier) != 1 or next(iter(requirement.specifier)).operator != "=="]
    assert not loose, f"unpinned requirements make Binder builds drift: {loose}"


def test_binder_installs_this_repository_from_the_root(binder_lines):
    post_build = BINDER / "postBuild"
    installs_in_post_build = post_build.is_file() and re.search(r"pip install (-e )?\.", post_build.read_text())
    paths = local_paths(binder_lines)
    assert paths or installs_in_post_build, "nothing in binder/ installs vae_helpers from the repository"
    for target in paths:  # pip resolves these from its working directory: the repository root
        folder = (ROOT / target).resolve()
        assert (folder / "pyproject.toml").is_file() or (folder / "setup.py").is_file(), (
            f"{target!r} resolves to {folder} from the repository root, which is not a Python project")


def test_binder_folder_holds_no_other_build_pack():
    clashing = [name for name in OTHER_BUILD_PACKS if (BINDER / name).exists()]
    assert not clashing, f"binder/{', '.join(clashing)} would make repo2docker ignore binder/requirements.txt"


def test_notebook_front_end_moves_with_jupyterlab(binder_lines, top_level_pins):
    """Notebook 7.N is built against JupyterLab 4.N; a mismatch breaks the classic /tree view on Binder."""
    pins = {r.name.lower(): str(r.specifier).removeprefix("==")
            for requirements in named_requirements(binder_lines).values() for r in requirements}
    if "notebook" not in pins:
        pytest.skip("binder/requirements.txt does not pin the classic notebook front end")
    notebook_minor = pins["notebook"].split(".")[1]
    lab_minor = top_level_pins["jupyterlab"].split(".")[1]
    assert notebook_minor == lab_minor, (
        f"notebook=={pins['notebook']} does not belong with jupyterlab=={top_level_pins['jupyterlab']}")


def test_start_script_hands_over_to_the_server():
    """repo2docker runs binder/start as the container's entrypoint: without ``exec "$@"`` no session starts."""
    start = BINDER / "start"
    if not start.is_file():
        pytest.skip("no binder/start")
    lines = [line.strip() for line in start.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert start.read_text().startswith("#!"), "binder/start needs an interpreter line, e.g. #!/bin/bash"
    assert lines[-1] == 'exec "$@"', f"binder/start must end with exec \"$@\", not {lines[-1]!r}"


def test_start_script_keeps_a_data_source_the_learner_chose(tmp_path):
    start = BINDER / "start"
    if not start.is_file():
        pytest.skip("no binder/start")
    show = [sys.executable, "-c", "import os; print(os.environ.get('VAE_HELPERS_DATA'))"]
    env = {"PATH": "/usr/bin:/bin"}
    chosen = subprocess.run([*check_binder_env.shebang_command(start), *show], capture_output=True, text=True,
                            env=env | {"VAE_HELPERS_DATA": "keras"}, check=True).stdout.strip()
    default = subprocess.run([*check_binder_env.shebang_command(start), *show], capture_output=True, text=True,
                             env=env, check=True).stdout.strip()
    assert chosen == "keras" and default == "sample"


def test_runtime_is_a_python_the_project_supports():
    major, minor = check_binder_env.runtime_version(BINDER)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(f"{major}.{minor}"), (
        f"binder/runtime.txt gives Python {major}.{minor}, outside requires-python {requires!r}")


@pytest.mark.parametrize("text", ["python-3", "3.11", "python-3.11.7", "r-4.3-2024-01-01", ""])
def test_runtime_version_rejects_what_binder_would_misread(tmp_path, text):
    (tmp_path / "runtime.txt").write_text(text + "\n")
    with pytest.raises(check_binder_env.BinderCheckError, match="runtime.txt"):
        check_binder_env.runtime_version(tmp_path)


def test_runtime_version_reads_major_and_minor(tmp_path):
    (tmp_path / "runtime.txt").write_text("python-3.12\n")
    assert check_binder_env.runtime_version(tmp_path) == (3, 12)


def test_requirement_lines_follow_nested_files_like_pip(tmp_path):
    (tmp_path / "binder").mkdir()
    (tmp_path / "requirements.txt").write_text("# pins\nnumpy==2.0.0  # inline comment\n-e .\n")
    (tmp_path / "binder" / "requirements.txt").write_text("-r ../requirements.txt\nnotebook==7.1.0\n")
    lines = requirement_lines(tmp_path / "binder" / "requirements.txt")
    assert [line for _, line in lines] == ["numpy==2.0.0", "-e .", "notebook==7.1.0"]
    assert local_paths(lines) == ["."]


# ----------------------------------------------------------------------------- check_binder_env.py

def test_shebang_command_runs_a_script_without_its_executable_bit(tmp_path):
    script = tmp_path / "postBuild"
    script.write_text("#!/usr/bin/env bash\nset -e\n")
    assert check_binder_env.shebang_command(script) == ["/usr/bin/env", "bash", str(script)]
    script.write_text("pip install -e .\n")
    assert check_binder_env.shebang_command(script) == ["/bin/sh", str(script)]


def test_check_interpreter_names_both_versions(tmp_path):
    (tmp_path / "runtime.txt").write_text("python-2.7\n")
    with pytest.raises(check_binder_env.BinderCheckError, match=r"2\.7 .* is 3\.\d+"):
        check_binder_env.check_interpreter(sys.executable, tmp_path)


def test_find_notebooks_refuses_an_empty_folder(tmp_path):
    with pytest.raises(check_binder_env.BinderCheckError, match="no notebooks"):
        check_binder_env.find_notebooks(tmp_path)


def write_notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title")]
                                  + [nbformat.v4.new_code_cell(source) for source in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def this_python_kernel(tmp_path_factory):
    """A kernelspec for this interpreter, first on JUPYTER_PATH, so the runner cannot pick another Python."""
    from ipykernel.kernelspec import install

    folder = tmp_path_factory.mktemp("kernel")
    install(kernel_name="binder-config-test", prefix=str(folder))
    patch = pytest.MonkeyPatch()
    patch.setenv("JUPYTER_PATH", str(folder / "share" / "jupyter"))
    yield "binder-config-test"
    patch.undo()


def test_run_notebooks_names_the_failing_notebook_and_cell(tmp_path, this_python_kernel, capsys):
    broken = write_notebook(tmp_path / "broken.ipynb", "x = 40 + 2", "print('fine')",
                            "raise KeyError('no such digit')", "print('never reached')")
    problems = check_binder_env.run_notebooks([broken], this_python_kernel, 60, ROOT)
    assert len(problems) == 1
    assert "broken.ipynb" in problems[0]
    assert "cell 4 of 6 (code cell 3): raise KeyError('no such digit')" in problems[0]
    assert "KeyError" in problems[0] and "no such digit" in problems[0]
    assert "FAILED broken.ipynb" in capsys.readouterr().out


def test_run_notebooks_notices_a_kernel_from_another_environment(tmp_path, this_python_kernel):
    """The probe cell reports the kernel's sys.prefix; a runner in another prefix must refuse the result."""
    fine = write_notebook(tmp_path / "fine.ipynb", "print(1 + 1)")
    nb = nbformat.read(fine, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(check_binder_env.PROBE))
    nb.cells[-1].outputs = [nbformat.v4.new_output(
        "stream", name="stdout", text=json.dumps({"prefix": "/elsewhere", "vae_helpers": "/elsewhere/x.py"}) + "\n")]
    problems = check_binder_env.check_probe(fine, nb, sys.prefix, ROOT)
    assert any("ran on the kernel of /elsewhere" in p for p in problems)
    assert any("imported vae_helpers from /elsewhere/x.py" in p for p in problems)


def test_stderr_outputs_are_reported_with_their_cell(tmp_path, this_python_kernel, capsys):
    noisy = write_notebook(tmp_path / "noisy.ipynb", "import sys; print('careful', file=sys.stderr)")
    problems = check_binder_env.run_notebooks([noisy], this_python_kernel, 60, ROOT, fail_on_stderr=True)
    assert "stderr in cell 2: careful" in capsys.readouterr().out
    assert problems and "wrote to stderr in cell(s) [2]" in problems[-1]


# ----------------------------------------------------------------------------- measure_notebook_memory.py

def test_read_status_sees_memory_grow_and_the_peak_reset():
    before = measure_notebook_memory.read_status("self")
    block = bytearray(64 * 2 ** 20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    during = measure_notebook_memory.read_status("self")
    assert during["VmRSS"] - before["VmRSS"] > 48 * 2 ** 20
    del block
    measure_notebook_memory.reset_peak()
    after = measure_notebook_memory.read_status("self")
    assert after["VmHWM"] < during["VmHWM"]


def test_descendants_finds_grandchildren():
    parents = {10: 1, 11: 10, 12: 11, 13: 1, 14: 12}
    assert sorted(measure_notebook_memory.descendants(10, parents)) == [11, 12, 14]
    assert measure_notebook_memory.descendants(13, parents) == []


def test_full_mnist_array_sizes_match_the_arithmetic():
    sizes = measure_notebook_memory.array_sizes(60_000, 10_000)
    assert sizes["float32 images (train + test)"] == 70_000 * 784 * 4
    assert sizes["k-NN difference block (chunk x train x latent, float32)"] == 1000 * 60_000 * 2 * 4


def test_estimate_adds_the_costliest_step_the_notebook_calls(tmp_path):
    full = {"steps": [{"step": "load and scale the images", "peak_bytes": 900},
                      {"step": "k-NN accuracy on the codes", "peak_bytes": 3000}]}
    sample = {"steps": [{"step": "load and scale the images", "peak_bytes": 700},
                        {"step": "k-NN accuracy on the codes", "peak_bytes": 1000}]}
    deltas = measure_notebook_memory.step_deltas(full, sample)
    loads_only = write_notebook(tmp_path / "a.ipynb", "data.load_mnist()")
    with_knn = write_notebook(tmp_path / "b.ipynb", "data.load_mnist()\nevaluation.knn_latent_accuracy(vae, *d)")
    record = {"peak_rss_bytes": 1000}
    estimate_a = measure_notebook_memory.notebook_estimate(
        record, deltas, measure_notebook_memory.steps_used(loads_only))
    estimate_b = measure_notebook_memory.notebook_estimate(
        record, deltas, measure_notebook_memory.steps_used(with_knn))
    assert estimate_a["bytes"] == 1200 and estimate_b["bytes"] == 3000


def test_over_limit_names_failures_and_estimates():
    report = {"notebooks": [{"notebook": "a.ipynb", "status": "ok", "peak_rss_bytes": 100},
                            {"notebook": "b.ipynb", "status": "error in cell 3: CellExecutionError",
                             "error": "ValueError: bad", "peak_rss_bytes": 100}],
              "full_mnist_estimate": {"notebooks": {
                  "a.ipynb": {"bytes": 500, "steps": ["k-NN accuracy on the codes"]}}}}
    problems = measure_notebook_memory.over_limit(report, limit_bytes=400)
    assert any(p.startswith("b.ipynb: error in cell 3") for p in problems)
    assert any("a.ipynb: full-MNIST estimate" in p and "k-NN" in p for p in problems)
    assert measure_notebook_memory.over_limit(report | {"full_mnist_estimate": {}}, limit_bytes=400) == [
        problems[0]]
