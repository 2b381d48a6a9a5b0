"""`create_pretraining_examples`: `[CLS] A [SEP] B [SEP]` packing, NSP labels, options, errors."""

import collections

import numpy as np
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.data import (
    PretrainingExamples,
    create_pretraining_examples,
    split_sentences,
    tokenize_documents,
)
from tests.data import corpus
from tests.data.corpus import CLS, PAD, SEP

NEXT, RANDOM = 0, 1


def _split(example):
    """(A, B) token arrays of one packed example."""
    ids = example["input_ids"]
    first_sep, second_sep = np.flatnonzero(ids == SEP)[:2]
    return ids[1:first_sep], ids[first_sep + 1 : second_sep]


def _as_tuples(examples, start=0, stop=None):
    stop = len(examples) if stop is None else stop
    return [
        (tuple(e["input_ids"]), tuple(e["segment_ids"]), int(e["nsp_label"]))
        for e in map(examples.example, range(start, stop))
    ]


# -- structure on real text -----------------------------------------------------


def test_every_news_example_is_well_formed(news_examples):
    assert isinstance(news_examples, PretrainingExamples)
    assert len(news_examples) >= 5000
    assert news_examples.input_ids.dtype == np.int32
    assert news_examples.segment_ids.dtype == np.int32
    assert news_examples.nsp_labels.dtype == np.int32
    assert news_examples.row_splits[0] == 0
    assert news_examples.row_splits[-1] == len(news_examples.input_ids)
    assert len(news_examples.segment_ids) == len(news_examples.input_ids)
    lengths = news_examples.lengths()
    assert lengths.max() <= 128 and lengths.min() >= 5
    # Most chunks fill the target: short_seq_prob is only 0.1.
    assert np.median(lengths) >= 120
    for i in range(len(news_examples)):
        example = news_examples.example(i)
        ids, segments = example["input_ids"], example["segment_ids"]
        assert ids[0] == CLS and ids[-1] == SEP, i
        seps = np.flatnonzero(ids == SEP)
        assert len(seps) == 2, i
        assert seps[0] >= 2 and seps[1] - seps[0] >= 2, i  # A and B non-empty
        assert CLS not in ids[1:] and PAD not in ids, i
        expected = (np.arange(len(ids)) > seps[0]).astype(np.int32)
        np.testing.assert_array_equal(segments, expected, err_msg=str(i))
        assert example["nsp_label"] in (NEXT, RANDOM)


def test_nsp_labels_are_balanced(news_examples):
    labels = news_examples.nsp_labels
    assert len(labels) >= 5000
    assert set(np.unique(labels)) == {NEXT, RANDOM}
    assert abs(labels.mean() - 0.5) <= 0.02, labels.mean()
    # And not in long runs: each half of the corpus is balanced as well.
    for half in np.array_split(labels, 2):
        assert abs(half.mean() - 0.5) <= 0.03


def test_max_seq_length_is_respected_down_to_five(news, bert_tokenizer):
    docs = news[:20]
    for max_seq_length in (5, 6, 16, 48):
        examples = create_pretraining_examples(docs, bert_tokenizer, max_seq_length, seed=2)
        lengths = examples.lengths()
        assert lengths.max() <= max_seq_length and lengths.min() >= 5
        for i in range(0, len(examples), 7):
            a, b = _split(examples.example(i))
            assert len(a) >= 1 and len(b) >= 1
    # At the minimum every example is [CLS] a [SEP] b [SEP].
    assert set(create_pretraining_examples(docs, bert_tokenizer, 5).lengths()) == {5}


# -- where A and B come from: a corpus whose tokens name their place --------------

N_DOCS, N_SENTENCES, WORDS_PER_SENTENCE = 30, 12, 4


@pytest.fixture(scope="module")
def traceable(bert_tokenizer):
    """Documents as lists of sentences of distinct one-token words.

    Every token occurs once in the corpus, so it tells its document and its
    position there. Sentences are 4 tokens and max_seq_length 15 leaves 12
    for A + B, so chunks never need truncating.
    """
    words = corpus.single_piece_words(bert_tokenizer, N_DOCS * N_SENTENCES * WORDS_PER_SENTENCE)
    words = np.array(words).reshape(N_DOCS, N_SENTENCES, WORDS_PER_SENTENCE)
    documents = [[" ".join(sentence) for sentence in doc] for doc in words]
    streams = [bert_tokenizer(" ".join(doc)).numpy() for doc in documents]
    place = {}
    for d, stream in enumerate(streams):
        assert len(stream) == N_SENTENCES * WORDS_PER_SENTENCE  # one token per word
        for position, token in enumerate(stream):
            assert token not in place
            place[int(token)] = (d, position)
    return documents, streams, place


