"""TaggedSentences and its loaders (JSON Lines, CSV, CoNLL), and their errors."""

import contextlib
import dataclasses

import numpy as np
import pytest

from keras_bert_kit.datasets import (
    TaggedSentences,
    load_conll,
    load_tagged_csv,
    load_tagged_jsonl,
)


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


NAMES = ["O", "B-PER", "I-PER", "B-LOC"]


# -- TaggedSentences ----------------------------------------------------------


def test_tagged_sentences_store_tuples_and_subset():
    data = TaggedSentences([["John", "Smith"], ["in", "Paris"]], [[1, 2], np.array([0, 3])], NAMES)
    assert data.words == (("John", "Smith"), ("in", "Paris"))
    assert data.tags == ((1, 2), (0, 3)) and type(data.tags[1][0]) is int
    assert data.tag_names == tuple(NAMES) and len(data) == 2
    part = data.subset(np.array([1, 1, 0]))
    assert part == TaggedSentences(
        (("in", "Paris"), ("in", "Paris"), ("John", "Smith")), ((0, 3), (0, 3), (1, 2)), NAMES)
    assert data.subset([]).words == () and data.subset([-1]).tags == ((0, 3),)
    untagged = TaggedSentences([["only"]])
    assert untagged.subset([0]) == untagged and untagged.tags is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.words = ()
    with pytest.raises(TypeError, match="boolean mask"):
        data.subset([True, False])


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(words=[[]]), ValueError, "`words[0]` is empty"),
    (dict(words=[["a", " "]]), ValueError, "`words[0][1]` is empty or whitespace"),
    (dict(words=[["a", 3]]), TypeError, "`words[0][1]` must be a str"),
    (dict(words="abc"), TypeError, "not a single string"),
    (dict(words=["abc"]), TypeError, "`words[0]` must be a sequence, not a single string"),
    (dict(words=[["a"]], tags=[[0]]), ValueError, "give both or neither"),
    (dict(words=[["a"]], tag_names=["O"]), ValueError, "give both or neither"),
    (dict(words=[["a"], ["b"]], tags=[[0]], tag_names=["O"]), ValueError,
     "2 sentences but 1 tags"),
    (dict(words=[["a", "b"]], tags=[[0]], tag_names=["O"]), ValueError,
     "`words[0]` has 2 words but `tags[0]` has 1 tags"),
    (dict(words=[["a"]], tags=[[1]], tag_names=["O"]), ValueError,
     "`tags[0][0]` is 1, outside [0, 1)"),
    (dict(words=[["a"]], tags=[[True]], tag_names=["O", "X"]), TypeError, "is a bool"),
    (dict(words=[["a"]], tags=[[0.0]], tag_names=["O"]), TypeError, "must be an int"),
    (dict(words=[["a"]], tags=[[0]], tag_names=[]), ValueError, "`tag_names` is empty"),
    (dict(words=[["a"]], tags=[[0]], tag_names=["O", "O"]), ValueError, "duplicates"),
    (dict(words=[["a"]], tags=[[0]], tag_names=["O", ""]), ValueError, "`tag_names[1]` is empty"),
])
def test_tagged_sentences_validation(kwargs, error, message):
    with pytest.raises(error) as info:
        TaggedSentences(**kwargs)
    assert message in str(info.value)


# -- JSON Lines ---------------------------------------------------------------


def test_jsonl_string_tags_get_sorted_names_with_o_first(tmp_path):
    path = write(tmp_path / "d.jsonl",
                 '{"tokens": ["John", "lives", "in", "Paris"], '
                 '"tags": ["B-PER", "O", "O", "B-LOC"], "id": 7}\n'
                 "\n"
                 '{"tokens": ["Anne", "Marie"], "tags": ["B-PER", " I-PER "]}\n')
    data = load_tagged_jsonl(path)
    assert data.words == (("John", "lives", "in", "Paris"), ("Anne", "Marie"))
    assert data.tag_names == ("O", "B-LOC", "B-PER", "I-PER")
    assert data.tags == ((2, 0, 0, 1), (2, 3))
    without_o = write(tmp_path / "no_o.jsonl", '{"tokens": ["a", "b"], "tags": ["Y", "X"]}\n')
    assert load_tagged_jsonl(without_o).tag_names == ("X", "Y")
    untagged = load_tagged_jsonl(path, tags_key=None)
    assert untagged.tags is None and untagged.tag_names is None and untagged.words == data.words


