"""`QAExamples` (extractive question answering, as in SQuAD) and loaders for them.

An answer is a span of its context: the answer text and the character offset
where it starts, and `context[start:start + len(text)]` must be the text,
exactly. An offset that is off by one, or counted in bytes or after
whitespace was changed, would train the model on the wrong span, so it is
an error, whose message says what the context holds at that offset and
where the text does occur.

- `load_qa_jsonl`: one JSON object per line, answers as the Hugging Face
  `squad` data set stores them.
- `load_qa_csv`: one question and one answer per row.
- `load_squad_json`: the official SQuAD v1.1 JSON file.

Errors follow `keras_bert_kit.datasets.files`: a missing file is a
`FileNotFoundError`, a problem inside a file a `ValueError` whose message
starts with `path:line:` (or, in SQuAD JSON, names the path and question id).
Questions, contexts and answers are kept as written.
"""

from __future__ import annotations

import dataclasses
import json
import operator

from keras_bert_kit.datasets._readers import (
    as_integer,
    json_type,
    read_csv,
    read_jsonl,
    read_text,
    text_value,
)
from keras_bert_kit.datasets.labeled import as_tuple, row_picker
from keras_bert_kit.json_files import describe, parse_json
from keras_bert_kit.validation import is_int


def _shorten(text, limit=60):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _answer_problem(context, text, start):
    """Why `text` at `start` is not a span of `context`, or None when it is.

    The reason reads after "answer ": "'Denver' at character 7 does not match ...".
    """
    found = context[start:start + len(text)]
    if found == text:
        return None
    problem = (
        f"{_shorten(text)!r} at character {start} does not match the context, which holds "
        f"{_shorten(found)!r} there"
    )
    if start + len(text) > len(context):
        problem += f" (the context has {len(context)} characters)"
    nearest, at = None, context.find(text)
    while at >= 0:
        if nearest is None or abs(at - start) < abs(nearest - start):
            nearest = at
        at = context.find(text, at + 1)
    if nearest is not None:
        problem += f"; the text occurs at character {nearest}"
    else:
        problem += "; the text does not occur in the context"
    return problem


@dataclasses.dataclass(frozen=True)
class QAExamples:
    """Parallel tuples: `questions[i]` about `contexts[i]`, answered by `answers[i]`.

    `answers[i]` holds one or more `(text, start)` pairs, each a span
    `contexts[i][start:start + len(text)]` (several when annotators chose
    different spans); `answers` is None for unanswered examples. `ids[i]`
    names the example (SQuAD's question ids); None gives "0", "1", ....
    Lists (or other sequences) are accepted and stored as tuples, so an
    instance never changes after it is checked.
    """

    questions: tuple[str, ...]
    contexts: tuple[str, ...]
    answers: tuple[tuple[tuple[str, int], ...], ...] | None = None
    ids: tuple[str, ...] | None = None

    def __post_init__(self):
        for name in ("questions", "contexts"):
            if getattr(self, name) is None:
                raise TypeError(f"`{name}` is required.")
            values = as_tuple(getattr(self, name), name)
            for i, value in enumerate(values):
                if not isinstance(value, str):
                    raise TypeError(f"`{name}[{i}]` must be a str, got {type(value).__name__}.")
                if not value.strip():
                    raise ValueError(f"`{name}[{i}]` is empty or whitespace: {value!r}.")
            object.__setattr__(self, name, values)
        n = len(self.questions)
        if len(self.contexts) != n:
            raise ValueError(f"{n} questions but {len(self.contexts)} contexts; they must match.")

        if self.ids is None:
            ids = tuple(str(i) for i in range(n))
        else:
            ids = as_tuple(self.ids, "ids")
            if len(ids) != n:
                raise ValueError(f"{n} questions but {len(ids)} ids; they must match.")
            for i, value in enumerate(ids):
                if not isinstance(value, str):
                    raise TypeError(f"`ids[{i}]` must be a str, got {type(value).__name__}.")
                if not value.strip():
                    raise ValueError(f"`ids[{i}]` is empty or whitespace: {value!r}.")
        object.__setattr__(self, "ids", ids)

        if self.answers is None:
            return
        answers = as_tuple(self.answers, "answers")
        if len(answers) != n:
            raise ValueError(f"{n} questions but {len(answers)} answers; they must match.")
        checked = []
        for i, (context, spans) in enumerate(zip(self.contexts, answers)):
            example = f"example {i}, id {ids[i]!r}"
            spans = as_tuple(spans, f"answers[{i}]")
            if not spans:
                raise ValueError(
                    f"`answers[{i}]` ({example}) is empty; each question needs at least one "
                    "answer."
                )
            pairs = []
            for k, span in enumerate(spans):
                name = f"`answers[{i}][{k}]` ({example})"
                span = as_tuple(span, f"answers[{i}][{k}]")
                if len(span) != 2:
                    raise ValueError(f"{name} must be a (text, start) pair, got {span!r}.")
                text, start = span
                if not isinstance(text, str):
                    raise TypeError(f"{name}: the text must be a str, got {type(text).__name__}.")
                if not text.strip():
                    raise ValueError(f"{name}: the answer text is empty or whitespace: {text!r}.")
                if isinstance(start, bool):
                    raise TypeError(f"{name}: the start is a bool; it is a character offset.")
                try:
                    start = operator.index(start)  # also accepts numpy integers
                except TypeError:
                    raise TypeError(
                        f"{name}: the start must be an int, got {type(start).__name__}."
                    ) from None
                if start < 0:
                    raise ValueError(f"{name}: the start {start} is negative.")
                problem = _answer_problem(context, text, start)
                if problem:
                    raise ValueError(f"{name}: answer {problem}.")
                pairs.append((text, start))
            checked.append(tuple(pairs))
        object.__setattr__(self, "answers", tuple(checked))

    def __len__(self) -> int:
        return len(self.questions)

    def subset(self, indices) -> QAExamples:
        """The examples at `indices` (any iterable of ints, repeats allowed), with their ids."""
        pick = row_picker(indices)
        return QAExamples(
            questions=pick(self.questions),
            contexts=pick(self.contexts),
            answers=pick(self.answers),
            ids=pick(self.ids),
        )


