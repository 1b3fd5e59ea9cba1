"""The end-of-notebook quizzes: the question file, the grader, the widget and its static fallbacks."""

import copy
import html
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from vae_helpers import quiz

ALL_QUESTIONS = [q for key in quiz.NOTEBOOKS for q in quiz.load_quiz(key)]
CHOICES = [q for q in ALL_QUESTIONS if q["kind"] == "choice"]


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


def test_the_right_option_is_not_given_away_by_its_length_or_place():
    """Test-wise learners pick the longest option; the right one may be the longest in a third at most."""
    def is_extreme(q, pick):
        lengths = [len(option) for option in q["options"]]
        others = lengths[:q["answer"]] + lengths[q["answer"] + 1:]
        return lengths[q["answer"]] == pick([lengths[q["answer"]], *others])

    longest = [q["id"] for q in CHOICES if is_extreme(q, max)]
    shortest = [q["id"] for q in CHOICES if is_extreme(q, min)]
    assert len(CHOICES) >= 9
    assert len(longest) <= len(CHOICES) / 3, f"right option longest in {longest}"
    assert len(shortest) <= len(CHOICES) / 3, f"right option shortest in {shortest}"
    positions = np.bincount([q["answer"] for q in CHOICES])
    assert positions.max() <= len(CHOICES) / 2, f"right options by position: {positions}"


@pytest.mark.parametrize("key", quiz.NOTEBOOKS)
def test_each_notebook_asks_at_least_two_predictions_or_computations(key):
    skills = [q["skill"] for q in quiz.load_quiz(key)]
    assert sum(skill in ("predict", "compute") for skill in skills) >= 2, skills


@pytest.mark.parametrize("question", CHOICES, ids=ids(CHOICES))
def test_choice_explanation_says_why_each_wrong_option_is_wrong(question):
    wrong = [f"({quiz.LETTERS[i]})" for i in range(len(question["options"])) if i != question["answer"]]
    missing = [letter for letter in wrong if letter not in question["explanation"]]
    assert not missing, f"the explanation does not mention the wrong options {missing}"


def _kl_by_integration(mu, sigma):
    """KL(N(mu, sigma^2) || N(0, 1)) as the integral of q log(q / p), not from the closed form."""
    q, p = stats.norm(mu, sigma), stats.norm(0, 1)
    return integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), mu - 12 * sigma, mu + 12 * sigma)[0]


def _book_beta_numerically(latent_dim, rng):
    """The book's KL part (5e-4 x mean over dimensions of the bracket, x 784) over the true KL, for a random code."""
    mu, log_var = rng.normal(size=(2, latent_dim))
    bracket = np.exp(log_var) + mu ** 2 - 1 - log_var
    true_kl = sum(_kl_by_integration(m, s) for m, s in zip(mu, np.exp(0.5 * log_var)))
    return 784 * 5e-4 * bracket.mean() / true_kl


def _share_inside_quantile_cube(rng, dims=3, n=1_000_000):
    edge = stats.norm.ppf(0.95)
    return np.mean(np.all(np.abs(rng.standard_normal((n, dims))) <= edge, axis=1))


def _means_std_for_unit_aggregate_variance(rng, cloud_std=0.6, n=1_000_000):
    """The spread of the posterior means at which means + cloud noise has variance 1, solved on simulated draws."""
    means, noise = rng.standard_normal((2, n))
    return optimize.brentq(lambda s: np.var(s * means + cloud_std * noise) - 1.0, 0.0, 1.0)


def _bce_sum(x, p):
    return -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p))


# Each number question's answer recomputed another way: simulation, integration or the definition.
INDEPENDENT_ANSWERS = {
    "01-1": lambda rng, q: _bce_sum(x := rng.integers(0, 2, 784), np.where(x == 1, 0.9, 0.1)),
    "02-2": lambda rng, q: (1 + np.exp((0.5 + 1e-6) / 2) * -2 - (1 + np.exp((0.5 - 1e-6) / 2) * -2)) / 2e-6,
    "02-3": lambda rng, q: np.var(np.exp(-1.0) * rng.standard_normal(2_000_000)),
    "03-1": lambda rng, q: _kl_by_integration(1.0, 1.0) + _kl_by_integration(0.0, 0.5),
    "03-2": lambda rng, q: _book_beta_numerically(32, rng),
    "04-1": lambda rng, q: _share_inside_quantile_cube(rng),
    "04-4": lambda rng, q: _means_std_for_unit_aggregate_variance(rng),
    "05-1": lambda rng, q: np.median(np.linalg.norm(rng.standard_normal((20_000, 64)), axis=1)),
    "06-2": lambda rng, q: -784 * np.log(integrate.quad(lambda x: 0.5 ** x * 0.5 ** (1 - x), 0.0, 1.0)[0]),
}


