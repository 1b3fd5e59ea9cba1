"""End-of-notebook quizzes: the questions, a grader, an ipywidgets quiz and static fallbacks.

``resources/quiz.json`` maps each notebook key to ``{"title": str, "questions": [QUESTION, ...]}``,
for the keys "01" to "05". A QUESTION is a multiple choice, where ``answer`` is the 0-based index of
the right option::

    {"id": "01-2", "kind": "choice", "skill": "predict", "question": "...", "options": ["...", ...],
     "answer": 2, "explanation": "..."}

or a number, right when ``|response - answer| <= tolerance`` (``unit`` is optional)::

    {"id": "01-1", "kind": "number", "skill": "compute", "question": "...", "answer": 82.6,
     "tolerance": 0.5, "unit": "nats", "explanation": "..."}

``skill`` says what the question asks of the learner (``SKILLS``): to predict what some code or a model
will do, to compute a number, to explain why something happens, or to recall a fact. The
explanation of a multiple choice says why the right option is right and, naming each wrong option
by its letter ("(a) ..."), why that one is wrong: it is shown once the learner is right, or after
``REVEAL_AFTER`` wrong tries.

Ids are unique and start with their notebook's key. Texts are plain Unicode (no markdown or LaTeX),
so they read the same in a widget, in HTML and in markdown. Number responses may be numbers or
strings such as "0.81", "0,81" (decimal comma), "81%" (= 0.81), "−1.28" or "543 nats" (the unit).
A damaged quiz file raises ``QuizFileError``, which names the file and how to restore it.
Importing this module loads neither TensorFlow nor ipywidgets.
"""

import html
import json
import math
import numbers
from functools import partial
from importlib import resources
from types import SimpleNamespace

NOTEBOOKS = ("01", "02", "03", "04", "05", "06")
REVEAL_AFTER = 2  # wrong tries before the widget shows the answer
SKILLS = ("predict", "compute", "explain", "recall")  # what a question asks of the learner
FIELDS = {"choice": {"id", "kind", "skill", "question", "options", "answer", "explanation"},
          "number": {"id", "kind", "skill", "question", "answer", "tolerance", "unit", "explanation"}}
LETTERS = "abcdefghij"
RESTORE = ("The file ships with the repository: restore it with `git checkout -- vae_helpers/resources/quiz.json` "
           "in the repository's folder, or reinstall vae_helpers if you installed a copy. If you are editing "
           "the file on purpose, fix the place this message names.")

# --- The questions ---------------------------------------------------------------------------------


class QuizFileError(ValueError):
    """The quiz file is unreadable, not valid JSON, or not in the format this module describes."""


def _require(ok, where, problem):
    if not ok:
        raise QuizFileError(f"quiz.json, {where}: {problem}")


def _is_text(value):
    return isinstance(value, str) and value.strip() != ""


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _validate_question(q, key, seen):
    """Check one question dict; ``seen`` collects the ids met so far."""
    _require(isinstance(q, dict), key, f"every question must be an object, got {q!r}")
    where = f"{key}, question {q.get('id', '?')}"
    _require(q.get("kind") in FIELDS, where, f"kind must be 'choice' or 'number', got {q.get('kind')!r}")
    _require(q.get("skill") in SKILLS, where, f"skill must be one of {', '.join(SKILLS)}, got {q.get('skill')!r}")
    _require(str(q.get("id")).startswith(f"{key}-"), where, f"id must start with '{key}-'")
    _require(q["id"] not in seen, where, "duplicate id")
    seen.add(q["id"])
    required = FIELDS[q["kind"]] - {"unit"}
    _require(required <= set(q), where, f"missing {sorted(required - set(q))}")
    _require(set(q) <= FIELDS[q["kind"]], where, f"unknown fields {sorted(set(q) - FIELDS[q['kind']])}")
    _require(_is_text(q["question"]), where, "question text is empty")
    _require(_is_text(q["explanation"]), where, "explanation is empty")
    if q["kind"] == "choice":
        options = q["options"]
        _require(isinstance(options, list) and len(options) >= 2, where, "needs at least 2 options")
        _require(all(_is_text(o) for o in options), where, "every option must be non-empty text")
        _require(len(set(options)) == len(options) <= len(LETTERS), where, "options repeat or are too many")
        answer = q["answer"]
        _require(isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(options),
                 where, f"answer {answer!r} is not an index into its {len(options)} options")
    else:
        _require(_is_real(q["answer"]), where, f"answer {q['answer']!r} is not a finite number")
        _require(_is_real(q["tolerance"]) and q["tolerance"] > 0, where, "tolerance must be finite and > 0")
        _require(isinstance(q.get("unit", ""), str), where, "unit must be text")


