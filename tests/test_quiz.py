"""The end-of-notebook quizzes: the question file, the grader, the widget and its static fallbacks."""

import copy
import html
import json
import subprocess
import sys

import pytest

from vae_helpers import quiz

ALL_QUESTIONS = [q for key in quiz.NOTEBOOKS for q in quiz.load_quiz(key)]


def ids(questions):
    return [q["id"] for q in questions]


def wrong_response(question):
    """A response that must be graded wrong: another option, or a number just outside the tolerance."""
    if question["kind"] == "choice":
        return (question["answer"] + 1) % len(question["options"])
    return question["answer"] + 1.5 * question["tolerance"]


# --- The question file -----------------------------------------------------------------------------


def test_quiz_file_validates_with_four_questions_per_notebook():
    quizzes = quiz.load_quizzes()
    assert sorted(quizzes) == list(quiz.NOTEBOOKS)
    for key, entry in quizzes.items():
        assert entry["title"].strip()
        assert len(entry["questions"]) == 4
        assert any(q["kind"] == "number" for q in entry["questions"]), key
    assert len(set(ids(ALL_QUESTIONS))) == len(ALL_QUESTIONS)


def test_texts_are_plain_unicode_without_markdown_or_latex():
    for q in ALL_QUESTIONS:
        for text in [q["question"], q["explanation"], *q.get("options", [])]:
            assert not any(mark in text for mark in ("$", "\\", "`", "**", "<")), (q["id"], text)


@pytest.mark.parametrize("break_it, message", [
    (lambda d: d["01"]["questions"][1].update(id="01-1"), "duplicate id"),
    (lambda d: d["02"]["questions"][0].update(answer=7), "not an index"),
    (lambda d: d["02"]["questions"][0].update(options=["only one"]), "at least 2 options"),
    (lambda d: d["01"]["questions"][0].update(answer=float("nan")), "finite"),
    (lambda d: d["01"]["questions"][0].update(tolerance=0), "tolerance"),
    (lambda d: d["03"]["questions"][2].update(explanation="  "), "explanation is empty"),
    (lambda d: d["03"]["questions"][2].update(kind="essay"), "kind"),
    (lambda d: d["03"]["questions"][2].pop("answer"), "missing"),
    (lambda d: d["04"]["questions"][0].update(hint="typo"), "unknown fields"),
    (lambda d: d.pop("05"), "expected the keys"),
])
def test_validation_names_the_problem(break_it, message):
    data = copy.deepcopy(quiz.load_quizzes())
    break_it(data)
    with pytest.raises(ValueError, match=message):
        quiz.validate_quizzes(data)


def test_unknown_notebook_key_is_a_clear_error():
    with pytest.raises(ValueError, match="no quiz for notebook '06'.*01, 02, 03, 04, 05"):
        quiz.load_quiz("06")
    assert quiz.load_quiz(3) == quiz.load_quiz("03")


# --- Grading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("question", ALL_QUESTIONS, ids=ids(ALL_QUESTIONS))
def test_stored_answer_is_right_and_another_is_wrong(question):
    correct, feedback = quiz.grade(question, question["answer"])
    assert correct and feedback.startswith("✓") and question["explanation"] in feedback
    correct, feedback = quiz.grade(question, wrong_response(question))
    assert not correct and feedback.startswith("✗") and question["explanation"] not in feedback


def test_numeric_tolerance_is_inclusive_at_both_edges():
    question = {"id": "x-1", "kind": "number", "question": "?", "answer": 543.43, "tolerance": 0.5,
                "unit": "nats", "explanation": "784 ln 2."}
    for response in (543.43, 542.93, 543.93, "543.93", "542,93", "543.4 nats"):
        assert quiz.grade(question, response)[0], response
    for response in (542.92, 543.94, -543.43, "544"):
        assert not quiz.grade(question, response)[0], response


def test_number_strings_decimal_commas_percent_and_unicode_minus():
    share, slope = quiz.load_quiz("04")[0], quiz.load_quiz("02")[1]
    assert share["answer"] == 0.81
    for response in ("0.81", "0,81", " 81% ", "81 %", 0.81):
        assert quiz.grade(share, response)[0], response
    assert not quiz.grade(share, "81")[0]
    assert quiz.grade(slope, "−1.284")[0] and quiz.grade(slope, "-1,28")[0]