@pytest.mark.parametrize("question", [q for q in ALL_QUESTIONS if q["kind"] == "number"],
                         ids=lambda q: q["id"])
def test_number_answer_agrees_with_an_independent_computation(question):
    assert question["id"] in INDEPENDENT_ANSWERS, "add an independent computation of this answer"
    value = INDEPENDENT_ANSWERS[question["id"]](np.random.default_rng(0), question)
    assert abs(value - question["answer"]) <= question["tolerance"] / 2, value


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
    (lambda d: d["04"]["questions"][1].update(skill="guess"), "skill must be one of predict, compute"),
    (lambda d: d["05"]["questions"][2].pop("skill"), "skill must be one of"),
    (lambda d: d.pop("05"), "expected the keys"),
])
def test_validation_names_the_problem(break_it, message):
    data = copy.deepcopy(quiz.load_quizzes())
    break_it(data)
    with pytest.raises(quiz.QuizFileError, match=message):
        quiz.validate_quizzes(data)


@pytest.mark.parametrize("content, problem", [
    (b'{"01": {"title": "Autoencoders", "questions": [', "is not valid JSON: Expecting value at line 1"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    (b'{"01": {"title": "Autoencoders", "questions": []}}', "breaks the quiz format: quiz.json, top level"),
    (None, "cannot be read (No such file or directory)"),
])
def test_a_damaged_quiz_file_gives_a_named_error_with_the_path_and_a_remedy(tmp_path, monkeypatch, content, problem):
    path = tmp_path / "quiz.json"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setattr(quiz, "quiz_file", lambda: path)
    for entry_point in (quiz.load_quizzes, lambda: quiz.load_quiz("01"), lambda: quiz.as_html("01")):
        with pytest.raises(quiz.QuizFileError) as raised:
            entry_point()
        message = str(raised.value)
        assert f"The quiz file {path} {problem}" in message
        assert "git checkout -- vae_helpers/resources/quiz.json" in message and "reinstall" in message
        assert raised.value.__context__ is None and raised.value.__cause__ is None  # no JSONDecodeError traceback
    assert content is None or path.read_bytes() == content  # loading never rewrites the file


def test_unknown_notebook_key_is_a_clear_error():
    with pytest.raises(ValueError, match="no quiz for notebook '07'.*01, 02, 03, 04, 05, 06"):
        quiz.load_quiz("07")
    assert quiz.load_quiz(3) == quiz.load_quiz("03")


# --- Grading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("question", ALL_QUESTIONS, ids=ids(ALL_QUESTIONS))
def test_stored_answer_is_right_and_another_is_wrong(question):
    correct, feedback = quiz.grade(question, question["answer"])
    assert correct and feedback.startswith("✓") and question["explanation"] in feedback
    correct, feedback = quiz.grade(question, wrong_response(question))
    assert not correct and feedback.startswith("✗") and question["explanation"] not in feedback


def test_numeric_tolerance_is_inclusive_at_both_edges():
    question = {"id": "x-1", "kind": "number", "skill": "compute", "question": "?", "answer": 543.43,
                "tolerance": 0.5, "unit": "nats", "explanation": "784 ln 2."}
    for response in (543.43, 542.93, 543.93, "543.93", "542,93", "543.4 nats"):
        assert quiz.grade(question, response)[0], response
    for response in (542.92, 543.94, -543.43, "544"):
        assert not quiz.grade(question, response)[0], response


def test_number_strings_decimal_commas_percent_and_unicode_minus():
    share = {"id": "x-1", "kind": "number", "skill": "compute", "question": "?", "answer": 0.81,
             "tolerance": 0.005, "explanation": "0.9 squared."}
    slope = {"id": "x-2", "kind": "number", "skill": "compute", "question": "?", "answer": -1.284,
             "tolerance": 0.01, "explanation": "Half of sigma times epsilon."}
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
    assert view.data["kind"] == "number"
    view.response.value = "lots"
    assert quiz_01.check(0) is False
    assert "Enter a number" in view.feedback.value and view.wrong_tries == 0
    view.response.value = f"{view.data['answer']:g}".replace(".", ",")  # a decimal comma
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
