"""scripts/make_exercises.py turns complete notebooks into learner notebooks, and --check catches drift.

Everything runs on small synthetic notebooks in tmp_path; the real notebooks are never touched.
"""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tests.conftest import load_script

mx = load_script("make_exercises")

NAME = "03_demo.ipynb"


def convert(*cells):
    """The learner version of a notebook made of cells, without the note on top."""
    return mx.learner_version(new_notebook(cells=list(cells)), NAME).cells[1:]


def compiles(source):
    """Compile a code cell's source once IPython magics and shell lines are removed."""
    lines = [line for line in source.split("\n") if not line.lstrip().startswith(("%", "!"))]
    compile("\n".join(lines), "<cell>", "exec")


def test_block_in_function_and_method_keeps_indentation():
    source = (
        "import numpy as np\n"
        "\n"
        "def double(x):\n"
        "    \"\"\"Twice x.\"\"\"\n"
        "    # BEGIN SOLUTION\n"
        "    y = 2 * x\n"
        "    return y\n"
        "    # END SOLUTION\n"
        "\n"
        "class Layer:\n"
        "    def call(self, x):\n"
        "        # BEGIN SOLUTION\n"
        "        return x + 1\n"
        "        # END SOLUTION\n"
        "\n"
        "print(double(2))"
    )
    (cell,) = convert(new_code_cell(source))
    assert cell.source == (
        "import numpy as np\n"
        "\n"
        "def double(x):\n"
        "    \"\"\"Twice x.\"\"\"\n"
        "    # YOUR CODE HERE\n"
        "    ...\n"
        "\n"
        "class Layer:\n"
        "    def call(self, x):\n"
        "        # YOUR CODE HERE\n"
        "        ...\n"
        "\n"
        "print(double(2))"
    )
    namespace = {}
    exec(cell.source.replace("print(double(2))", ""), namespace)
    assert namespace["double"](2) is None  # an emptied body runs and returns None


def test_top_level_block():
    (cell,) = convert(new_code_cell("a = 1\n# BEGIN SOLUTION\nb = a + 1\n# END SOLUTION\nc = 3\n"))
    assert cell.source == "a = 1\n# YOUR CODE HERE\n...\nc = 3\n"


def test_single_line_solutions():
    source = (
        "latent_dim = 2  # SOLUTION\n"
        "def f(x):\n"
        "    scale = x.max()   # SOLUTION\n"
        "    self.w = make(shape=(2, 3))  # SOLUTION\n"
        "    a, b = divmod(x, 3)  # SOLUTION\n"
        "    print('spoiler')  # SOLUTION\n"
        "    return scale\n"
        "n = 'a # SOLUTION inside a string is no marker'"
    )
    (cell,) = convert(new_code_cell(source))
    assert cell.source == (
        "latent_dim = ...  # YOUR ANSWER HERE\n"
        "def f(x):\n"
        "    scale = ...  # YOUR ANSWER HERE\n"
        "    self.w = ...  # YOUR ANSWER HERE\n"
        "    a, b = ..., ...  # YOUR ANSWER HERE\n"
        "    return scale\n"
        "n = 'a # SOLUTION inside a string is no marker'"
    )
    compiles(cell.source)


def test_markdown_block_and_surrounding_text():
    source = "**Question.** Why?\n\n<!-- BEGIN SOLUTION -->\nBecause *KL*.\n\nReally.\n<!-- END SOLUTION -->\n\nNext."
    (cell,) = convert(new_markdown_cell(source))
    assert cell.source == "**Question.** Why?\n\n*Write your answer here.*\n\nNext."


def test_unmarked_cells_copied_verbatim_and_outputs_cleared():
    plain_md = new_markdown_cell("# Title\n\nText with `# SOLUTION` in prose.", metadata={"custom": 1})
    plain_code = new_code_cell("x = 1\nx", execution_count=7, metadata={"tags": ["NBVAL_IGNORE_OUTPUT"]},
                               outputs=[new_output("execute_result", {"text/plain": "1"}, execution_count=7)])
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook = new_notebook(cells=[plain_md, plain_code], metadata={"kernelspec": kernelspec, "widgets": {}})
    learner = mx.learner_version(notebook, NAME)
    md, code = learner.cells[1:]
    assert md == plain_md
    assert code.source == plain_code.source and code.metadata == plain_code.metadata and code.id == plain_code.id
    assert code.outputs == [] and code.execution_count is None
    assert learner.metadata == {"kernelspec": kernelspec}
    assert notebook.cells[1].outputs and "widgets" in notebook.metadata  # the input is left alone


def test_note_on_top_links_to_complete_version():
    note = mx.learner_version(new_notebook(cells=[new_markdown_cell("x")]), NAME).cells[0]
    assert note.cell_type == "markdown" and note.id == "learner-version"
    assert note.source.startswith("**Learner version.** The cells marked `# YOUR CODE HERE` are yours to fill in")
    assert note.source.endswith(f"The complete version is [../{NAME}](../{NAME}).")


def test_without_a_name_there_is_no_note():
    cells = [new_code_cell("x = 1  # SOLUTION")]
    assert [c.source for c in mx.learner_version(new_notebook(cells=cells)).cells] == ["x = ...  # YOUR ANSWER HERE"]
    with pytest.raises(mx.MarkerError, match=r"^notebook cell 0: "):
        mx.learner_version(new_notebook(cells=[new_code_cell("# END SOLUTION")]))


