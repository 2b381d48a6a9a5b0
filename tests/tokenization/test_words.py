"""split_words: BERT's basic tokens with offsets; tokenizing them one by one changes nothing.

split_words_with_offsets: the same, in graph.
"""

import unicodedata

import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_bert_kit.tokenization import split_words, split_words_with_offsets

ODD_TEXTS = [
    "Hello, wor-ld!  x\u4e2d\u6587y  $5",
    "caf\u00e9 cafe\u0301 \u0301lone mark",  # precomposed, combining, a mark after a space
    "\U0001F600\U0001F44D\U0001F3FD emoji\u200d\U0001F469 \U0001F1EB\U0001F1F7!",
    "zero\u200bwidth\ufeff \u2060joiner\u00ad",
    "ctrl\x00\x07mid \x1b[0m \x7f\x85end",
    "tabs\tand\nnew\r\nlines\x0bvt\x0cff\u2028ls\u3000ideographic\u00a0nbsp",
    "\u3002\u300c\u5f15\u7528\u300d\uff01 \u00bfQu\u00e9? \u00abguill\u00bb \u2014dash",
    "",
    " \t\n ",
    "\U00020000\U0002a6dfx\uf900\u3400",
    "\ufffd replacement",
]


def test_spans():
    text = "Hello, wor-ld!  x\u4e2d\u6587y  $5"
    words = [text[s:e] for s, e in split_words(text)]
    assert words == ["Hello", ",", "wor", "-", "ld", "!", "x", "\u4e2d", "\u6587", "y", "$", "5"]
    assert split_words("   ") == [] and split_words("") == []


def _same_pieces(tokenizer, texts):
    whole = tokenizer.tokenize(texts).to_list()
    for text, expected in zip(texts, whole):
        words = [text[s:e] for s, e in split_words(text)]
        pieces = tokenizer.tokenize(words).to_list() if words else []
        assert [p for word in pieces for p in word] == expected, text


def test_word_by_word_tokenization_equals_whole_text_on_real_reviews(uncased_tokenizer):
    from keras_bert_kit.datasets import load_rotten_tomatoes

    _same_pieces(uncased_tokenizer, list(load_rotten_tomatoes("test").texts[:400]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
                min_size=1, max_size=8))
def test_word_by_word_tokenization_equals_whole_text_on_any_text(uncased_tokenizer, texts):
    _same_pieces(uncased_tokenizer, texts)


def _graph_spans(texts):
    words, starts, ends = split_words_with_offsets(texts)
    return [
        (list(zip(s, e)), [w.decode("utf-8") for w in ws])
        for ws, s, e in zip(words.to_list(), starts.to_list(), ends.to_list())
    ]


def _assert_same_as_python(texts, got):
    for text, (spans, words) in zip(texts, got):
        assert spans == split_words(text), text
        assert words == [text[s:e] for s, e in spans], text


def test_in_graph_words_equal_split_words_on_odd_unicode():
    _assert_same_as_python(ODD_TEXTS, _graph_spans(ODD_TEXTS))
    words, starts, ends = split_words_with_offsets("a b")
    assert words.numpy().tolist() == [b"a", b"b"] and starts.dtype == tf.int64
    assert ends.numpy().tolist() == [1, 3]
    assert split_words_with_offsets([])[0].shape[0] == 0


def test_in_graph_words_in_tf_function_and_tf_data():
    split = tf.function(split_words_with_offsets,
                        input_signature=[tf.TensorSpec([None], tf.string)])
    words, starts, ends = split(tf.constant(ODD_TEXTS))
    expected = split_words_with_offsets(ODD_TEXTS)
    for got, want in zip((words, starts, ends), expected):
        assert got.to_list() == want.to_list()
    batches = tf.data.Dataset.from_tensor_slices(ODD_TEXTS).batch(4).map(
        lambda texts: split_words_with_offsets(texts)[1])
    assert [row for batch in batches for row in batch.to_list()] == expected[1].to_list()


def test_invalid_utf8_reads_as_python_replace_decoding():
    raw = [b"ok\xff bad", b"\xe4\xb8 cut", b"\xf0\x9f\x98", b"sur\xed\xa0\x80rogate x"]
    _assert_same_as_python([r.decode("utf-8", "replace") for r in raw], _graph_spans(raw))


def test_every_assigned_code_point_is_classified_as_python_does():
    # Each character c in "a" c " ": a space leaves "a", punctuation and CJK
    # make two words, anything else joins the "a". Unicode versions may differ:
    # RE2 knows characters newer than this Python's unicodedata, nothing else.
    # Planes 0-2 (every CJK range BERT names), then tags, variation selectors and
    # private use; the rest of the code space is unassigned.
    code_points = [*range(0xD800), *range(0xE000, 0x32000), *range(0xE0000, 0xE0200),
                   *range(0xF0000, 0xF0100), *range(0x10FF00, 0x110000)]
    characters = [chr(c) for c in code_points]
    text = "".join("a" + c + " " for c in characters)
    _, starts, ends = split_words_with_offsets(text)
    graph = set(zip(starts.numpy().tolist(), ends.numpy().tolist()))
    differing = {characters[start // 3] for start, _ in graph ^ set(split_words(text))}
    assert {unicodedata.category(c) for c in differing} <= {"Cn"}
    assert len(differing) < 100


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
                min_size=1, max_size=4))
def test_in_graph_words_equal_split_words_on_any_text(texts):
    _assert_same_as_python(texts, _graph_spans(texts))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=30), min_size=1, max_size=4))
def test_in_graph_words_survive_any_bytes(raw):
    _assert_same_as_python([r.decode("utf-8", "replace") for r in raw], _graph_spans(raw))


def test_split_words_with_offsets_rejects_matrices():
    with pytest.raises(ValueError, match="1-D batch"):
        split_words_with_offsets([["a", "b"]])