def test_jsonl_integer_tags_with_names(tmp_path):
    # As the Hugging Face conll2003 data set stores them, under its own keys.
    path = write(tmp_path / "d.jsonl",
                 '{"words": ["John", "Smith"], "ner_tags": [1, 2]}\n'
                 '{"words": ["Paris"], "ner_tags": [3.0]}\n')
    data = load_tagged_jsonl(path, "words", "ner_tags", tag_names=NAMES)
    assert data.tags == ((1, 2), (3,)) and data.tag_names == tuple(NAMES)
    mixed = write(tmp_path / "mixed.jsonl",
                  '{"tokens": ["a", "b", "c"], "tags": ["B-LOC", 0, "2"]}\n')
    assert load_tagged_jsonl(mixed, tag_names=NAMES).tags == ((3, 0, 2),)


# Each case: file content, keyword arguments, error line, message fragments.
JSONL_ERRORS = {
    "integer tags without names": ('{"tokens": ["a"], "tags": ["O"]}\n'
                                   '{"tokens": ["b"], "tags": [1]}\n', {}, 2,
                                   ["tags key 'tags'", "tag 1 at word 1 ('b')", "pass tag_names"]),
    "digit tags without names": ('{"tokens": ["a"], "tags": ["3"]}\n', {}, 1,
                                 ["integer id", "pass tag_names"]),
    "unknown tag": ('{"tokens": ["a"], "tags": ["O"]}\n'
                    '{"tokens": ["x", "y"], "tags": ["O", "B-ORG"]}\n', {"tag_names": NAMES}, 2,
                    ["tags key 'tags'", "unknown tag 'B-ORG' at word 2 ('y')",
                     "tag_names are ['O', 'B-PER', 'I-PER', 'B-LOC']"]),
    "id out of range": ('{"tokens": ["a", "b"], "tags": [0, 4]}\n', {"tag_names": NAMES}, 1,
                        ["tags key 'tags'", "tag 4 at word 2 ('b') is out of range",
                         "ids 0..3"]),
    "negative id": ('{"tokens": ["a"], "tags": [-1]}\n', {"tag_names": NAMES}, 1,
                    ["tag -1", "out of range"]),
    "fractional id": ('{"tokens": ["a"], "tags": [0.5]}\n', {"tag_names": NAMES}, 1,
                      ["must be a tag name or an integer id, got 0.5"]),
    "null tag": ('{"tokens": ["a"], "tags": [null]}\n', {}, 1,
                 ["the tag at word 1 ('a') must be a tag name", "JSON null null"]),
    "bool tag": ('{"tokens": ["a"], "tags": [true]}\n', {"tag_names": NAMES}, 1,
                 ["JSON boolean true"]),
    "empty tag": ('{"tokens": ["a"], "tags": [" "]}\n', {}, 1,
                  ["the tag at word 1 ('a') is empty"]),
    "count mismatch": ('{"tokens": ["a", "b", "c"], "tags": ["O", "O"]}\n', {}, 1,
                       ["3 words (key 'tokens') but 2 tags (key 'tags')"]),
    "tags not an array": ('{"tokens": ["a"], "tags": "O"}\n', {}, 1,
                          ["tags key 'tags' must be a JSON array", 'JSON string "O"']),
    "words not an array": ('{"tokens": "John Smith", "tags": ["O"]}\n', {}, 1,
                           ["words key 'tokens' must be a JSON array of strings",
                            'JSON string "John Smith"']),
    "no words": ('{"tokens": [], "tags": []}\n', {}, 1, ["words key 'tokens' is an empty array"]),
    "number word": ('{"tokens": ["a", 5], "tags": ["O", "O"]}\n', {}, 1,
                    ["words key 'tokens': word 2 must be a string", "JSON number 5"]),
    "blank word": ('{"tokens": ["a", "  "], "tags": ["O", "O"]}\n', {}, 1,
                   ["words key 'tokens': word 2 is empty or whitespace"]),
    "missing words key": ('{"tokens": ["a"], "tags": ["O"]}\n{"words": ["b"], "tags": ["O"]}\n', {},
                          2, ["no key 'tokens' (words_key)", "available keys: 'words', 'tags'"]),
    "missing tags key": ('{"tokens": ["a"]}\n', {}, 1, ["no key 'tags' (tags_key)"]),
    "invalid json": ('{"tokens": ["a"], "tags": ["O"]}\n{"tokens": [\n', {}, 2, ["invalid JSON"]),
    "not an object": ('[["a"], ["O"]]\n', {}, 1, ["expected a JSON object", "array"]),
    "empty file": ("", {}, 1, ["the file is empty"]),
    "blank file": ("\n  \n", {}, 1, ["the file is empty"]),
}


