"""scripts/make_exercises.py turns complete notebooks into learner notebooks, and --check catches drift.

Everything runs on small synthetic notebooks in tmp_path; the real notebooks are never touched.
"""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

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
    assert cell.source == "a = 1\n# YOUR CODE HERE\nc = 3\n"  # no statement needed at the top level


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


def test_markdown_block_becomes_an_answer_cell_of_its_own():
    source = ("**Question.** Why?\n\n<!-- BEGIN SOLUTION -->\nBecause *KL*.\n\nReally.\n<!-- END SOLUTION -->\n\n"
              "### Exercise 2\n\nHow?\n<!-- BEGIN SOLUTION -->\nLike so.\n<!-- END SOLUTION -->")
    notebook = new_notebook(cells=[new_markdown_cell(source, metadata={"custom": 1}), new_code_cell("x = 1")])
    learner = mx.learner_version(notebook, NAME)
    nbformat.validate(learner)  # the new cells have valid, unique ids
    assert [cell.source for cell in learner.cells[1:]] == [
        "**Question.** Why?", "*Write your answer here.*", "### Exercise 2\n\nHow?", "*Write your answer here.*", "x = 1"]
    ids = [cell.id for cell in learner.cells]
    assert len(set(ids)) == len(ids) and learner.cells[1].id == notebook.cells[0].id
    assert learner.cells[1].metadata == {"custom": 1}
    assert {cell.cell_type for cell in learner.cells[1:5]} == {"markdown"}


def test_markdown_block_alone_stays_one_cell_and_old_notebooks_get_no_ids():
    (cell,) = convert(new_markdown_cell("<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->"))
    assert cell.source == "*Write your answer here.*"
    old = new_notebook(cells=[new_markdown_cell("Why?\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->\nNext")])
    old.nbformat_minor = 4
    del old.cells[0]["id"]
    learner = mx.learner_version(old, NAME)
    nbformat.validate(learner)
    assert [cell.source for cell in learner.cells] == [learner.cells[0].source, "Why?", "*Write your answer here.*", "Next"]
    assert not any("id" in cell for cell in learner.cells)


def test_stored_numbers_marker_becomes_a_note_in_the_learner_version_only():
    source = "The mean is 0.07 and 76% fall inside. <!-- STORED NUMBERS -->\n\nNo numbers here."
    (cell,) = convert(new_markdown_cell(source))
    assert cell.source == ("The mean is 0.07 and 76% fall inside. *(These numbers come from the stored full-MNIST run; "
                           "yours will differ on other data or in quick mode.)*\n\nNo numbers here.")


