"""QAExamples and its loaders (JSON Lines, CSV, SQuAD JSON), and their errors."""

import contextlib
import dataclasses
import json

import numpy as np
import pytest

from keras_bert_kit.datasets import QAExamples, load_qa_csv, load_qa_jsonl, load_squad_json


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """No Keras here: skip the conftest's per-test Keras reset (0.2 s a test)."""
    yield


def write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def jsonl(*records):
    return "".join(json.dumps(r) + "\n" for r in records)


@contextlib.contextmanager
def error_at(error_type, prefix, *fragments):
    """Expects error_type with a message that starts with `prefix` and has the fragments."""
    with pytest.raises(error_type) as info:
        yield info
    message = str(info.value)
    assert message.startswith(str(prefix)), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


BOWL = "Super Bowl 50 was won by the Denver Broncos in 2016."
BRONCOS = BOWL.index("Denver Broncos")  # 29
PARIS = "Paris is the capital of France."


# -- QAExamples ---------------------------------------------------------------


def test_qa_examples_store_tuples_ids_and_subset():
    data = QAExamples(
        ["Who won?", "When?", "Capital?"],
        [BOWL, BOWL, PARIS],
        [[("Denver Broncos", BRONCOS), ["Broncos", np.int64(BRONCOS + 7)]], [("2016", 47)],
         [("Paris", 0)]],
    )
    assert data.ids == ("0", "1", "2") and len(data) == 3
    assert data.answers[0] == (("Denver Broncos", 29), ("Broncos", 36))
    assert type(data.answers[0][1][1]) is int
    part = data.subset(np.array([2, 0]))
    assert part.ids == ("2", "0") and part.questions == ("Capital?", "Who won?")
    assert part.answers == ((("Paris", 0),), data.answers[0])
    unanswered = QAExamples(["q"], ["c"], ids=["a1"])
    assert unanswered.answers is None and unanswered.subset([0, 0]).ids == ("a1", "a1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.ids = ()
    with pytest.raises(TypeError, match="boolean mask"):
        data.subset([True])


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(questions=["q"], contexts=[BOWL], answers=[[("Denver Broncos", 28)]]), ValueError,
     "`answers[0][0]` (example 0, id '0'): answer 'Denver Broncos' at character 28 does not "
     "match the context, which holds ' Denver Bronco' there; the text occurs at character 29."),
    (dict(questions=["q", "q"], contexts=["c", PARIS], answers=[[("c", 0)], [("Rome", 0)]],
          ids=["a", "b"]), ValueError,
     "`answers[1][0]` (example 1, id 'b'): answer 'Rome' at character 0 does not match the "
     "context, which holds 'Pari' there; the text does not occur in the context."),
    (dict(questions=["q"], contexts=["short"], answers=[[("short", 3)]]), ValueError,
     "(the context has 5 characters)"),
    (dict(questions=["q"], contexts=["c"], answers=[[]]), ValueError,
     "`answers[0]` (example 0, id '0') is empty"),
    (dict(questions=["q"], contexts=["c"], answers=[[("", 0)]]), ValueError, "text is empty"),
    (dict(questions=["q"], contexts=["c"], answers=[[("c", -1)]]), ValueError, "is negative"),
    (dict(questions=["q"], contexts=["c"], answers=[[("c", 0.0)]]), TypeError, "must be an int"),
    (dict(questions=["q"], contexts=["c"], answers=[[("c", True)]]), TypeError, "is a bool"),
    (dict(questions=["q"], contexts=["c"], answers=[[("c",)]]), ValueError, "(text, start) pair"),
    (dict(questions=["q"], contexts=["c"], answers=[["c0"]]), TypeError, "not a single string"),
    (dict(questions=["q", "r"], contexts=["c"]), ValueError, "2 questions but 1 contexts"),
    (dict(questions=["q"], contexts=["c"], answers=[]), ValueError, "1 questions but 0 answers"),
    (dict(questions=["q"], contexts=["c"], ids=["a", "b"]), ValueError, "1 questions but 2 ids"),
    (dict(questions=["q"], contexts=["c"], ids=[1]), TypeError, "`ids[0]` must be a str"),
    (dict(questions=[" "], contexts=["c"]), ValueError, "`questions[0]` is empty"),
    (dict(questions="q", contexts=["c"]), TypeError, "not a single string"),
])
def test_qa_examples_validation(kwargs, error, message):
    with pytest.raises(error) as info:
        QAExamples(**kwargs)
    assert message in str(info.value)


# -- JSON Lines ---------------------------------------------------------------