def test_tagged_solution_cells_are_replaced_and_keep_other_tags():
    code = new_code_cell("secret = 42\nprint(secret)", metadata={"tags": ["solution", "keep"]},
                         outputs=[new_output("stream", text="42\n")], execution_count=3)
    md = new_markdown_cell("The answer is 42.", metadata={"tags": ["solution"]})
    new_code, new_md = convert(code, md)
    assert new_code.source == "# YOUR CODE HERE\n..." and new_code.metadata == {"tags": ["keep"]}
    assert new_code.outputs == [] and new_code.execution_count is None
    assert new_md.source == "*Write your answer here.*" and "tags" not in new_md.metadata


@pytest.mark.parametrize("source, line, message", [
    ("x = 1\n# BEGIN SOLUTION\ny = 2", 2, "'# BEGIN SOLUTION' on line 2 has no matching '# END SOLUTION'"),
    ("x = 1\n# END SOLUTION", 2, "'# END SOLUTION' on line 2 has no matching '# BEGIN SOLUTION'"),
    ("# BEGIN SOLUTION\n  # BEGIN SOLUTION\n# END SOLUTION\n# END SOLUTION", 2,
     "'# BEGIN SOLUTION' on line 2 is nested in the block opened on line 1"),
])
def test_bad_code_markers_name_notebook_cell_and_line(source, line, message):
    cells = [new_markdown_cell("intro"), new_code_cell("ok = 1"), new_code_cell(source)]
    with pytest.raises(mx.MarkerError) as caught:
        mx.learner_version(new_notebook(cells=cells), NAME)
    assert str(caught.value) == f"{NAME} cell 2: {message}"


def test_bad_markdown_marker_raises():
    with pytest.raises(mx.MarkerError, match=r"03_demo.ipynb cell 0: '<!-- END SOLUTION -->' on line 1"):
        mx.learner_version(new_notebook(cells=[new_markdown_cell("<!-- END SOLUTION -->")]), NAME)


def complete_notebook(answer):
    """A small complete notebook with every kind of marker; answer varies its solution."""
    return new_notebook(cells=[
        new_markdown_cell("# Demo\n\n**Exercise.** Why?\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->"),
        new_code_cell("%matplotlib inline\n!echo hi\nimport math"),
        new_code_cell(f"def area(r):\n    # BEGIN SOLUTION\n    return math.pi * r ** {answer}\n    # END SOLUTION",
                      outputs=[new_output("stream", text="x\n")], execution_count=2),
        new_code_cell(f"k = {answer}  # SOLUTION\nassert area(1) is not None, 'Fill in area first'"),
        new_code_cell("print('all done')", metadata={"tags": ["solution"]}),
    ])


def write(path, notebook):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path, version=4)


@pytest.fixture
def folders(tmp_path):
    src, out = tmp_path / "notebooks", tmp_path / "notebooks" / "exercises"
    write(src / "01_one.ipynb", complete_notebook(2))
    write(src / "02_two.ipynb", complete_notebook(3))
    write(src / "README.ipynb", complete_notebook(4))  # not a numbered chapter: ignored
    return src, out


def test_generated_code_cells_compile(folders):
    src, out = folders
    mx.generate(src, out)
    learner = nbformat.read(out / "01_one.ipynb", as_version=4)
    nbformat.validate(learner)
    code = [cell.source for cell in learner.cells if cell.cell_type == "code"]
    assert code[1] == "def area(r):\n    # YOUR CODE HERE\n    ..."
    for source in code:
        compiles(source)
    text = (out / "01_one.ipynb").read_text(encoding="utf-8")
    assert "SOLUTION" not in text and "math.pi" not in text and "all done" not in text


def test_check_reports_missing_stale_orphan_then_passes(folders, capsys):
    src, out = folders
    assert sorted(mx.stale(src, out)) == [f"{out / '01_one.ipynb'}: missing", f"{out / '02_two.ipynb'}: missing"]
    assert mx.generate(src, out) == [out / "01_one.ipynb", out / "02_two.ipynb"]
    assert mx.stale(src, out) == [] and not (out / "README.ipynb").exists()
    assert mx.main(["--check", "--src", str(src), "--out", str(out)]) == 0

    write(src / "01_one.ipynb", complete_notebook(5))           # the complete notebook changed
    (out / "02_two.ipynb").unlink()                             # a learner file went missing
    write(out / "09_gone.ipynb", new_notebook())                # a learner file without a source
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert mx.main(["--check", "--src", str(src), "--out", str(out)]) == 1
    report = capsys.readouterr().out
    assert f"{out / '01_one.ipynb'}: stale" in report
    assert f"{out / '02_two.ipynb'}: missing" in report
    assert f"{out / '09_gone.ipynb'}: orphan" in report
    assert sorted(p.name for p in out.iterdir()) == before      # --check writes nothing

    assert mx.main(["--src", str(src), "--out", str(out)]) == 0
    (out / "09_gone.ipynb").unlink()
    assert mx.main(["--check", "--src", str(src), "--out", str(out)]) == 0


def test_regenerating_is_idempotent(folders):
    src, out = folders
    mx.generate(src, out)
    first = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert mx.generate(src, out) == []
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == first


def test_main_reports_marker_errors(tmp_path, capsys):
    write(tmp_path / "01_bad.ipynb", new_notebook(cells=[new_code_cell("# BEGIN SOLUTION\nx = 1")]))
    assert mx.main(["--src", str(tmp_path), "--out", str(tmp_path / "exercises")]) == 1
    assert "01_bad.ipynb cell 0: '# BEGIN SOLUTION' on line 1" in capsys.readouterr().err
