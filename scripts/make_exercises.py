"""Generate the learner notebooks in notebooks/exercises/ from the complete notebooks/NN_*.ipynb.

The learner versions are never edited by hand: mark solutions in the complete notebook with
otter-grader's conventions and rerun this script. Markers never reach the learner version.

Code cells
    ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` (whole lines, may be indented): the block becomes
    ``# YOUR CODE HERE`` and ``...`` at the BEGIN line's indentation. ``...`` is a bare Ellipsis, so
    an emptied function returns None and an unfilled cell runs; the check cell after it fails instead.
    ``name = value  # SOLUTION`` becomes ``name = ...  # YOUR ANSWER HERE`` (``a, b = ..., ...`` for a
    tuple target); any other line ending in ``# SOLUTION`` is removed.
Markdown cells
    ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` becomes ``*Write your answer here.*``.
Cells tagged ``solution`` (cell.metadata.tags)
    are replaced entirely (code: ``# YOUR CODE HERE`` + ``...``; markdown: ``*Write your answer here.*``)
    and keep their other tags.

Everything else is copied verbatim, except that code outputs and execution counts are cleared, the
notebook's live ``widgets`` metadata is dropped, and a note linking to the complete version is put on
top. Unbalanced or nested markers raise MarkerError naming the notebook, cell index (0-based) and line.

    python scripts/make_exercises.py           # regenerate notebooks/exercises/*.ipynb
    python scripts/make_exercises.py --check   # exit 1 listing missing, stale or orphan files; write nothing
"""

import argparse
import ast
import copy
import re
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "notebooks"
OUT = SRC / "exercises"
PATTERN = "[0-9][0-9]_*.ipynb"
CODE_BLANK = ["# YOUR CODE HERE", "..."]
ANSWER = "  # YOUR ANSWER HERE"
PROSE_BLANK = "*Write your answer here.*"
CODE_MARKERS = ("# BEGIN SOLUTION", "# END SOLUTION")
PROSE_MARKERS = ("<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->")
SOLUTION_LINE = re.compile(r"^(?P<code>.*?)\s*# SOLUTION\s*$")
NOTE = ("**Learner version.** The cells marked `# YOUR CODE HERE` are yours to fill in; the check cell after "
        "each tells you whether your code is right, and names the mistake if it is not. `*Write your answer here.*` "
        "marks a question to answer in words. The complete version is [../{name}](../{name}).")


class MarkerError(ValueError):
    """A solution marker without its partner, or nested inside another block."""


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


def strip_solutions(source, markers, blank, where, single_lines=False):
    """Replace each BEGIN/END block in source by the blank lines (and, if asked, ``# SOLUTION`` lines)."""
    begin, end = markers
    out, start = [], None
    for number, line in enumerate(source.split("\n"), 1):
        mark = line.strip()
        if mark == begin:
            if start is not None:
                raise MarkerError(f"{where}: '{begin}' on line {number} is nested in the block "
                                  f"opened on line {start}")
            start, indent = number, line[: len(line) - len(line.lstrip())]
        elif mark == end:
            if start is None:
                raise MarkerError(f"{where}: '{end}' on line {number} has no matching '{begin}'")
            out += [indent + text for text in blank]
            start = None
        elif start is None:
            match = SOLUTION_LINE.match(line) if single_lines else None
            if match is None:
                out.append(line)
            elif (answer := blank_assignment(match["code"])) is not None:
                out.append(answer)
    if start is not None:
        raise MarkerError(f"{where}: '{begin}' on line {start} has no matching '{end}'")
    return "\n".join(out)


def learner_version(notebook, name=None):
    """Return the learner copy of a complete notebook (the input is not modified).

    ``name`` is the complete notebook's file name: it is used in errors and in the linking note put on
    top, which is left out when no name is given.
    """
    learner = copy.deepcopy(notebook)
    learner.metadata.pop("widgets", None)
    for index, cell in enumerate(learner.cells):
        where = f"{name or 'notebook'} cell {index}"
        tags = cell.metadata.get("tags", [])
        if "solution" in tags:
            cell.source = "\n".join(CODE_BLANK) if cell.cell_type == "code" else PROSE_BLANK
            cell.metadata.tags = [tag for tag in tags if tag != "solution"]
            if not cell.metadata.tags:
                del cell.metadata["tags"]
        elif cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, CODE_MARKERS, CODE_BLANK, where, single_lines=True)
        elif cell.cell_type == "markdown":
            cell.source = strip_solutions(cell.source, PROSE_MARKERS, [PROSE_BLANK], where)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if name is not None:
        note = nbformat.v4.new_markdown_cell(NOTE.format(name=name), id="learner-version")
        if learner.nbformat_minor < 5:  # cell ids arrived in nbformat 4.5
            del note["id"]
        learner.cells.insert(0, note)
    return learner


def render(path):
    """The learner file's exact text for the complete notebook at path."""
    notebook = nbformat.read(path, as_version=4)
    text = nbformat.writes(learner_version(notebook, path.name), version=4)
    return text if text.endswith("\n") else text + "\n"  # as nbformat.write leaves it


def stale(src_dir=SRC, out_dir=OUT):
    """List (as messages) each learner notebook that is missing, out of date, or has no complete counterpart."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    sources = sorted(src_dir.glob(PATTERN))
    problems = []
    for source in sources:
        target = out_dir / source.name
        if not target.is_file():
            problems.append(f"{target}: missing")
        elif target.read_text(encoding="utf-8") != render(source):
            problems.append(f"{target}: stale, differs from what {source.name} generates")
    names = {source.name for source in sources}
    for target in sorted(out_dir.glob("*.ipynb")):
        if target.name not in names:
            problems.append(f"{target}: orphan, no complete notebook {src_dir / target.name}")
    return problems


def generate(src_dir=SRC, out_dir=OUT):
    """Write the learner version of every complete notebook whose file content changed; return those paths."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(src_dir.glob(PATTERN)):
        target, text = out_dir / source.name, render(source)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date learner notebooks")
    parser.add_argument("--src", type=Path, default=SRC, help="folder of the complete notebooks")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the learner notebooks")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale(args.src, args.out)
            for problem in problems:
                print(problem)
            if problems:
                print("run: python scripts/make_exercises.py")
            return 1 if problems else 0
        for path in generate(args.src, args.out):
            print(f"wrote {path}")
    except MarkerError as err:
        print(f"make_exercises: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