def test_jsonl_both_answer_layouts_ids_and_unlabelled(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl(
        # Hugging Face `squad` layout, two annotators.
        {"id": "a1", "question": "Who won?", "context": BOWL,
         "answers": {"text": ["Denver Broncos", "Broncos"], "answer_start": [BRONCOS, 36]}},
        # A list of answer objects, an integer id.
        {"id": 17, "question": "When?", "context": BOWL,
         "answers": [{"text": "2016", "answer_start": 47}]},
        # No id: the position.
        {"question": "Capital?", "context": PARIS,
         "answers": {"text": "Paris", "answer_start": 0.0}},
    ) + "\n")
    data = load_qa_jsonl(path)
    assert data.ids == ("a1", "17", "2")
    assert data.questions == ("Who won?", "When?", "Capital?")
    assert data.contexts == (BOWL, BOWL, PARIS)
    assert data.answers == ((("Denver Broncos", 29), ("Broncos", 36)), (("2016", 47),),
                            (("Paris", 0),))
    assert load_qa_jsonl(path, id_key=None).ids == ("0", "1", "2")
    unlabelled = load_qa_jsonl(path, answers_key=None)
    assert unlabelled.answers is None and unlabelled.questions == data.questions
    keys = write(tmp_path / "k.jsonl", jsonl({"q": "Capital?", "c": PARIS, "qid": "x"}))
    data = load_qa_jsonl(keys, "q", "c", answers_key=None, id_key="qid")
    assert data.ids == ("x",) and data.answers is None


def record(**changes):
    base = {"id": "q1", "question": "Who won?", "context": BOWL,
            "answers": {"text": ["Denver Broncos"], "answer_start": [BRONCOS]}}
    return {k: v for k, v in {**base, **changes}.items() if v is not ...}


# Each case: records (one a line, after a good first line), error line, message fragments.
JSONL_ERRORS = {
    "start off by one": (
        record(answers={"text": ["Denver Broncos"], "answer_start": [BRONCOS + 1]}),
        ["answers key 'answers'", "answer 'Denver Broncos' at character 30 does not match",
         "holds 'enver Broncos ' there", "occurs at character 29"]),
    "second answer wrong": (
        record(answers=[{"text": "Denver Broncos", "answer_start": BRONCOS},
                        {"text": "Broncos", "answer_start": 0}]),
        ["answer 2 'Broncos' at character 0 does not match", "holds 'Super B' there"]),
    "missing answers key": (record(answers=...),
                            ["no key 'answers' (answers_key; answers_key=None reads questions",
                             "available keys: 'id', 'question', 'context'"]),
    "missing question": (record(question=...), ["no key 'question' (question_key)"]),
    "empty context": (record(context=" "), ["text key 'context' is empty"]),
    "null question": (record(question=None), ["text key 'question' is null"]),
    "no answers": (record(answers={"text": [], "answer_start": []}),
                   ["answers key 'answers' holds no answers", "SQuAD 2.0"]),
    "empty answer list": (record(answers=[]), ["holds no answers"]),
    "length mismatch": (record(answers={"text": ["a", "b"], "answer_start": [0]}),
                        ["2 answer texts but 1 answer_starts"]),
    "answers object without start": (record(answers={"text": ["a"]}),
                                     ["the answers object has no key 'answer_start'"]),
    "answer item without text": (record(answers=[{"answer_start": 0}]),
                                 ["answer 1 has no key 'text'"]),
    "answer item not an object": (record(answers=["Denver"]),
                                  ["answer 1 is a JSON string", '{"text": [...]']),
    "answers a string": (record(answers="Denver Broncos"),
                         ["answers key 'answers' is a JSON string"]),
    "array and scalar": (record(answers={"text": ["a"], "answer_start": 0}),
                         ["must both be arrays or both single values"]),
    "empty answer text": (record(answers={"text": [""], "answer_start": [0]}),
                          ["the text of the answer is empty"]),
    "answer text a number": (record(answers={"text": [50], "answer_start": [11]}),
                             ["must be a string, got a JSON number 50"]),
    "negative start": (record(answers={"text": ["Super"], "answer_start": [-1]}),
                       ["answer_start of the answer must be a character offset", "got -1"]),
    "string start": (record(answers={"text": ["Super"], "answer_start": ["0"]}),
                     ["got '0'"]),
    "bool id": (record(id=True), ["id key 'id' must be a string or an integer", "boolean true"]),
    "empty id": (record(id=""), ["id key 'id' is empty"]),
}


@pytest.mark.parametrize("bad, fragments", JSONL_ERRORS.values(), ids=JSONL_ERRORS)
def test_jsonl_errors(tmp_path, bad, fragments):
    path = write(tmp_path / "d.jsonl", jsonl(record()) + "\n" + jsonl(bad))
    with error_at(ValueError, f"{path}:3: ", *fragments):
        load_qa_jsonl(path)