@pytest.mark.parametrize(
    "content, kwargs, line, fragments", JSONL_ERRORS.values(), ids=JSONL_ERRORS)
def test_jsonl_errors(tmp_path, content, kwargs, line, fragments):
    path = write(tmp_path / "d.jsonl", content)
    with error_at(ValueError, path, line, *fragments):
        load_tagged_jsonl(path, **kwargs)


# -- CSV ----------------------------------------------------------------------


def test_csv_tags_and_untagged(tmp_path):
    path = write(tmp_path / "d.csv",
                 b"\xef\xbb\xbfid,tokens,tags\r\n"
                 b"1,John  Smith lives,B-PER I-PER O\r\n"
                 b"\r\n"
                 b'2,"in\tParis",O  B-LOC\r\n')
    data = load_tagged_csv(path)
    assert data.words == (("John", "Smith", "lives"), ("in", "Paris"))
    assert data.tag_names == ("O", "B-LOC", "B-PER", "I-PER")
    assert data.tags == ((2, 3, 0), (0, 1))
    named = load_tagged_csv(path, tag_names=NAMES)
    assert named.tags == ((1, 2, 0), (0, 3)) and named.tag_names == tuple(NAMES)
    untagged = load_tagged_csv(path, tags_column=None)
    assert untagged.tags is None and untagged.words == data.words
    tsv = write(tmp_path / "d.tsv", "words\tlabels\nJohn Smith\t1 2\n")
    data = load_tagged_csv(tsv, "words", "labels", tag_names=NAMES, delimiter="\t")
    assert data.words == (("John", "Smith"),) and data.tags == ((1, 2),)


CSV_ERRORS = {
    "count mismatch": ("tokens,tags\na b,O O\nc d e,O O\n", {}, 3,
                       ["3 words in column 'tokens' but 2 tags in column 'tags'"]),
    "unknown tag": ("tokens,tags\nJohn Smith,B-PER I-ORG\n", {"tag_names": NAMES}, 2,
                    ["tags column 'tags'", "unknown tag 'I-ORG' at word 2 ('Smith')",
                     "tag_names are ['O', 'B-PER', 'I-PER', 'B-LOC']"]),
    "id out of range": ("tokens,tags\na,7\n", {"tag_names": NAMES}, 2,
                        ["tags column 'tags'", "tag '7' at word 1 ('a') is out of range"]),
    "integer tags without names": ("tokens,tags\na b,0 1\n", {}, 2,
                                   ["tags column 'tags'", "pass tag_names",
                                    "tag '0' at word 1 ('a') is an integer id"]),
    "empty words": ("tokens,tags\na,O\n  ,O\n", {}, 3, ["words column 'tokens' is empty"]),
    "empty tags": ("tokens,tags\na,O\nb,\n", {}, 3, ["tags column 'tags' is empty"]),
    "missing column": ("words,tags\na,O\n", {}, 1,
                       ["no column 'tokens' (words_column)", "'words', 'tags'"]),
    "missing tags column": ("tokens,labels\na,O\n", {}, 1, ["no column 'tags' (tags_column)"]),
    "too few fields": ("tokens,tags\na,O\nb\n", {}, 3, ["1 fields", "header has 2"]),
    "unclosed quote": ('tokens,tags\n"a,O\n', {}, 2, ["malformed CSV"]),
    "empty file": ("", {}, 1, ["the file is empty"]),
    "header only": ("tokens,tags\n", {}, 1, ["no data rows"]),
}


@pytest.mark.parametrize("content, kwargs, line, fragments", CSV_ERRORS.values(), ids=CSV_ERRORS)
def test_csv_errors(tmp_path, content, kwargs, line, fragments):
    path = write(tmp_path / "d.csv", content)
    with error_at(ValueError, path, line, *fragments):
        load_tagged_csv(path, **kwargs)


# -- CoNLL --------------------------------------------------------------------


