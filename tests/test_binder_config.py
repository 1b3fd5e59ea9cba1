"""Binder's configuration stays the project's one pinned environment.

These checks read files only (no network, no build): binder/requirements.txt must bring in the
top-level requirements.txt rather than repeat its pins, anything Binder-only must be pinned too, and
binder/runtime.txt must name a Python that pyproject.toml accepts. The proof that the environment
builds and imports is in .ci/run (a fresh virtual environment from binder/ alone, pip check, imports).
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
# Files that switch repo2docker to another build pack, which would ignore binder/requirements.txt.
OTHER_BUILD_PACKS = ("environment.yml", "Pipfile", "Pipfile.lock", "Dockerfile", "Project.toml",
                     "install.R", "DESCRIPTION", "setup.py", "pyproject.toml")


def runtime_version(binder_dir):
    """(major, minor) from binder/runtime.txt, e.g. (3, 11) for ``python-3.11``; ValueError for what repo2docker would misread."""
    text = (Path(binder_dir) / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"runtime.txt says {text!r}; expected 'python-MAJOR.MINOR', e.g. python-3.11")
    return int(match.group(1)), int(match.group(2))


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


def test_runtime_is_a_python_the_project_supports():
    major, minor = runtime_version(BINDER)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(f"{major}.{minor}"), (
        f"binder/runtime.txt gives Python {major}.{minor}, outside requires-python {requires!r}")


@pytest.mark.parametrize("text", ["python-3", "3.11", "python-3.11.7", "r-4.3-2024-01-01", ""])
def test_runtime_version_rejects_what_binder_would_misread(tmp_path, text):
    (tmp_path / "runtime.txt").write_text(text + "\n")
    with pytest.raises(ValueError, match="runtime.txt"):
        runtime_version(tmp_path)


def test_runtime_version_reads_major_and_minor(tmp_path):
    (tmp_path / "runtime.txt").write_text("python-3.12\n")
    assert runtime_version(tmp_path) == (3, 12)


def test_requirement_lines_follow_nested_files_like_pip(tmp_path):
    (tmp_path / "binder").mkdir()
    (tmp_path / "requirements.txt").write_text("# pins\nnumpy==2.0.0  # inline comment\n-e .\n")
    (tmp_path / "binder" / "requirements.txt").write_text("-r ../requirements.txt\nnotebook==7.1.0\n")
    lines = requirement_lines(tmp_path / "binder" / "requirements.txt")
    assert [line for _, line in lines] == ["numpy==2.0.0", "-e .", "notebook==7.1.0"]
    assert local_paths(lines) == ["."]