def test_jsonl_file_errors(tmp_path):
    for content, line, fragment in [("", 1, "the file is empty"),
                                    ("\n \n", 1, "the file is empty"),
                                    (jsonl(record()) + "{oops\n", 2, "invalid JSON"),
                                    ("[1]\n", 1, "expected a JSON object")]:
        path = write(tmp_path / "d.jsonl", content)
        with error_at(ValueError, f"{path}:{line}: ", fragment):
            load_qa_jsonl(path)


# -- CSV ----------------------------------------------------------------------


def test_csv_answers_ids_and_unlabelled(tmp_path):
    path = write(tmp_path / "d.csv",
                 "qid,question,context,answer,answer_start\r\n"
                 f'a1,Who won?,"{BOWL}",Denver Broncos,{BRONCOS}\r\n'
                 "\r\n"
                 f'a2,"Capital, please?","{PARIS}",Paris, 0 \r\n')
    data = load_qa_csv(path, id_column="qid")
    assert data.ids == ("a1", "a2") and data.questions == ("Who won?", "Capital, please?")
    assert data.answers == ((("Denver Broncos", 29),), (("Paris", 0),))
    assert load_qa_csv(path).ids == ("0", "1")
    unlabelled = load_qa_csv(path, answer_column=None)
    assert unlabelled.answers is None and unlabelled.contexts == (BOWL, PARIS)
    tsv = write(tmp_path / "d.tsv", f"q\tc\ta\ts\nCapital?\t{PARIS}\tFrance\t24\n")
    data = load_qa_csv(tsv, "q", "c", "a", "s", delimiter="\t")
    assert data.answers == ((("France", 24),),)


CSV_HEADER = "question,context,answer,answer_start\n"
CSV_ERRORS = {
    "start does not match": (f'Who won?,"{BOWL}",Denver Broncos,28\n', 3,
                             ["answer column 'answer'",
                              "answer 'Denver Broncos' at character 28 does not match",
                              "holds ' Denver Bronco' there", "occurs at character 29"]),
    "start not a number": (f'Who?,"{BOWL}",Denver,x\n', 3,
                           ["answer start column 'answer_start' must be a character offset",
                            "got 'x'"]),
    "negative start": (f'Who?,"{BOWL}",Denver,-3\n', 3, ["got '-3'"]),
    "empty answer": (f'Who?,"{BOWL}", ,0\n', 3, ["answer column 'answer' is empty"]),
    "empty question": (f' ,"{BOWL}",Denver,29\n', 3, ["text column 'question' is empty"]),
    "too few fields": ("Who?,ctx\n", 3, ["2 fields", "header has 4"]),
}


@pytest.mark.parametrize("row, line, fragments", CSV_ERRORS.values(), ids=CSV_ERRORS)
def test_csv_errors(tmp_path, row, line, fragments):
    path = write(tmp_path / "d.csv", CSV_HEADER + f'Capital?,"{PARIS}",Paris,0\n' + row)
    with error_at(ValueError, f"{path}:{line}: ", *fragments):
        load_qa_csv(path)


def test_csv_file_errors(tmp_path):
    path = write(tmp_path / "d.csv", "question,context,answer\nq,c,c\n")
    with error_at(ValueError, f"{path}:1: ", "no column 'answer_start' (answer_start_column)",
                  "'question', 'context', 'answer'"):
        load_qa_csv(path)
    with error_at(ValueError, f"{path}:1: ", "no column 'id' (id_column)"):
        load_qa_csv(path, answer_column=None, id_column="id")
    path = write(tmp_path / "ids.csv", "id,question,context\n ,q,c\n")
    with error_at(ValueError, f"{path}:2: ", "id column 'id' is empty"):
        load_qa_csv(path, answer_column=None, id_column="id")
    for content, fragment in [("", "the file is empty"), (CSV_HEADER, "no data rows")]:
        path = write(tmp_path / "e.csv", content)
        with error_at(ValueError, f"{path}:1: ", fragment):
            load_qa_csv(path)
    with pytest.raises(ValueError, match="`answer_start_column` is needed"):
        load_qa_csv(path, answer_start_column=None)


# -- SQuAD JSON ---------------------------------------------------------------


def squad(*paragraphs, **root):
    return json.dumps({"version": "1.1", "data": [{"title": "T", "paragraphs": list(paragraphs)}],
                       **root})