def run_in_ipython(source):
    """Run source as one notebook cell in a fresh IPython shell; return what the cell displays as its result."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell()
    try:
        outcome = shell.run_cell(source, store_history=True)
        outcome.raise_error()
        return outcome.result
    finally:
        shell.cleanup()
        InteractiveShell.clear_instance()


def test_emptied_cells_run_and_display_no_ellipsis():
    assert run_in_ipython("x = 1\n# YOUR CODE HERE\n...") is Ellipsis  # what the old blank showed as "Ellipsis"
    cells = convert(
        new_code_cell("def f(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION\n\n\n"
                      "# BEGIN SOLUTION\ny = f(3)\nprint(y)\n# END SOLUTION"),
        new_code_cell("for i in range(2):\n    # BEGIN SOLUTION\n    print(i)\n    # END SOLUTION"),
        new_code_cell("print('spoiler')", metadata={"tags": ["solution"]}),
        new_code_cell("answer = 42  # SOLUTION"),
    )
    for cell in cells:
        assert run_in_ipython(cell.source) is None, cell.source
    namespace = {}
    exec(cells[0].source, namespace)
    assert namespace["f"](3) is None  # an emptied function returns None: check_number reports "no answer yet"


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
    assert new_code.source == "# YOUR CODE HERE" and new_code.metadata == {"tags": ["keep"]}
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


NEAR_MISSES = [  # (cell type, source, line of the near miss): each would have copied a solution verbatim
    ("code", "#BEGIN SOLUTION\nsecret = 42\n#END SOLUTION", 1),
    ("code", "x = 1\n# Begin Solution\nsecret = 42\n# End Solution", 2),
    ("code", "# begin solution\nsecret = 42\n# end solution", 1),
    ("code", "#  BEGIN  SOLUTION\nsecret = 42\n#  END  SOLUTION", 1),
    ("code", "def f():\n    #BEGIN SOLUTION\n    return 42\n    #END SOLUTION", 2),
    ("code", "# BEGIN SOLUTION NO PROMPT\nsecret = 42\n# END SOLUTION", 1),
    ("code", "# BEGIN SOLUTION  # the answer\nsecret = 42\n# END SOLUTION", 1),
    ("code", "# BEGIN_SOLUTION\nsecret = 42\n# END_SOLUTION", 1),
    ("code", "<!-- BEGIN SOLUTION -->\nsecret = 42\n<!-- END SOLUTION -->", 1),
    ("code", "# BEGIN SOLUTION\nsecret = 42\n#END SOLUTION\n# END SOLUTION", 3),
    ("code", "x = 42 #SOLUTION", 1),
    ("code", "ok = 1\nx = 42  # solution", 2),
    ("code", "x = 42  #  SOLUTION", 1),
    ("code", "x = 42  # SOLUTION.", 1),
    ("code", "x = 42  # Solution", 1),
    ("code", "print(42)  <!-- SOLUTION -->", 1),
    ("markdown", "Why?\n<!--BEGIN SOLUTION-->\nBecause 42.\n<!--END SOLUTION-->", 2),
    ("markdown", "<!-- begin solution -->\nBecause 42.\n<!-- end solution -->", 1),
    ("markdown", "<!-- Begin Solution -->\nBecause 42.\n<!-- End Solution -->", 1),
    ("markdown", "# BEGIN SOLUTION\nBecause 42.\n# END SOLUTION", 1),
    ("markdown", "Why? <!-- BEGIN SOLUTION --> Because 42. <!-- END SOLUTION -->", 1),
    ("markdown", "**BEGIN SOLUTION**\nBecause 42.\n**END SOLUTION**", 1),
    ("markdown", "The answer is 42. # SOLUTION", 1),
    ("markdown", "The answer is 42. <!-- SOLUTION -->", 1),
    ("markdown", "Mean 0.07.\n<!--STORED NUMBERS-->", 2),
    ("markdown", "Mean 0.07. <!-- stored numbers -->", 1),
    ("code", "x = 1  # <!-- STORED NUMBERS -->", 1),
    ("raw", "# BEGIN SOLUTION\nsecret = 42\n# END SOLUTION", 1),
]


def make_cell(cell_type, source):
    return {"code": new_code_cell, "markdown": new_markdown_cell, "raw": new_raw_cell}[cell_type](source)


@pytest.mark.parametrize("cell_type, source, line", NEAR_MISSES, ids=lambda value: repr(value)[:40])
def test_near_miss_markers_are_errors_naming_notebook_cell_and_line(cell_type, source, line):
    cells = [new_markdown_cell("intro"), new_code_cell("ok = 1"), make_cell(cell_type, source)]
    with pytest.raises(mx.MarkerError) as caught:
        mx.learner_version(new_notebook(cells=cells), NAME)
    message = str(caught.value)
    assert message.startswith(f"{NAME} cell 2: line {line} ") and "looks like a marker but is not one" in message


@pytest.mark.parametrize("cell_type, source, line", NEAR_MISSES[:2] + NEAR_MISSES[16:17], ids=["code", "code2", "md"])
def test_main_exits_non_zero_on_a_near_miss_and_writes_nothing(tmp_path, capsys, cell_type, source, line):
    src, out = tmp_path / "notebooks", tmp_path / "notebooks" / "exercises"
    write(src / "01_good.ipynb", complete_notebook(2))
    write(src / "02_bad.ipynb", new_notebook(cells=[new_markdown_cell("intro"), make_cell(cell_type, source)]))
    assert mx.main(["--src", str(src), "--out", str(out)]) == 1
    assert f"02_bad.ipynb cell 1: line {line} " in capsys.readouterr().err
    assert not out.exists()  # not even the good notebook's learner version: nothing is written


def test_lines_that_only_mention_solutions_are_copied_verbatim():
    code = ("solution = solve()  # the solution of the system\n"
            "begin_solution, end_solution = 0, 1\n"
            "n = 'a # SOLUTION inside a string is no marker'\n"
            "# Compare the solutions\nprint(solution)")
    prose = ("## Solution\n\n**Solution.** Because the end, solutions aside.\n\n"
             "Text with `# SOLUTION` in prose, and <!-- a comment --> and <!-- STORED NUMBERS -->")
    learner_code, learner_prose = convert(new_code_cell(code), new_markdown_cell(prose))
    assert learner_code.source == code
    assert learner_prose.source == prose.replace(mx.STORED_NUMBERS, mx.STORED_NOTE)


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


@pytest.mark.parametrize("content", ["just some text\n", '{"cells": []}', "[1, 2]", b"\xff\xfe\x00"], ids=["text", "json", "list", "binary"])
def test_a_file_that_is_not_a_notebook_is_a_named_error(tmp_path, capsys, content):
    src, out = tmp_path / "notebooks", tmp_path / "exercises"
    src.mkdir()
    bad = src / "01_bad.ipynb"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    for argv in (["--src", str(src), "--out", str(out)], ["--check", "--src", str(src), "--out", str(out)],
                 [str(bad), "--out", str(out)]):
        assert mx.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"make_exercises: {bad}: not a Jupyter notebook") and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("check", [True, False], ids=["check", "generate"])
def test_missing_or_empty_source_folder_fails(tmp_path, capsys, check):
    flag = ["--check"] if check else []
    assert mx.main(flag + ["--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 1
    assert "nowhere: no such folder of complete notebooks (--src)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert mx.main(flag + ["--src", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert "holds no complete notebooks named" in capsys.readouterr().err
    assert mx.main(flag + [str(tmp_path / "02_gone.ipynb")]) == 1
    assert f"no such notebook: {tmp_path / '02_gone.ipynb'}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_check_with_a_missing_output_folder_reports_every_notebook_missing(folders, capsys):
    src, out = folders
    assert mx.main(["--check", "--src", str(src), "--out", str(out / "nowhere")]) == 1
    report = capsys.readouterr().out
    assert f"{out / 'nowhere' / '01_one.ipynb'}: missing" in report and f"{out / 'nowhere' / '02_two.ipynb'}: missing" in report


def test_named_notebooks_only_are_generated_and_checked(folders, capsys):
    src, out = folders
    assert mx.main([str(src / "02_two.ipynb"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["02_two.ipynb"]
    assert mx.main(["--check", str(src / "02_two.ipynb"), "--out", str(out)]) == 0  # 01 is not asked about
    assert mx.main(["--check", "--src", str(src), "--out", str(out)]) == 1           # but a full check sees it
    assert f"{out / '01_one.ipynb'}: missing" in capsys.readouterr().out
