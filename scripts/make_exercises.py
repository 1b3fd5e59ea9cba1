"""Generate the learner notebooks in notebooks/exercises/ from the complete notebooks/NN_*.ipynb.

The learner versions are never edited by hand: mark solutions in the complete notebook with
otter-grader's conventions and rerun this script. Markers never reach the learner version.

Code cells
    ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` (whole lines, may be indented): the block becomes
    ``# YOUR CODE HERE``, followed, inside an indented body, by ``...`` at the BEGIN line's
    indentation. ``...`` is a bare Ellipsis, so an emptied function returns None and the check cell
    after it fails with "no answer yet"; at the top level of a cell the comment alone stands in, so
    an unfilled cell runs and shows nothing (a last ``...`` would display ``Ellipsis``).
    ``name = value  # SOLUTION`` becomes ``name = ...  # YOUR ANSWER HERE`` (``a, b = ..., ...`` for a
    tuple target); any other line ending in ``# SOLUTION`` is removed.
Markdown cells
    ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` becomes a cell of its own holding
    ``*Write your answer here.*``; the text before and after the block stays in cells of its own, so a
    learner can write the answer without editing the next heading.
    ``<!-- STORED NUMBERS -->`` (invisible in the complete notebook) becomes a short note saying that
    the numbers quoted there come from the stored full-MNIST run and that the learner's will differ.
Cells tagged ``solution`` (cell.metadata.tags)
    are replaced entirely (code: ``# YOUR CODE HERE``; markdown: ``*Write your answer here.*``) and
    keep their other tags.

The grammar is exact: a line that looks like a marker but is not one (another case, spacing or
comment style, such as ``#BEGIN SOLUTION``, ``# Begin Solution``, ``<!--BEGIN SOLUTION-->``, a code
marker in markdown, ``x = 42 #SOLUTION``) is an error, since it would copy a solution verbatim.
Everything else is copied verbatim, except that code outputs and execution counts are cleared, the
notebook's live ``widgets`` metadata is dropped, and a note linking to the complete version is put on
top. Near-miss, unbalanced or nested markers raise MarkerError naming the notebook, cell index
(0-based) and line; a file that is not a notebook raises NotebookError. Nothing is written unless
every notebook converts.

    python scripts/make_exercises.py                    # regenerate notebooks/exercises/*.ipynb
    python scripts/make_exercises.py notebooks/04_*.ipynb   # only these
    python scripts/make_exercises.py --check            # exit 1 listing missing, stale or orphan files; write nothing
"""

import argparse
import ast
import copy
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "notebooks"
OUT = SRC / "exercises"
PATTERN = "[0-9][0-9]_*.ipynb"
YOUR_CODE = "# YOUR CODE HERE"
ANSWER = "  # YOUR ANSWER HERE"
PROSE_BLANK = "*Write your answer here.*"
CODE_MARKERS = ("# BEGIN SOLUTION", "# END SOLUTION")
PROSE_MARKERS = ("<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->")
SOLUTION_LINE = re.compile(r"^(?P<code>.*?)\s*# SOLUTION\s*$")
STORED_NUMBERS = "<!-- STORED NUMBERS -->"
STORED_NOTE = "*(These numbers come from the stored full-MNIST run; yours will differ on other data or in quick mode.)*"
NOTE = ("**Learner version.** The cells marked `# YOUR CODE HERE` are yours to fill in; the check cell after "
        "each tells you whether your code is right, and names the mistake if it is not. `*Write your answer here.*` "
        "marks a question to answer in words. The complete version is [../{name}](../{name}).")

# Near misses, matched on lines that are not exact markers: "begin"/"end" and "solution" together, in any
# case, spacing, comment style or place in the line ("#BEGIN SOLUTION", "<!--end solution-->", "BEGIN_SOLUTION"),
NEAR_BLOCK = re.compile(r"(?<![A-Za-z0-9])((?i:begin|end)[\s-]*(?i:solution)|(?:BEGIN|END)_SOLUTION)(?![A-Za-z0-9])")
# a trailing single-line marker in code ("x = 42 #SOLUTION", "# solution."),
NEAR_LINE_CODE = re.compile(r"(#|<!--)\s*solution[\s.:;,!*>-]*$", re.IGNORECASE)
# in prose, where "## Solution" is a heading: a marker after text, or any HTML comment naming a solution,
NEAR_LINE_PROSE = re.compile(r"(\S\s+#\s*solution[\s.:;,!*]*$)|(<!--\s*solution\b)", re.IGNORECASE)
# and the stored-numbers marker in another spelling or cell type.
NEAR_STORED = re.compile(r"<!--\s*stored[\s_-]*numbers?\b", re.IGNORECASE)


class MarkerError(ValueError):
    """A solution marker without its partner, nested inside another block, or almost but not quite a marker."""


class NotebookError(ValueError):
    """An input that is not a readable Jupyter notebook, or a folder or file that does not exist."""


