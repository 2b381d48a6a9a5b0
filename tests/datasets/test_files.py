"""Users' files: LabeledTexts, plain-text documents, CSV and JSON Lines, and their errors."""

import contextlib
import dataclasses

import numpy as np
import pytest

from keras_bert_kit.datasets import LabeledTexts, load_csv, load_jsonl, load_text_documents


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """No Keras here: skip the conftest's per-test Keras reset (0.2 s a test)."""
    yield


def write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@contextlib.contextmanager
def error_at(error_type, path, line, *fragments):
    """Expects error_type with a message that starts with `path:line: ` and has the fragments."""
    with pytest.raises(error_type) as info:
        yield info
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# -- LabeledTexts -------------------------------------------------------------


def test_labeled_texts_stores_tuples_and_subsets():
    data = LabeledTexts(["a", "b", "c"], [0, 2, 1], ["x", "y", "z"], text_pairs=["A", "B", "C"])
    assert data.texts == ("a", "b", "c") and data.labels == (0, 2, 1) and len(data) == 3
    part = data.subset(np.array([2, 0, 2]))
    assert part == LabeledTexts(("c", "a", "c"), (1, 0, 1), ("x", "y", "z"), ("C", "A", "C"))
    assert data.subset([]).texts == () and data.subset([-1]).labels == (1,)
    unlabelled = LabeledTexts(["only"])
    assert unlabelled.subset([0]) == unlabelled and unlabelled.labels is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.texts = ("changed",)
    with pytest.raises(TypeError, match="boolean mask"):
        data.subset([True, False, True])


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(texts=["a", "b"], labels=[0], label_names=["x"]), ValueError, "2 texts but 1 labels"),
    (dict(texts=["a"], text_pairs=["p", "q"]), ValueError, "1 texts but 2 text_pairs"),
    (dict(texts=["a", "b"], labels=[0, 2], label_names=["x", "y"]), ValueError, "labels[1]` is 2"),
    (dict(texts=["a"], labels=[-1], label_names=["x"]), ValueError, "outside [0, 1)"),
    (dict(texts=["a"], labels=[0]), ValueError, "give both or neither"),
    (dict(texts=["a"], labels=[0], label_names=["x", "x"]), ValueError, "duplicates"),
    (dict(texts=["a"], labels=[0.0], label_names=["x"]), TypeError, "must be an int"),
    (dict(texts=["a"], labels=[True], label_names=["x", "y"]), TypeError, "is a bool"),
    (dict(texts="abc"), TypeError, "not a single string"),
    (dict(texts=["a", 3]), TypeError, "texts[1]` must be a str"),
])
def test_labeled_texts_validation(kwargs, error, message):
    with pytest.raises(error) as info:
        LabeledTexts(**kwargs)
    assert message in str(info.value)


# -- plain-text documents -----------------------------------------------------


def test_text_documents_split_on_blank_lines(tmp_path):
    path = write(tmp_path / "docs.txt",
                 b"\xef\xbb\xbfFirst line.\r\n  Second line.  \r\n\r\n \t \n\n"
                 b"Next document.\n\n\n\nLast one, no newline")
    assert load_text_documents(path) == [
        "First line.\nSecond line.", "Next document.", "Last one, no newline"]
    assert load_text_documents(str(path)) == load_text_documents(path)