# -- values -------------------------------------------------------------------


def _id_value(value, where):
    """An example id: a non-empty string (stripped) or an integer, as a string."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if is_int(value):
        return str(value)
    if isinstance(value, str):
        raise ValueError(f"{where} is empty.")
    raise ValueError(
        f"{where} must be a string or an integer, got a JSON {json_type(value)} "
        f"{json.dumps(value) if value is None or isinstance(value, bool) else describe(value)}."
    )


def _span(text, start, context, where, number):
    """(text, start) as read, checked against the context; errors start with `where`."""
    answer = f"answer {number}" if number is not None else "the answer"
    if not isinstance(text, str):
        raise ValueError(
            f"{where}: the text of {answer} must be a string, got a JSON {json_type(text)} "
            f"{describe(text)}."
        )
    if not text.strip():
        raise ValueError(f"{where}: the text of {answer} is empty.")
    if isinstance(start, float) and start.is_integer():
        start = int(start)
    if not is_int(start) or start < 0:
        raise ValueError(
            f"{where}: the answer_start of {answer} must be a character offset (an integer "
            f">= 0), got {describe(start)}."
        )
    problem = _answer_problem(context, text, start)
    if problem:
        raise ValueError(f"{where}: {answer} {problem}.")
    return text, start


_JSON_ANSWERS = (
    'expected {"text": [...], "answer_start": [...]} or a list of '
    '{"text": ..., "answer_start": ...} objects'
)


def _json_answers(value, context, where):
    """Answers in either JSON layout -> checked (text, start) pairs."""
    if isinstance(value, dict):
        for key in ("text", "answer_start"):
            if key not in value:
                raise ValueError(
                    f"{where}: the answers object has no key {key!r}; {_JSON_ANSWERS}."
                )
        texts, starts = value["text"], value["answer_start"]
        if isinstance(texts, list) and isinstance(starts, list):
            if len(texts) != len(starts):
                raise ValueError(
                    f"{where}: {len(texts)} answer texts but {len(starts)} answer_starts; "
                    "they must match."
                )
            raw = list(zip(texts, starts))
        elif isinstance(texts, list) or isinstance(starts, list):
            raise ValueError(
                f"{where}: \"text\" and \"answer_start\" must both be arrays or both single "
                "values."
            )
        else:
            raw = [(texts, starts)]
    elif isinstance(value, list):
        raw = []
        for number, item in enumerate(value, start=1):
            if not isinstance(item, dict):
                raise ValueError(
                    f"{where}: answer {number} is a JSON {json_type(item)}; {_JSON_ANSWERS}."
                )
            for key in ("text", "answer_start"):
                if key not in item:
                    raise ValueError(f"{where}: answer {number} has no key {key!r}.")
            raw.append((item["text"], item["answer_start"]))
    else:
        raise ValueError(f"{where} is a JSON {json_type(value)}; {_JSON_ANSWERS}.")
    if not raw:
        raise ValueError(
            f"{where} holds no answers; each question needs at least one (unanswerable "
            "questions, as in SQuAD 2.0, are not supported)."
        )
    numbered = len(raw) > 1
    return tuple(
        _span(text, start, context, where, number if numbered else None)
        for number, (text, start) in enumerate(raw, start=1)
    )


# -- loaders ------------------------------------------------------------------


def _check_key(value, argument, optional=False):
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError(f"`{argument}` must be a string, got {value!r}.")


def load_qa_jsonl(path, question_key="question", context_key="context", answers_key="answers",
                  id_key="id") -> QAExamples:
    """Question-answering examples from JSON Lines: one object per line.

    Answers are as the Hugging Face `squad` data set stores them,
    `{"text": ["Denver Broncos"], "answer_start": [177]}`, or a list of
    `{"text": ..., "answer_start": ...}` objects; every object must have
    `answers_key`, and `answers_key=None` reads questions without answers. An
    object without `id_key` (or `id_key=None`) gets its position, "0", "1",
    ..., as its id. Blank lines are skipped and other keys ignored.
    """
    _check_key(question_key, "question_key")
    _check_key(context_key, "context_key")
    _check_key(answers_key, "answers_key", optional=True)
    _check_key(id_key, "id_key", optional=True)
    wanted = [("question_key", question_key), ("context_key", context_key)]
    if answers_key is not None:
        wanted.append(("answers_key; answers_key=None reads questions without answers",
                       answers_key))
    path, records = read_jsonl(path, wanted)
    questions, contexts, ids = [], [], []
    answers = [] if answers_key is not None else None
    for index, (line, record) in enumerate(records):
        questions.append(text_value(record[question_key], path, line, question_key, "key"))
        context = text_value(record[context_key], path, line, context_key, "key")
        contexts.append(context)
        if id_key is not None and id_key in record:
            ids.append(_id_value(record[id_key], f"{path}:{line}: id key {id_key!r}"))
        else:
            ids.append(str(index))
        if answers_key is not None:
            where = f"{path}:{line}: answers key {answers_key!r}"
            answers.append(_json_answers(record[answers_key], context, where))
    return QAExamples(questions, contexts, answers, ids)


def load_qa_csv(path, question_column="question", context_column="context",
                answer_column="answer", answer_start_column="answer_start", id_column=None,
                delimiter=",") -> QAExamples:
    """Question-answering examples from a CSV file with a header row, one answer per row.

    `answer_start_column` holds the character offset of the answer in the
    context. `answer_column=None` reads questions without answers (and then
    `answer_start_column` is not read). Without `id_column`, ids are the row
    positions "0", "1", .... CSV quoting, skipped empty lines and errors are
    as for `load_csv`; texts are kept as written, so an answer's spaces must
    match its context.
    """
    _check_key(question_column, "question_column")
    _check_key(context_column, "context_column")
    _check_key(answer_column, "answer_column", optional=True)
    _check_key(id_column, "id_column", optional=True)
    wanted = [("question_column", question_column), ("context_column", context_column)]
    if answer_column is not None:
        if answer_start_column is None:
            raise ValueError("`answer_start_column` is needed with `answer_column`.")
        _check_key(answer_start_column, "answer_start_column")
        wanted += [("answer_column", answer_column),
                   ("answer_start_column", answer_start_column)]
    if id_column is not None:
        wanted.append(("id_column", id_column))
    path, records = read_csv(path, wanted, delimiter)
    questions, contexts, ids = [], [], []
    answers = [] if answer_column is not None else None
    for index, (line, row) in enumerate(records):
        questions.append(text_value(row[question_column], path, line, question_column, "column"))
        context = text_value(row[context_column], path, line, context_column, "column")
        contexts.append(context)
        if id_column is not None:
            ids.append(_id_value(row[id_column], f"{path}:{line}: id column {id_column!r}"))
        else:
            ids.append(str(index))
        if answer_column is None:
            continue
        text, start = row[answer_column], row[answer_start_column].strip()
        if not text.strip():
            raise ValueError(f"{path}:{line}: answer column {answer_column!r} is empty.")
        offset = as_integer(start)  # +-inf for more digits than any offset has
        if not is_int(offset) or offset < 0:
            raise ValueError(
                f"{path}:{line}: answer start column {answer_start_column!r} must be a "
                f"character offset (an integer >= 0), got {describe(start)}."
            )
        where = f"{path}:{line}: answer column {answer_column!r}"
        answers.append((_span(text, offset, context, where, None),))
    return QAExamples(questions, contexts, answers, ids)


def _member(container, key, where, kind=None):
    """container[key]; the container must be a JSON object that has the key, and the
    value of JSON type `kind` ("array" or "string") unless `kind` is None."""
    if not isinstance(container, dict):
        raise ValueError(f"{where}: expected a JSON object, got a JSON {json_type(container)}.")
    if key not in container:
        available = ", ".join(map(repr, container)) or "none"
        raise ValueError(f"{where}: no key {key!r}; available keys: {available}.")
    value = container[key]
    if kind is not None and not isinstance(value, {"array": list, "string": str}[kind]):
        raise ValueError(
            f"{where}: {key!r} must be a JSON {kind}, got a JSON {json_type(value)}."
        )
    return value


def load_squad_json(path) -> QAExamples:
    """Question-answering examples from the official SQuAD v1.1 JSON file.

    The layout is `{"data": [{"title": ..., "paragraphs": [{"context": ...,
    "qas": [{"id": ..., "question": ..., "answers": [{"text": ...,
    "answer_start": ...}]}]}]}]}`; other keys (version, title) are ignored.
    Every answer of a question is kept (the dev set has up to five). A file
    in which no question has "answers" (a test set) gives unanswered examples.
    Unanswerable questions (SQuAD 2.0's "is_impossible") are refused. The file
    is usually a single line, so errors name the path and the question id.
    """
    path, text = read_text(path)
    if not text.strip():
        raise ValueError(f"{path}:1: the file is empty; expected a SQuAD JSON object.")
    root = parse_json(text, path, ValueError)
    questions, contexts, ids, answers = [], [], [], []
    # Questions with and without answers: the first of each, for the all-or-none rule.
    first_with, first_without = None, None
    for i, article in enumerate(_member(root, "data", path, "array")):
        paragraphs = _member(article, "paragraphs", f"{path}: data[{i}]", "array")
        for j, paragraph in enumerate(paragraphs):
            at = f"data[{i}].paragraphs[{j}]"
            context = _member(paragraph, "context", f"{path}: {at}", "string")
            if not context.strip():
                raise ValueError(f"{path}: {at}: the context is empty.")
            for k, qa in enumerate(_member(paragraph, "qas", f"{path}: {at}", "array")):
                qa_at = f"{at}.qas[{k}]"
                raw_id = _member(qa, "id", f"{path}: {qa_at}")
                qid = _id_value(raw_id, f"{path}: {qa_at}: the id")
                where = f"{path}: question {qid!r} ({qa_at})"
                question = _member(qa, "question", where, "string")
                if not question.strip():
                    raise ValueError(f"{where}: the question is empty.")
                questions.append(question)
                contexts.append(context)
                ids.append(qid)
                if qa.get("is_impossible") is True:
                    raise ValueError(
                        f"{where}: the question is unanswerable (SQuAD 2.0 \"is_impossible\"); "
                        "only answerable questions (SQuAD v1.1) are supported."
                    )
                if "answers" not in qa:
                    answers.append(None)
                    first_without = first_without or where
                    continue
                first_with = first_with or f"question {qid!r} ({qa_at})"
                spans = _member(qa, "answers", where, "array")
                if not spans:
                    raise ValueError(
                        f"{where}: \"answers\" is empty; each question needs at least one "
                        "(unanswerable questions, as in SQuAD 2.0, are not supported)."
                    )
                numbered = len(spans) > 1
                pairs = []
                for number, span in enumerate(spans, start=1):
                    answer_at = f"{where}: answer {number}"
                    pairs.append(_span(
                        _member(span, "text", answer_at),
                        _member(span, "answer_start", answer_at),
                        context, where, number if numbered else None,
                    ))
                answers.append(tuple(pairs))
    if not questions:
        raise ValueError(f"{path}: no questions; \"data\" holds no paragraphs with \"qas\".")
    if first_with and first_without:
        raise ValueError(
            f"{first_without}: no key 'answers', but other questions have answers (e.g. "
            f"{first_with}); give every question answers, or none."
        )
    return QAExamples(questions, contexts, answers if first_with else None, ids)