def check_markers(source, cell_type, where):
    """Raise MarkerError for the first line of a cell that looks like a marker but is not an exact one."""
    exact = {"code": CODE_MARKERS, "markdown": PROSE_MARKERS}.get(cell_type, ())
    for number, line in enumerate(source.split("\n"), 1):
        stripped = line.strip()
        if stripped in exact:
            continue
        problem = None
        if (block := NEAR_BLOCK.search(line)) is not None:
            marker = "BEGIN" if block[0][0] in "bB" else "END"
            problem = {"code": f"write exactly '# {marker} SOLUTION' on a line of its own",
                       "markdown": f"write exactly '<!-- {marker} SOLUTION -->' on a line of its own"}.get(
                cell_type, "solution markers work only in code and markdown cells")
        elif cell_type == "code" and SOLUTION_LINE.match(line) is None and NEAR_LINE_CODE.search(line):
            problem = "end a solution line exactly with '  # SOLUTION' (upper case, one space after '#')"
        elif cell_type != "code" and NEAR_LINE_PROSE.search(line):
            problem = ("'# SOLUTION' lines work only in code cells; in markdown wrap the answer in "
                       f"'{PROSE_MARKERS[0]}' ... '{PROSE_MARKERS[1]}'")
        elif NEAR_STORED.search(line.replace(STORED_NUMBERS, "") if cell_type == "markdown" else line):
            problem = f"write exactly '{STORED_NUMBERS}', in a markdown cell"
        if problem is not None:
            raise MarkerError(f"{where}: line {number} {stripped!r} looks like a marker but is not one: {problem}")


def blank_assignment(code):
    """``x = 1`` -> ``x = ...  # YOUR ANSWER HERE`` (same indentation); None if code is no plain assignment."""
    stripped = code.strip()
    try:
        body = ast.parse(stripped).body
    except SyntaxError:
        return None
    if len(body) != 1 or not isinstance(body[0], ast.Assign):
        return None
    targets = body[0].targets
    last = targets[-1]
    count = len(last.elts) if isinstance(last, (ast.Tuple, ast.List)) and len(last.elts) > 1 else 1
    names = " = ".join(ast.get_source_segment(stripped, target) for target in targets)
    indent = code[: len(code) - len(code.lstrip())]
    return f"{indent}{names} = {', '.join(['...'] * count)}{ANSWER}"


def code_blank(indent):
    """The lines that replace a code solution block: ``...`` only where a body needs a statement."""
    return [indent + YOUR_CODE, indent + "..."] if indent else [YOUR_CODE]


def split_blocks(source, markers, where):
    """Split source into [(is_solution, lines)] runs at BEGIN/END markers, which are dropped."""
    begin, end = markers
    runs, current, start = [], [], None
    for number, line in enumerate(source.split("\n"), 1):
        mark = line.strip()
        if mark == begin:
            if start is not None:
                raise MarkerError(f"{where}: '{begin}' on line {number} is nested in the block "
                                  f"opened on line {start}")
            runs.append((False, current))
            current, start = [line], number
        elif mark == end:
            if start is None:
                raise MarkerError(f"{where}: '{end}' on line {number} has no matching '{begin}'")
            runs.append((True, current))
            current, start = [], None
        else:
            current.append(line)
    if start is not None:
        raise MarkerError(f"{where}: '{begin}' on line {start} has no matching '{end}'")
    runs.append((False, current))
    return runs


def strip_code(source, where):
    """A code cell's source with each solution block and ``# SOLUTION`` line blanked."""
    out = []
    for solution, lines in split_blocks(source, CODE_MARKERS, where):
        if solution:
            begin = lines[0]
            out += code_blank(begin[: len(begin) - len(begin.lstrip())])
            continue
        for line in lines:
            match = SOLUTION_LINE.match(line)
            if match is None:
                out.append(line)
            elif (answer := blank_assignment(match["code"])) is not None:
                out.append(answer)
    return "\n".join(out)


def strip_prose(source, where):
    """A markdown cell's source as a list of cell sources: text runs, and one answer cell per solution block."""
    parts = []
    for solution, lines in split_blocks(source, PROSE_MARKERS, where):
        text = PROSE_BLANK if solution else "\n".join(lines).strip("\n")
        if text.strip():
            parts.append(text.replace(STORED_NUMBERS, STORED_NOTE))
    return parts or [""]


def new_id(base, taken):
    """A cell id derived from base that is not in taken (and is added to it)."""
    for k in range(1, len(taken) + 2):
        candidate = f"{base[:56]}-{k}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate
    raise AssertionError("unreachable: more candidates than taken ids")