def _places(tokens, place):
    """(document, first position, last position) of a contiguous run of tokens."""
    spots = [place[int(t)] for t in tokens]
    docs = {d for d, _ in spots}
    assert len(docs) == 1, "a segment mixes documents"
    positions = [p for _, p in spots]
    assert positions == list(range(positions[0], positions[0] + len(positions))), (
        "a segment is not a contiguous run of its document"
    )
    return docs.pop(), positions[0], positions[-1]


@pytest.mark.parametrize("seed", [0, 1])
def test_next_b_follows_a_and_random_b_comes_from_another_document(
    traceable, bert_tokenizer, seed
):
    documents, streams, place = traceable
    examples = create_pretraining_examples(
        documents, bert_tokenizer, max_seq_length=15, short_seq_prob=0.0, seed=seed
    )
    labels = collections.Counter()
    seen = [set() for _ in documents]
    for i in range(len(examples)):
        example = examples.example(i)
        a, b = _split(example)
        a_doc, a_first, a_last = _places(a, place)
        b_doc, b_first, b_last = _places(b, place)
        label = int(example["nsp_label"])
        labels[label] += 1
        if label == NEXT:
            assert b_doc == a_doc and b_first == a_last + 1, (i, a_doc, a_last, b_doc, b_first)
        else:
            assert b_doc != a_doc, i
        seen[a_doc].update(range(a_first, a_last + 1))
        if label == NEXT:
            seen[b_doc].update(range(b_first, b_last + 1))
    assert labels[NEXT] >= 40 and labels[RANDOM] >= 40, labels
    # Nothing is lost: every token of every document is in some A or actual-next B.
    for d, stream in enumerate(streams):
        assert seen[d] == set(range(len(stream))), d


def test_one_sentence_chunks_pair_with_the_next_sentence(traceable, bert_tokenizer):
    # With room for one sentence only, an actual-next pair is a sentence and the
    # one after it, truncated together: B never starts inside A's sentence, so
    # a mid-sentence start tells nothing about the label.
    documents, _, place = traceable
    examples = create_pretraining_examples(
        documents, bert_tokenizer, max_seq_length=7, short_seq_prob=0.0, seed=3
    )
    labels = collections.Counter()
    for i in range(len(examples)):
        example = examples.example(i)
        a, b = _split(example)
        a_doc, a_first, a_last = _places(a, place)
        b_doc, b_first, b_last = _places(b, place)
        labels[int(example["nsp_label"])] += 1
        assert len(a) + len(b) == 4  # both sides truncated to fit
        if example["nsp_label"] == NEXT:
            sentence = a_first // WORDS_PER_SENTENCE
            assert b_doc == a_doc and a_last // WORDS_PER_SENTENCE == sentence
            assert b_first // WORDS_PER_SENTENCE == b_last // WORDS_PER_SENTENCE == sentence + 1
    # Only a document's last sentence cannot make a next pair.
    assert labels[NEXT] >= 0.4 * len(examples) and labels[RANDOM] >= 0.4 * len(examples), labels


def test_documents_as_lists_of_sentences_match_strings(news, bert_tokenizer):
    docs = news[:15]
    from_strings = create_pretraining_examples(docs, bert_tokenizer, 64, seed=4)
    from_lists = create_pretraining_examples(
        [split_sentences(d) for d in docs], bert_tokenizer, 64, seed=4
    )
    assert _as_tuples(from_strings) == _as_tuples(from_lists)
    # Tuples of sentences and empty sentences are fine too.
    lists = [tuple(split_sentences(d)) + ("", "   ") for d in docs]
    assert _as_tuples(create_pretraining_examples(lists, bert_tokenizer, 64, seed=4)) == (
        _as_tuples(from_strings)
    )


def test_tokenize_documents(bert_tokenizer):
    tokenized = tokenize_documents(
        ["Hello there. General Kenobi!", ["one sentence", "", "two"], "", []], bert_tokenizer
    )
    assert [len(d) for d in tokenized] == [2, 2, 0, 0]
    np.testing.assert_array_equal(tokenized[0][0], bert_tokenizer("Hello there.").numpy())
    np.testing.assert_array_equal(tokenized[1][1], bert_tokenizer("two").numpy())


# -- options ------------------------------------------------------------------------