def test_squad_json(tmp_path):
    path = write(tmp_path / "dev-v1.1.json", json.dumps({"version": "1.1", "data": [
        {"title": "Super_Bowl_50", "paragraphs": [
            {"context": BOWL, "qas": [
                {"id": "56be4db0", "question": "Who won?", "answers": [
                    {"text": "Denver Broncos", "answer_start": BRONCOS},
                    {"text": "Denver Broncos", "answer_start": BRONCOS},
                    {"text": "Broncos", "answer_start": 36}]},
                {"id": "56be4db1", "question": "When?",
                 "answers": [{"text": "2016", "answer_start": 47}]}]}]},
        {"title": "Paris", "paragraphs": [
            {"context": PARIS, "qas": []},
            {"context": PARIS, "qas": [
                {"id": "5733be28", "question": "Capital?",
                 "answers": [{"text": "Paris", "answer_start": 0}]}]}]},
    ]}))
    data = load_squad_json(path)
    assert data.ids == ("56be4db0", "56be4db1", "5733be28")
    assert data.questions == ("Who won?", "When?", "Capital?")
    assert data.contexts == (BOWL, BOWL, PARIS)
    assert data.answers[0] == (("Denver Broncos", 29), ("Denver Broncos", 29), ("Broncos", 36))
    assert data.answers[2] == (("Paris", 0),)
    test_set = write(tmp_path / "test.json", squad(
        {"context": PARIS, "qas": [{"id": "t1", "question": "Capital?"}]}))
    unanswered = load_squad_json(test_set)
    assert unanswered.answers is None and unanswered.ids == ("t1",)


def qa(**changes):
    base = {"id": "q9", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]}
    return {k: v for k, v in {**base, **changes}.items() if v is not ...}


# Each case: the JSON text, message fragments after "path: ".
SQUAD_ERRORS = {
    "start does not match": (
        squad({"context": PARIS, "qas": [qa(answers=[{"text": "Paris", "answer_start": 0},
                                                     {"text": "France", "answer_start": 23}])]}),
        ["question 'q9' (data[0].paragraphs[0].qas[0]): answer 2 'France' at character 23 does "
         "not match the context, which holds ' Franc' there; the text occurs at character 24."]),
    "unanswerable": (squad({"context": PARIS, "qas": [qa(answers=[], is_impossible=True)]}),
                     ["question 'q9'", "unanswerable", "is_impossible"]),
    "empty answers": (squad({"context": PARIS, "qas": [qa(answers=[])]}),
                      ["question 'q9'", '"answers" is empty']),
    "some without answers": (
        squad({"context": PARIS, "qas": [qa(), qa(id="q10", answers=...)]}),
        ["question 'q10' (data[0].paragraphs[0].qas[1]): no key 'answers'",
         "e.g. question 'q9'"]),
    "answer without start": (squad({"context": PARIS, "qas": [qa(answers=[{"text": "Paris"}])]}),
                             ["question 'q9'", "answer 1: no key 'answer_start'"]),
    "missing question": (squad({"context": PARIS, "qas": [qa(question=...)]}),
                         ["question 'q9' (data[0].paragraphs[0].qas[0]): no key 'question'"]),
    "missing id": (squad({"context": PARIS, "qas": [qa(), qa(id=...)]}),
                   ["data[0].paragraphs[0].qas[1]: no key 'id'; available keys: 'question'"]),
    "answers not an array": (squad({"context": PARIS, "qas": [qa(answers={"text": "Paris"})]}),
                             ["question 'q9'",
                              "'answers' must be a JSON array, got a JSON object"]),
    "missing context": (squad({"qas": []}), ["data[0].paragraphs[0]: no key 'context'"]),
    "no data": (json.dumps({"version": "1.1"}), ["no key 'data'"]),
    "not an object": ("[]", ["expected a JSON object, got a JSON array"]),
    "no questions": (squad({"context": PARIS, "qas": []}), ["no questions"]),
}


@pytest.mark.parametrize("content, fragments", SQUAD_ERRORS.values(), ids=SQUAD_ERRORS)
def test_squad_errors(tmp_path, content, fragments):
    path = write(tmp_path / "train.json", content)
    with error_at(ValueError, f"{path}: ", *fragments):
        load_squad_json(path)


def test_squad_file_errors(tmp_path):
    path = write(tmp_path / "bad.json", '{"data": [\n  {"paragraphs": }\n]}')
    with error_at(ValueError, f"{path}:2: ", "invalid JSON at column 18"):
        load_squad_json(path)
    path = write(tmp_path / "empty.json", " \n")
    with error_at(ValueError, f"{path}:1: ", "the file is empty"):
        load_squad_json(path)


# -- every loader -------------------------------------------------------------


def test_missing_files(tmp_path):
    for load in (load_qa_jsonl, load_qa_csv, load_squad_json):
        with pytest.raises(FileNotFoundError) as info:
            load(tmp_path / "nope.data")
        assert str(tmp_path / "nope.data") in str(info.value)
