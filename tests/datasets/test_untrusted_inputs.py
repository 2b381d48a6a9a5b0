"""Crafted data files: deep nesting, integers past Python's digit limit, NaN (issue 17,
items 5 and 12). Each must end in the loaders' usual `path:line:` ValueError, short,
never RecursionError or Python's int-limit message.
"""

import json

import pytest

from keras_bert_kit.datasets import (
    load_csv,
    load_jsonl,
    load_qa_csv,
    load_qa_jsonl,
    load_squad_json,
    load_tagged_csv,
    load_tagged_jsonl,
)

NESTED = "[" * 100_000 + "]" * 100_000
DIGITS = "7" * 5000
GOOD = '{"text": "fine", "label": 1}\n'


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """No Keras here: skip the conftest's per-test Keras reset."""
    yield


def _error(load, path, *args, **kwargs):
    with pytest.raises(ValueError) as raised:
        load(str(path), *args, **kwargs)
    message = str(raised.value)
    assert "sys.set_int_max_str_digits" not in message and len(message) < 400, message
    return message


@pytest.mark.parametrize("record, fragment", [
    ('{"text": "x", "label": ' + NESTED + "}", "nested too deeply"),
    (NESTED, "nested too deeply"),
    ('{"text": "x", "label": ' + DIGITS + "}", "the value of 'label' at column 24 has more"),
    ('{"text": "x", "label": NaN}', "the value of 'label' at column 24 is NaN"),
    ('{"text": "x", "label": 1e999}', "the value of 'label' at column 24 is NaN or infinite"),
])
def test_jsonl_records_that_python_cannot_decode(tmp_path, record, fragment):
    path = tmp_path / "data.jsonl"
    path.write_text(GOOD + record + "\n")
    message = _error(load_jsonl, path, "text", "label")
    assert message.startswith(f"{path}:2: ") and fragment in message, message


@pytest.mark.parametrize("load, args", [
    (load_qa_jsonl, ()),
    (load_tagged_jsonl, ()),
])
def test_other_jsonl_loaders_refuse_deep_nesting_by_line(tmp_path, load, args):
    path = tmp_path / "data.jsonl"
    path.write_text('{"question": ' + NESTED + "}\n")
    message = _error(load, path, *args)
    assert message.startswith(f"{path}:1: JSON nested too deeply"), message


@pytest.mark.parametrize("label, fragment", [
    (DIGITS, "is too large to be a class id"),
    ("-" + DIGITS, "is negative"),
    ("000" + "1" * 30, "is too large to be a class id"),
])
def test_csv_label_of_many_digits_is_a_range_error_at_its_line(tmp_path, label, fragment):
    path = tmp_path / "data.csv"
    path.write_text(f"text,label\nfine,1\nodd,{label}\n")
    message = _error(load_csv, path, "text", "label")
    assert message.startswith(f"{path}:3: label column 'label': label '") and fragment in message
    with_names = _error(load_csv, path, "text", "label", label_names=["a", "b"])
    assert with_names.startswith(f"{path}:3: ") and "out of range" in with_names


def test_jsonl_label_of_many_digits_as_a_string(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(GOOD + json.dumps({"text": "odd", "label": DIGITS}) + "\n")
    message = _error(load_jsonl, path, "text", "label")
    assert message.startswith(f"{path}:2: ") and "too large to be a class id" in message


def test_tag_of_many_digits_is_out_of_range(tmp_path):
    path = tmp_path / "tags.csv"
    path.write_text(f"tokens,tags\nBerlin,{DIGITS}\n")
    message = _error(load_tagged_csv, path, tag_names=["O", "B-LOC"])
    assert message.startswith(f"{path}:2: ") and "out of range" in message


def test_qa_csv_answer_start_of_many_digits(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text(f"question,context,answer,answer_start\nWhere?,In Paris.,Paris,{DIGITS}\n")
    message = _error(load_qa_csv, path)
    assert message.startswith(f"{path}:2: answer start column 'answer_start'"), message


@pytest.mark.parametrize("document, fragment", [
    ('{"data": ' + NESTED + "}", ": JSON nested too deeply"),
    ('{"version": 1, "data": [' + DIGITS + "]}", ":1: a number at column 25 has more than"),
    ('{"version": NaN, "data": []}', ":1: the value of 'version' at column 13 is NaN"),
])
def test_squad_json_that_python_cannot_decode(tmp_path, document, fragment):
    path = tmp_path / "squad.json"
    path.write_text(document)
    message = _error(load_squad_json, path)
    assert message.startswith(f"{path}{fragment}"), message


def test_finetune_reports_a_label_of_many_digits_by_file_and_line(tmp_path, capsys):
    from training import finetune

    data = tmp_path / "train.csv"
    data.write_text(f"text,label\nfine,1\nodd,{DIGITS}\n")
    code = finetune.main(["--task", "classify", "--data", str(data), "--init", "bert_tiny",
                          "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and f"{data}:3: " in error and "int_max_str_digits" not in error
    assert len(error.splitlines()) == 1 and len(error) < 400, error