def test_short_seq_prob_gives_shorter_examples(news, bert_tokenizer):
    docs = news[:40]
    never = create_pretraining_examples(docs, bert_tokenizer, 64, short_seq_prob=0.0, seed=5)
    always = create_pretraining_examples(docs, bert_tokenizer, 64, short_seq_prob=1.0, seed=5)
    assert always.lengths().mean() < never.lengths().mean() - 5
    assert len(always) > len(never)
    assert np.mean(never.lengths() == 64) > 0.8  # without short targets chunks fill up
    # Short targets go down to very short examples (random B segments still
    # fill up to max_seq_length, as in Google's recipe).
    assert always.lengths().min() < 20 and np.mean(always.lengths() < 40) > 0.05
    assert never.lengths().min() >= 5


def test_dupe_factor_makes_more_passes_that_differ(news, bert_tokenizer):
    docs = news[:40]
    once = create_pretraining_examples(docs, bert_tokenizer, 64, seed=6)
    twice = create_pretraining_examples(docs, bert_tokenizer, 64, dupe_factor=2, seed=6)
    assert 1.85 <= len(twice) / len(once) <= 2.15
    n = len(once)
    first = collections.Counter(_as_tuples(twice, 0, n))
    second = collections.Counter(_as_tuples(twice, n))
    repeated = sum((first & second).values())
    # The second pass splits documents differently: few examples repeat exactly.
    assert repeated / sum(second.values()) < 0.2
    # Both passes cover the same text: the token multisets are alike.
    count = lambda tuples: collections.Counter(t for ids, _, _ in tuples for t in ids)  # noqa: E731
    a, b = count(first.elements()), count(second.elements())
    assert sum((a & b).values()) / sum(a.values()) > 0.8


def test_same_seed_same_examples_other_seed_different(news, bert_tokenizer):
    docs = news[:30]
    a = create_pretraining_examples(docs, bert_tokenizer, 64, seed=11)
    b = create_pretraining_examples(docs, bert_tokenizer, 64, seed=11)
    c = create_pretraining_examples(docs, bert_tokenizer, 64, seed=12)
    for field in ("input_ids", "segment_ids", "row_splits", "nsp_labels"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert _as_tuples(a) != _as_tuples(c)
    assert not np.array_equal(a.nsp_labels[:50], c.nsp_labels[:50])


def test_to_dataset_and_concatenate(bert_tokenizer, news):
    a = create_pretraining_examples(news[:4], bert_tokenizer, 32, seed=1)
    b = create_pretraining_examples(news[4:8], bert_tokenizer, 32, seed=2)
    elements = list(a.to_dataset().as_numpy_iterator())
    assert len(elements) == len(a)
    for i, element in enumerate(elements):
        assert element["input_ids"].dtype == np.int32
        np.testing.assert_array_equal(element["input_ids"], a.example(i)["input_ids"])
        np.testing.assert_array_equal(element["segment_ids"], a.example(i)["segment_ids"])
        assert element["nsp_label"] == a.example(i)["nsp_label"]
    both = PretrainingExamples.concatenate([a, b])
    assert _as_tuples(both) == _as_tuples(a) + _as_tuples(b)


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "documents",
    [
        ["Only one document here."],
        ["Only one document here.", "", "   \n  "],
        [["one", "two"], [], ["", " "]],
        [],
    ],
)
def test_fewer_than_two_non_empty_documents(documents, bert_tokenizer):
    with pytest.raises(ValueError, match="at least 2 non-empty documents"):
        create_pretraining_examples(documents, bert_tokenizer)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_seq_length=4), "max_seq_length"),
        (dict(max_seq_length=0), "max_seq_length"),
        (dict(max_seq_length=64.0), "max_seq_length"),
        (dict(max_seq_length=True), "max_seq_length"),
        (dict(short_seq_prob=-0.1), "short_seq_prob"),
        (dict(short_seq_prob=1.5), "short_seq_prob"),
        (dict(short_seq_prob=float("nan")), "short_seq_prob"),
        (dict(dupe_factor=0), "dupe_factor"),
        (dict(dupe_factor=-1), "dupe_factor"),
        (dict(dupe_factor=1.5), "dupe_factor"),
    ],
)
def test_bad_options(kwargs, message, bert_tokenizer):
    with pytest.raises(ValueError, match=message):
        create_pretraining_examples(["First one.", "Second one."], bert_tokenizer, **kwargs)


@pytest.mark.parametrize(
    "bad, kind",
    [(7, "int"), (None, "NoneType"), (["fine", 3], "list"), (b"bytes", "bytes")],
)
def test_document_neither_string_nor_sentence_list(bad, kind, bert_tokenizer):
    with pytest.raises(ValueError, match=f"Document 1 must be a string or a list.*{kind}"):
        create_pretraining_examples(["A document.", bad, "Another."], bert_tokenizer)


def test_kbk_exports():
    assert kbk.data.create_pretraining_examples is create_pretraining_examples
