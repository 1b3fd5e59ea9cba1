"""The learner versions of the notebooks: generated from the complete ones, current, and failing only where they should.

Run unfilled, a learner notebook must stop in its check cells (``checks.check_...``) with the check's
hint, a CheckFailed, and nowhere else: an emptied cell must never crash a later cell.
"""

import nbformat
import pytest

from tests.conftest import load_script

make_exercises = load_script("make_exercises")
run_notebooks = load_script("run_notebooks")
LEARNER_NOTEBOOKS = sorted(make_exercises.OUT.glob("[0-9][0-9]_*.ipynb"))


def test_learner_versions_are_generated_from_the_complete_notebooks():
    assert make_exercises.stale() == [], "run: python scripts/make_exercises.py"
    assert [path.name for path in LEARNER_NOTEBOOKS] == [path.name for path in run_notebooks.chapter_notebooks()]


@pytest.mark.parametrize("path", LEARNER_NOTEBOOKS, ids=lambda path: path.name[:2])
def test_answer_placeholders_are_cells_of_their_own(path):
    notebook = nbformat.read(path, as_version=4)
    fused = [index for index, cell in enumerate(notebook.cells)
             if make_exercises.PROSE_BLANK in cell.source.split("\n") and cell.source.strip() != make_exercises.PROSE_BLANK]
    assert not fused, f"cells where the answer placeholder shares a cell with other text: {fused}"


@pytest.mark.parametrize("path", LEARNER_NOTEBOOKS, ids=lambda path: path.name[:2])
def test_unfilled_learner_notebook_fails_only_in_its_check_cells(path):
    notebook, _ = run_notebooks.execute(path, timeout=600, allow_errors=True)
    errors = {index: output for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"}
    check_cells = {index for index, cell in enumerate(notebook.cells)
                   if cell.cell_type == "code" and "checks.check_" in cell.source}
    crashes = {index: f"{out.ename}: {out.evalue[:200]}" for index, out in errors.items()
               if index not in check_cells or out.ename != "CheckFailed"}
    assert not crashes, f"cells that fail other than with a check's hint: {crashes}"
    assert set(errors) == check_cells, f"check cells that passed unfilled: {sorted(check_cells - set(errors))}"
    ellipsis = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
                for output in cell.outputs if output.get("data", {}).get("text/plain") == "Ellipsis"]
    assert not ellipsis, f"emptied cells that display 'Ellipsis': {ellipsis}"