def validate_quizzes(data):
    """Check a whole parsed quiz file and return it; raise QuizFileError naming the first problem."""
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    _require(keys == list(NOTEBOOKS), "top level", f"expected the keys {', '.join(NOTEBOOKS)}, got {keys!r}")
    seen = set()
    for key in NOTEBOOKS:
        entry = data[key]
        _require(isinstance(entry, dict) and _is_text(entry.get("title")), key, "needs a title")
        _require(isinstance(entry.get("questions"), list) and entry["questions"], key, "needs questions")
        for question in entry["questions"]:
            _validate_question(question, key, seen)
    return data


def quiz_file():
    """The bundled quiz file (an importlib.resources Traversable)."""
    return resources.files("vae_helpers") / "resources" / "quiz.json"


def load_quizzes():
    """Every notebook's quiz, validated: ``{"01": {"title": ..., "questions": [...]}, ...}``.

    Raises QuizFileError, naming the file and how to restore it, if the file cannot be read, is not
    valid JSON (for example cut short or hand-edited) or breaks the format.
    """
    path = quiz_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        problem = f"is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
    except UnicodeDecodeError as err:
        problem = f"is not UTF-8 text (byte {err.start})"
    except OSError as err:
        problem = f"cannot be read ({err.strerror or err})"
    else:
        try:
            return validate_quizzes(data)
        except QuizFileError as err:
            problem = f"breaks the quiz format: {err}"
    raise QuizFileError(f"The quiz file {path} {problem}. {RESTORE}")


def _key(notebook):
    key = f"{notebook:02d}" if isinstance(notebook, int) and not isinstance(notebook, bool) else notebook
    if key not in NOTEBOOKS:
        raise ValueError(f"no quiz for notebook {notebook!r}: choose one of {', '.join(NOTEBOOKS)}")
    return key


def load_quiz(notebook):
    """The validated question list of one notebook, ``"01"`` to ``"05"`` (or the integers 1 to 5)."""
    return load_quizzes()[_key(notebook)]["questions"]


# --- Grading ---------------------------------------------------------------------------------------


def parse_number(response, unit=""):
    """A finite float from a number or a numeric string, or None if ``response`` is not one."""
    if isinstance(response, str):
        text = response.strip().replace("\u2212", "-")  # a Unicode minus sign counts as "-"
        text = text[: -len(unit)] if unit and text.endswith(unit) else text
        scale = 0.01 if text.rstrip().endswith("%") else 1.0
        text = text.replace("%", "").replace(" ", "")
        try:
            value = float(text if "." in text else text.replace(",", ".")) * scale
        except ValueError:
            return None
    elif isinstance(response, numbers.Real) and not isinstance(response, bool):
        value = float(response)
    else:
        return None
    return value if math.isfinite(value) else None


def answer_text(question):
    """The right answer as text: ``"(c) the option"`` or ``"543.43 nats"``."""
    if question["kind"] == "choice":
        return f"({LETTERS[question['answer']]}) {question['options'][question['answer']]}"
    return f"{question['answer']:g} {question.get('unit', '')}".strip()


def _verdict(question, response):
    """(True, False or None for "not an answer yet", feedback text)."""
    if question["kind"] == "choice":
        if not isinstance(response, numbers.Integral) or isinstance(response, bool) \
                or not 0 <= response < len(question["options"]):
            return None, "Pick one of the options first."
        right = response == question["answer"]
    else:
        value = parse_number(response, question.get("unit", ""))
        if value is None:
            return None, "Enter a number, for example 0.5 (a decimal comma or a % sign also work)."
        right = abs(value - question["answer"]) <= question["tolerance"] * (1 + 1e-9)
    if right:
        return True, f"✓ Right. {question['explanation']}"
    if question["kind"] == "number":
        margin = f"{question['tolerance']:g} {question.get('unit', '')}".strip()
        return False, f"✗ Not quite. Try again (answers within ±{margin} count)."
    return False, "✗ Not quite. Try again."


def grade(question, response):
    """Grade one response as ``(correct, feedback)``: an option index, or a number (or numeric string)."""
    verdict, feedback = _verdict(question, response)
    return verdict is True, feedback


# --- Static fallbacks ------------------------------------------------------------------------------


def as_html(notebook):
    """The quiz as HTML for viewers without widgets, answers and explanations in a closed <details>."""
    entry, esc = load_quizzes()[_key(notebook)], html.escape
    items, answers = [], []
    for q in entry["questions"]:
        if q["kind"] == "choice":
            body = "".join(f"<li>{esc(option)}</li>" for option in q["options"])
            body = f'<ol type="a">{body}</ol>'
        else:
            unit = f" ({esc(q['unit'])})" if q.get("unit") else ""
            body = f"<p><i>Answer with a number{unit}.</i></p>"
        items.append(f"<li><p>{esc(q['question'])}</p>{body}</li>")
        answers.append(f"<li><b>{esc(answer_text(q))}</b> — {esc(q['explanation'])}</li>")
    return (f'<div class="vae-quiz"><h4>Quiz: {esc(entry["title"])}</h4><ol>{"".join(items)}</ol>'
            f'<details><summary>Answers</summary><ol>{"".join(answers)}</ol></details>'
            "<p><i>Run the notebook to check your answers interactively.</i></p></div>")