@pytest.mark.parametrize("response", ["abc", "", "  ", "nan", "inf", None, True, [1]])
def test_non_numeric_input_gives_feedback_not_an_exception(response):
    correct, feedback = quiz.grade(quiz.load_quiz("01")[0], response)
    assert not correct and "Enter a number" in feedback


@pytest.mark.parametrize("response", [None, -1, 4, "2", 1.0, True])
def test_choice_needs_an_option_index(response):
    question = quiz.load_quiz("01")[1]
    assert quiz.grade(question, response) == (False, "Pick one of the options first.")


# --- Static fallbacks ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", quiz.NOTEBOOKS)
def test_html_and_markdown_show_questions_and_hide_answers_in_details(key):
    for text, escape in ((quiz.as_html(key), html.escape), (quiz.as_markdown(key), str)):
        shown, hidden = text.split("<details><summary>Answers</summary>")
        assert hidden.count("</details>") == 1
        for q in quiz.load_quiz(key):
            assert escape(q["question"]) in shown
            assert all(escape(option) in shown for option in q.get("options", []))
            assert escape(q["explanation"]) not in shown and escape(q["explanation"]) in hidden
            assert escape(quiz.answer_text(q)) in hidden


# --- The widget ------------------------------------------------------------------------------------


@pytest.fixture
def quiz_01():
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed (pip install 'ipywidgets>=8')")
    return quiz.show_quiz("01")


def test_widget_starts_blank(quiz_01):
    assert [v.data["id"] for v in quiz_01.questions] == ids(quiz.load_quiz("01"))
    for view in quiz_01.questions:
        assert view.response.value in (None, "") and view.feedback.value == ""
    assert quiz_01.score.value == "<b>0 of 4 right</b>"


def test_right_choice_shows_tick_explanation_and_score(quiz_01):
    view = quiz_01.questions[1]
    view.response.value = view.data["answer"]
    view.button.click()
    assert view.feedback.value.startswith("✓")
    assert html.escape(view.data["explanation"]) in view.feedback.value
    assert quiz_01.score.value == "<b>1 of 4 right</b>"


def test_wrong_answer_shows_cross_then_reveals_after_two_tries(quiz_01):
    view = quiz_01.questions[1]
    view.response.value = wrong_response(view.data)
    view.button.click()
    assert view.feedback.value.startswith("✗") and "Try again" in view.feedback.value
    assert html.escape(view.data["explanation"]) not in view.feedback.value
    assert html.escape(view.data["options"][view.data["answer"]]) not in view.feedback.value
    view.button.click()
    assert view.wrong_tries == 2
    assert html.escape(quiz.answer_text(view.data)) in view.feedback.value
    assert html.escape(view.data["explanation"]) in view.feedback.value
    assert quiz_01.score.value == "<b>0 of 4 right</b>"


def test_number_question_in_the_widget(quiz_01):
    view = quiz_01.questions[0]
    view.response.value = "lots"
    assert quiz_01.check(0) is False
    assert "Enter a number" in view.feedback.value and view.wrong_tries == 0
    view.response.value = "543,4"
    assert quiz_01.check(0) is True
    assert view.feedback.value.startswith("✓") and quiz_01.score.value == "<b>1 of 4 right</b>"


def test_mimebundle_has_the_widget_view_and_the_html_fallback(quiz_01):
    bundle = quiz_01._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == quiz_01.widget.model_id
    assert bundle["text/html"] == quiz.as_html("01")
    assert bundle["text/plain"] == "Quiz 01: Autoencoders and latent spaces (4 questions)"


def test_missing_ipywidgets_gives_a_pip_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError, match="pip install 'ipywidgets>=8'"):
        quiz.show_quiz("02")
    assert "Answers" in quiz.as_html("02")  # the static fallbacks need no widgets


# --- Import cost -----------------------------------------------------------------------------------


def test_importing_the_quiz_loads_neither_tensorflow_nor_ipywidgets():
    code = ("import sys, json, vae_helpers.quiz as q; q.load_quiz('01'); q.as_html('01'); "
            "print(json.dumps([m for m in ('tensorflow', 'keras', 'ipywidgets') if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            timeout=60)
    assert json.loads(result.stdout) == []