CONLL = """\
-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

  \t
Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
-DOCSTART- -X- -X- O
BRUSSELS NNP B-NP B-LOC

"""


def test_conll_skips_docstart_and_splits_on_blank_lines(tmp_path):
    path = write(tmp_path / "train.txt", CONLL)
    data = load_conll(path)
    assert data.words == (("EU", "rejects", "German"), ("Peter", "Blackburn"), ("BRUSSELS",))
    assert data.tag_names == ("O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER")
    assert data.tags == ((3, 0, 2), (4, 5), (1,))
    chunks = load_conll(path, tag_column=2)
    assert chunks.tag_names == ("B-NP", "B-VP", "I-NP") and chunks.tags[1] == (0, 2)
    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    named = load_conll(path, tag_names=names)
    assert named.tags == ((3, 0, 7), (1, 2), (5,)) and named.tag_names == tuple(names)
    untagged = load_conll(path, tag_column=None)
    assert untagged.tags is None and untagged.words == data.words
    no_final_newline = write(tmp_path / "short.txt", "a O\r\nb B-X")
    assert load_conll(no_final_newline).words == (("a", "b"),)


CONLL_ERRORS = {
    "unknown tag": ("EU O\n\nPeter B-PER\nBlackburn I-PER\n", {"tag_names": ["O", "B-PER"]}, 4,
                    ["tag column -1", "unknown tag 'I-PER' for word 'Blackburn'",
                     "tag_names are ['O', 'B-PER']"]),
    "id out of range": ("a 0\nb 5\n", {"tag_names": ["O", "X"]}, 2, ["tag '5'", "out of range"]),
    "integer tags without names": ("a 0\n", {}, 1, ["integer id", "pass tag_names"]),
    "short line": ("EU NNP B-ORG\n\nrejects VBZ O\nGerman\n", {}, 4,
                   ["1 column in 'German', but line 1 has 3;", "the same columns"]),
    "word only": ("EU\nrejects\n", {}, 1, ["word_column 0 and tag_column -1 are the same column"]),
    "word column out of range": ("EU NNP B-ORG\n", {"word_column": 3}, 1,
                                 ["3 columns, so there is no word_column 3"]),
    "tag column out of range": ("-DOCSTART- O\n\nEU B-ORG\n", {"tag_column": -3}, 3,
                                ["2 columns, so there is no tag_column -3"]),
    "empty file": ("", {}, 1, ["no sentences"]),
    "only docstart": ("-DOCSTART- -X- O\n\n\n", {}, 1, ["no sentences", "-DOCSTART-"]),
    "bad utf-8": (b"a O\n\nb\xff O\n", {}, 3, ["not valid UTF-8"]),
}


@pytest.mark.parametrize(
    "content, kwargs, line, fragments", CONLL_ERRORS.values(), ids=CONLL_ERRORS)
def test_conll_errors(tmp_path, content, kwargs, line, fragments):
    path = write(tmp_path / "d.conll", content)
    with error_at(ValueError, path, line, *fragments):
        load_conll(path, **kwargs)


# -- every loader -------------------------------------------------------------


def test_missing_files(tmp_path):
    for load in (load_tagged_jsonl, load_tagged_csv, load_conll):
        with pytest.raises(FileNotFoundError) as info:
            load(tmp_path / "nope.data")
        assert str(tmp_path / "nope.data") in str(info.value)


def test_bad_arguments(tmp_path):
    path = write(tmp_path / "d.csv", "tokens,tags\na,O\n")
    with pytest.raises(ValueError, match="`tag_names` was given, but `tags_column` is None"):
        load_tagged_csv(path, tags_column=None, tag_names=["O"])
    with pytest.raises(ValueError, match="`tag_names` was given, but `tags_key` is None"):
        load_tagged_jsonl(path, tags_key=None, tag_names=["O"])
    with pytest.raises(TypeError, match="`tag_names` must be a sequence of names, not a string"):
        load_tagged_csv(path, tag_names="O B-PER")
    with pytest.raises(ValueError, match="`tag_names` has duplicates"):
        load_conll(path, tag_names=["O", "O"])
    with pytest.raises(TypeError, match="`word_column` must be a column index"):
        load_conll(path, word_column="word")
    with pytest.raises(TypeError, match="`words_key` must be a string"):
        load_tagged_jsonl(path, words_key=None)