def as_markdown(notebook):
    """The quiz as markdown text, answers inside a closed <details> block (GitHub renders it)."""
    entry = load_quizzes()[_key(notebook)]
    lines, answers = [f"**Quiz: {entry['title']}**", ""], []
    for n, q in enumerate(entry["questions"], 1):
        lines.append(f"{n}. {q['question']}")
        if q["kind"] == "choice":
            lines += [f"    - ({LETTERS[i]}) {option}" for i, option in enumerate(q["options"])]
        else:
            lines.append(f"    - Answer with a number{' (' + q['unit'] + ')' if q.get('unit') else ''}.")
        answers.append(f"{n}. **{answer_text(q)}** — {q['explanation']}")
    details = ["", "<details><summary>Answers</summary>", "", *answers, "", "</details>", ""]
    return "\n".join(lines + details)


# --- The widget ------------------------------------------------------------------------------------


def _ipywidgets():
    """Import ipywidgets on first use, so the rest of the module works without it."""
    try:
        import ipywidgets
    except ImportError as err:
        raise ImportError("vae_helpers.quiz needs ipywidgets 8 or newer for the interactive quiz: "
                          "pip install 'ipywidgets>=8' (or pip install 'vae-helpers[widgets]')") from err
    return ipywidgets


class Quiz:
    """One notebook's quiz: an ipywidgets VBox (``quiz.widget``) that falls back to HTML without widgets.

    ``quiz.questions[i]`` holds ``data`` (the question dict), ``response`` (RadioButtons or Text),
    ``button``, ``feedback`` (HTML), ``wrong_tries`` and ``correct``; ``quiz.check(i)`` grades it.
    """

    def __init__(self, notebook):
        ipw = _ipywidgets()
        self.notebook = _key(notebook)
        entry = load_quizzes()[self.notebook]
        self.title = entry["title"]
        self.questions = [self._question_view(ipw, n, q) for n, q in enumerate(entry["questions"])]
        self.score = ipw.HTML()
        rows = [ipw.HTML(f"<h4>Quiz: {html.escape(self.title)}</h4>")]
        for view in self.questions:
            rows.append(ipw.VBox([view.text, view.response, view.button, view.feedback],
                                 layout=ipw.Layout(margin="0 0 12px 0")))
        self.widget = ipw.VBox(rows + [self.score])
        self._update_score()

    def _question_view(self, ipw, n, q):
        text = f"<b>{n + 1}.</b> {html.escape(q['question'])}"
        if q["kind"] == "choice":  # RadioButtons labels do not wrap: list the options here, pick a letter
            text += "".join(f"<br>({LETTERS[i]}) {html.escape(o)}" for i, o in enumerate(q["options"]))
            letters = [(LETTERS[i], i) for i in range(len(q["options"]))]
            response = ipw.RadioButtons(options=letters, value=None, orientation="horizontal",
                                        layout=ipw.Layout(width="auto"))
        else:
            unit = f" ({q['unit']})" if q.get("unit") else ""
            response = ipw.Text(placeholder=f"a number{unit}", layout=ipw.Layout(width="220px"))
        button = ipw.Button(description="Check", layout=ipw.Layout(width="80px"))
        button.on_click(partial(self._on_click, n))
        return SimpleNamespace(data=q, text=ipw.HTML(f"<div style='line-height:1.5'>{text}</div>"),
                               response=response, button=button, feedback=ipw.HTML(),
                               wrong_tries=0, correct=False)

    def _on_click(self, n, _button):
        self.check(n)

    def check(self, n):
        """Grade question n's response, show the feedback, update the score; return whether it is right."""
        view = self.questions[n]
        verdict, feedback = _verdict(view.data, view.response.value)
        if verdict is False:
            view.wrong_tries += 1
            if view.wrong_tries >= REVEAL_AFTER:
                answer, why = answer_text(view.data), view.data["explanation"]
                feedback = f"✗ Not quite. The answer: {answer} — {why}"
        if verdict is not None:
            view.correct = verdict
        view.feedback.value = html.escape(feedback)
        self._update_score()
        return verdict is True

    def _update_score(self):
        right = sum(view.correct for view in self.questions)
        self.score.value = f"<b>{right} of {len(self.questions)} right</b>"

    def _repr_mimebundle_(self, **kwargs):
        """The widget view for Jupyter front ends, plus HTML and plain text for everything else."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = f"Quiz {self.notebook}: {self.title} ({len(self.questions)} questions)"
        bundle["text/html"] = as_html(self.notebook)
        return bundle


def show_quiz(notebook):
    """The interactive quiz of a notebook ("01" to "05"); as a cell's last line it displays itself."""
    return Quiz(notebook)