def test_text_documents_from_folders_and_lists(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write(folder / "b.txt", "Two.\n\nThree.\n")
    write(folder / "a.txt", "One.\nStill one.")  # no blank line at the end: still ends here
    write(folder / "notes.md", "not a .txt file")
    write(folder / ".DS_Store", b"\xff\xfe")
    (folder / "sub.txt").mkdir()
    assert load_text_documents(folder) == ["One.\nStill one.", "Two.", "Three."]
    extra = write(tmp_path / "extra.txt", "Four.")
    assert load_text_documents([extra, folder]) == ["Four.", "One.\nStill one.", "Two.", "Three."]


def test_text_documents_errors(tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError) as info:
        load_text_documents([write(tmp_path / "ok.txt", "x"), missing])
    assert str(missing) in str(info.value)
    bad = write(tmp_path / "bad.txt", b"fine\n\nstill fine\ncaf\xe9\n")
    with error_at(ValueError, bad, 4, "not valid UTF-8"):
        load_text_documents(bad)
    blank = write(tmp_path / "blank.txt", "\n  \n\t\n")
    with pytest.raises(ValueError, match="no documents"):
        load_text_documents(blank)
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    with pytest.raises(ValueError, match="no .txt files"):
        load_text_documents(empty_folder)
    with pytest.raises(ValueError, match="No paths"):
        load_text_documents([])


# -- CSV ----------------------------------------------------------------------


def test_csv_quoted_fields_pairs_and_named_labels(tmp_path):
    path = write(tmp_path / "d.csv",
                 'id,text,pair,label\n'
                 '1,"Commas, inside","Line one\nline two",pos\n'
                 '2,"He said ""hi""",plain, neg \n'
                 '\n'
                 '   \n'
                 '3,last,pair three,pos\n')
    data = load_csv(path, "text", label_column="label", text_pair_column="pair")
    assert data.texts == ("Commas, inside", 'He said "hi"', "last")
    assert data.text_pairs == ("Line one\nline two", "plain", "pair three")
    assert data.label_names == ("neg", "pos") and data.labels == (1, 0, 1)
    ordered = load_csv(path, "text", "label", label_names=("pos", "neg"))
    assert ordered.labels == (0, 1, 0) and ordered.text_pairs is None
    unlabelled = load_csv(path, "pair")
    assert unlabelled.labels is None and unlabelled.label_names is None and len(unlabelled) == 3


def test_csv_integer_labels_bom_crlf_and_tsv(tmp_path):
    path = write(tmp_path / "d.tsv", b"\xef\xbb\xbftext\tlabel\r\nzero\t0\r\nthree\t3\r\n")
    data = load_csv(path, "text", "label", delimiter="\t")
    assert data.labels == (0, 3) and data.label_names == ("0", "1", "2", "3")
    named = load_csv(path, "text", "label", label_names=["a", "b", "c", "d"], delimiter="\t")
    assert named.labels == (0, 3) and named.label_names == ("a", "b", "c", "d")
    # A name that looks like a number is matched as a name first.
    digits_as_names = load_csv(path, "text", "label", label_names=["3", "0"], delimiter="\t")
    assert digits_as_names.labels == (1, 0)
    # Unnamed trailing columns, as spreadsheets export them, are not duplicates that matter.
    trailing = write(tmp_path / "trailing.csv", "text,label,,\na,x,,\nb,y,,\n")
    assert load_csv(trailing, "text", "label").labels == (0, 1)
    mixed = write(tmp_path / "mixed.csv", "text,label\na,1\nb,pos\n")
    assert load_csv(mixed, "text", "label").label_names == ("1", "pos")


# Each case: file content, load_csv keyword arguments, error line, message fragments.
CSV_ERRORS = {
    "missing column": ("txt,label\na,1\n", {}, 1, ["no column 'text'", "'txt', 'label'"]),
    "missing pair column": ("text,label\na,1\n", {"text_pair_column": "b"}, 1,
                            ["no column 'b'", "text_pair_column"]),
    "too few fields": ("text,label\na,1\nb\n", {}, 3, ["1 fields", "header has 2"]),
    "too many fields": ("text,label\na,1\nb,c,1\n", {}, 3, ["3 fields"]),
    "line count after a multi-line quote": ('text,label\n"a\nb\nc",1\nd\n', {}, 5, ["1 fields"]),
    "empty text": ("text,label\na,1\n  ,0\n", {}, 3, ["text column 'text' is empty"]),
    "empty label": ("text,label\na,\n", {}, 2, ["label column 'label' is empty"]),
    "unknown label": ("text,label\na,no\nb,maybe\n", {"label_names": ["no", "yes"]}, 3,
                      ["unknown label 'maybe'", "['no', 'yes']"]),
    "label out of range": ("text,label\na,1\nb,2\n", {"label_names": ["no", "yes"]}, 3,
                           ["label '2' is out of range", "column 'label'"]),
    "negative label": ("text,label\na,1\nb,-1\n", {}, 3, ["'-1' is negative"]),
    "huge id": ("text,label\na,1\nb,40213\n", {}, 3, ["too large"]),
    "unclosed quote": ('text,label\na,1\n"b,1\nc,0\n', {}, 3, ["malformed CSV"]),
    "duplicate column": ("text,label,text\na,1,b\n", {}, 1, ["column 'text' more than once"]),
    "empty file": ("", {}, 1, ["the file is empty"]),
    "blank file": ("\n \n", {}, 1, ["the file is empty"]),
    "header only": ("text,label\n\n", {}, 1, ["no data rows"]),
    "bad utf-8": (b"text,label\na,1\ncaf\xe9,0\n", {}, 3, ["not valid UTF-8", "\\xe9"]),
}


@pytest.mark.parametrize("content, kwargs, line, fragments", CSV_ERRORS.values(), ids=CSV_ERRORS)
def test_csv_errors(tmp_path, content, kwargs, line, fragments):
    path = write(tmp_path / "d.csv", content)
    with error_at(ValueError, path, line, *fragments):
        load_csv(path, "text", "label", **kwargs)


def test_missing_files(tmp_path):
    loaders = (lambda p: load_csv(p, "text"), lambda p: load_jsonl(p, "text"), load_text_documents)
    for load in loaders:
        with pytest.raises(FileNotFoundError) as info:
            load(tmp_path / "nope.data")
        assert str(tmp_path / "nope.data") in str(info.value)


def test_bad_arguments(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,1\n")
    with pytest.raises(ValueError, match="without a label column"):
        load_csv(path, "text", label_names=["a", "b"])
    with pytest.raises(TypeError, match="not a string"):
        load_csv(path, "text", "label", label_names="a,b")
    with pytest.raises(ValueError, match="duplicates"):
        load_jsonl(path, "text", "label", label_names=["a", "a"])


# -- JSON Lines ---------------------------------------------------------------


def test_jsonl_labels_pairs_and_blank_lines(tmp_path):
    path = write(tmp_path / "d.jsonl",
                 '{"text": "first", "pair": "p1", "label": 2, "extra": [1, 2]}\n'
                 "\n"
                 '   \n'
                 '{"text": "second\u2028with a raw line separator", "pair": "p2", "label": 0.0}\r\n'
                 '{"label": 1, "pair": "p3", "text": "third"}')
    data = load_jsonl(path, "text", "label", text_pair_key="pair")
    assert data.texts == ("first", "second\u2028with a raw line separator", "third")
    assert data.text_pairs == ("p1", "p2", "p3")
    assert data.labels == (2, 0, 1) and data.label_names == ("0", "1", "2")
    named = load_jsonl(path, "text", "label", label_names=["a", "b", "c"])
    assert named.labels == (2, 0, 1) and named.label_names == ("a", "b", "c")
    strings = write(tmp_path / "s.jsonl", '{"t": "x", "y": "pos"}\n{"t": "y", "y": " neg"}\n')
    data = load_jsonl(strings, "t", "y")
    assert data.label_names == ("neg", "pos") and data.labels == (1, 0)
    assert load_jsonl(strings, "t").labels is None


JSONL_ERRORS = {
    "invalid json": ('{"t": "a", "y": 0}\n\n{"t": "b", "y": \n', {}, 3, ["invalid JSON"]),
    "array line": ('{"t": "a", "y": 0}\n["b", 1]\n', {}, 2, ["expected a JSON object", "array"]),
    "string line": ('"just text"\n', {}, 1, ["expected a JSON object", "string"]),
    "missing key": ('{"t": "a", "y": 0}\n{"text": "b", "y": 1}\n', {}, 2,
                    ["no key 't'", "available keys: 'text', 'y'"]),
    "null text": ('{"t": null, "y": 0}\n', {}, 1, ["text key 't' is null"]),
    "number text": ('{"t": 12, "y": 0}\n', {}, 1, ["must be a string", "int 12"]),
    "empty text": ('{"t": " ", "y": 0}\n', {}, 1, ["text key 't' is empty"]),
    "empty pair": ('{"t": "a", "p": "", "y": 0}\n', {"text_pair_key": "p"}, 1,
                   ["text key 'p' is empty"]),
    "null label": ('{"t": "a", "y": 0}\n{"t": "b", "y": null}\n', {}, 2, ["label key 'y' is null"]),
    "bool label": ('{"t": "a", "y": true}\n', {}, 1, ["is true", "not booleans"]),
    "fractional label": ('{"t": "a", "y": 0.5}\n', {}, 1, ["got 0.5"]),
    "number among names": ('{"t": "a", "y": "pos"}\n{"t": "b", "y": 1}\n', {}, 2,
                           ["is a number", "'pos'"]),
    "out of range": ('{"t": "a", "y": 0}\n{"t": "b", "y": 5}\n', {"label_names": ["a", "b"]}, 2,
                     ["label 5 is out of range"]),
    "unknown name": ('{"t": "a", "y": "c"}\n', {"label_names": ["a", "b"]}, 1,
                     ["unknown label 'c'"]),
    "empty file": ("", {}, 1, ["the file is empty"]),
    "blank lines only": ("\n\n  \n", {}, 1, ["the file is empty"]),
    "bad utf-8": (b'{"t": "a", "y": 0}\n{"t": "\xff", "y": 0}\n', {}, 2, ["not valid UTF-8"]),
}


@pytest.mark.parametrize(
    "content, kwargs, line, fragments", JSONL_ERRORS.values(), ids=JSONL_ERRORS)
def test_jsonl_errors(tmp_path, content, kwargs, line, fragments):
    path = write(tmp_path / "d.jsonl", content)
    with error_at(ValueError, path, line, *fragments):
        load_jsonl(path, "t", "y", **kwargs)


def test_error_line_numbers_survive_a_bom_and_crlf(tmp_path):
    content = b'\xef\xbb\xbf{"t": "a", "y": 0}\r\n\r\n{"t": "", "y": 0}\r\n'
    path = write(tmp_path / "d.jsonl", content)
    with error_at(ValueError, path, 3, "is empty"):
        load_jsonl(path, "t", "y")