def learner_cells(cell, where, taken):
    """The learner cells for one complete cell (a markdown cell may become several)."""
    tags = cell.metadata.get("tags", [])
    if "solution" in tags:  # replaced whole: nothing of it can leak
        cell.source = YOUR_CODE if cell.cell_type == "code" else PROSE_BLANK
        cell.metadata.tags = [tag for tag in tags if tag != "solution"]
        if not cell.metadata.tags:
            del cell.metadata["tags"]
    elif cell.cell_type == "code":
        check_markers(cell.source, "code", where)
        cell.source = strip_code(cell.source, where)
    elif cell.cell_type == "markdown":
        check_markers(cell.source, "markdown", where)
        first, *rest = strip_prose(cell.source, where)
        cell.source = first
        extra = [nbformat.v4.new_markdown_cell(text) for text in rest]
        for part in extra:
            if "id" in cell:
                part.id = new_id(cell.id, taken)
            else:
                del part["id"]
        return [cell, *extra]
    else:
        check_markers(cell.source, cell.cell_type, where)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return [cell]


def learner_version(notebook, name=None):
    """Return the learner copy of a complete notebook (the input is not modified).

    ``name`` is the complete notebook's file name: it is used in errors and in the linking note put on
    top, which is left out when no name is given.
    """
    learner = copy.deepcopy(notebook)
    learner.metadata.pop("widgets", None)
    taken = {cell.get("id") for cell in learner.cells} | {"learner-version"}
    cells = []
    for index, cell in enumerate(learner.cells):
        cells += learner_cells(cell, f"{name or 'notebook'} cell {index}", taken)
    learner.cells = cells
    if name is not None:
        note = nbformat.v4.new_markdown_cell(NOTE.format(name=name), id="learner-version")
        if learner.nbformat_minor < 5:  # cell ids arrived in nbformat 4.5
            del note["id"]
        learner.cells.insert(0, note)
    return learner


def read_notebook(path):
    """Read and validate a complete notebook; NotebookError (naming the file) if it is not one."""
    try:
        notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if notebook.get("nbformat") != 4:
            raise ValueError(f"nbformat version {notebook.get('nbformat')}, not 4")
        nbformat.validate(notebook)
    except OSError as err:
        raise NotebookError(f"{path}: cannot be read ({err.strerror or err})") from err
    except (ValueError, nbformat.ValidationError, AttributeError, KeyError, TypeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NotebookError(f"{path}: not a Jupyter notebook ({reason[:200]}); pass a complete "
                            f"notebook such as notebooks/01_*.ipynb") from err
    return notebook


def render(path):
    """The learner file's exact text for the complete notebook at path."""
    path = Path(path)
    text = nbformat.writes(learner_version(read_notebook(path), path.name), version=4)
    return text if text.endswith("\n") else text + "\n"  # as nbformat.write leaves it


def sources(src_dir=SRC, paths=None):
    """The complete notebooks to convert: the given paths, or every NN_*.ipynb in src_dir."""
    if paths:
        missing = [str(path) for path in paths if not Path(path).is_file()]
        if missing:
            raise NotebookError(f"no such notebook: {', '.join(missing)}")
        return [Path(path) for path in paths]
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise NotebookError(f"{src_dir}: no such folder of complete notebooks (--src)")
    found = sorted(src_dir.glob(PATTERN))
    if not found:
        raise NotebookError(f"{src_dir}: holds no complete notebooks named {PATTERN} (--src)")
    return found


def stale(src_dir=SRC, out_dir=OUT, paths=None):
    """List (as messages) each learner notebook that is missing, out of date, or has no complete counterpart.

    With paths, only those complete notebooks are compared and orphans are not looked for.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotebookError(f"{out_dir}: is not a folder (--out)")
    chosen = sources(src_dir, paths)
    problems = []
    for source in chosen:
        target, text = out_dir / source.name, render(source)  # a bad complete notebook is an error even here
        if not target.is_file():
            problems.append(f"{target}: missing")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"{target}: stale, differs from what {source.name} generates")
    if not paths and out_dir.is_dir():
        names = {source.name for source in chosen}
        for target in sorted(out_dir.glob("*.ipynb")):
            if target.name not in names:
                problems.append(f"{target}: orphan, no complete notebook {Path(src_dir) / target.name}")
    return problems


def write_atomically(path, text):
    """Write text to path through a temporary file in the same folder, so a failure leaves path as it was."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def generate(src_dir=SRC, out_dir=OUT, paths=None):
    """Write the learner version of each complete notebook whose file content changed; return those paths.

    Every notebook is converted before anything is written, so a bad marker anywhere writes nothing.
    """
    out_dir = Path(out_dir)
    rendered = [(out_dir / source.name, render(source)) for source in sources(src_dir, paths)]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for target, text in rendered:
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            write_atomically(target, text)
            written.append(target)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="complete notebooks to convert (default: every NN_*.ipynb in --src)")
    parser.add_argument("--check", action="store_true", help="only report out-of-date learner notebooks")
    parser.add_argument("--src", type=Path, default=SRC, help="folder of the complete notebooks")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the learner notebooks")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale(args.src, args.out, args.notebooks)
            for problem in problems:
                print(problem)
            if problems:
                print("run: python scripts/make_exercises.py")
            return 1 if problems else 0
        for path in generate(args.src, args.out, args.notebooks):
            print(f"wrote {path}")
    except (MarkerError, NotebookError) as err:
        print(f"make_exercises: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
