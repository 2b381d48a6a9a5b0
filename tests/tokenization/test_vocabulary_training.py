"""`train_wordpiece_vocabulary` on real news text: size, layout, coverage, output, errors."""

import re

import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.tokenization import (
    SPECIAL_TOKENS,
    load_vocabulary,
    normalize_text,
    standard_reserved_tokens,
    train_wordpiece_vocabulary,
)
from keras_bert_kit.tokenization import vocabulary_training as training_module
from tests.data.corpus import news_texts

VOCAB_SIZE = 2000


@pytest.fixture(scope="module")
def corpus():
    # 200 articles: the learner overshoots 2,000 here and the result is trimmed.
    return list(news_texts()[:200])


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """The vocabulary, where it was written, and the learner's own (untrimmed) output."""
    learned = []

    def spy(*args, **kwargs):
        learned.append(learner(*args, **kwargs))
        return learned[-1]

    learner = training_module.bert_vocab_from_dataset
    path = tmp_path_factory.mktemp("vocab") / "sub" / "vocab.txt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training_module, "bert_vocab_from_dataset", spy)
        vocabulary = train_wordpiece_vocabulary(corpus, vocab_size=VOCAB_SIZE, output_path=path)
    return vocabulary, path, learned[0]


def test_size_layout_and_uniqueness(trained):
    vocabulary, _, _ = trained
    assert len(vocabulary) == VOCAB_SIZE
    assert len(set(vocabulary)) == VOCAB_SIZE
    assert all(isinstance(t, str) and t for t in vocabulary)
    assert [vocabulary[i] for i in (0, 100, 101, 102, 103)] == [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert vocabulary[:104] == standard_reserved_tokens()
    pieces = [t for t in vocabulary if t.startswith("##")]
    assert len(pieces) > 100
    assert {"the", "said", "##s"} <= set(vocabulary)
    # Learned from normalised text: nothing upper-case.
    learned = vocabulary[104:]
    assert not [t for t in learned if not t.startswith("[unused") and t != t.lower()]


def test_every_character_also_has_its_continuation_piece(trained):
    vocabulary, _, learned = trained
    # The case this checks: the learner overshot and its least frequent tokens,
    # among them the "##c" pieces it adds for every character, had to be cut.
    assert len(learned) > VOCAB_SIZE
    assert set(vocabulary) <= set(learned)
    tokens = set(vocabulary)
    characters = [t for t in vocabulary[104:] if len(t) == 1]
    assert len(characters) > 26
    missing = [c for c in characters if "##" + c not in tokens]
    assert not missing, missing


def test_tokenizer_from_it_covers_the_corpus(trained, corpus):
    vocabulary, _, _ = trained
    tokenizer = kbk.BertTokenizer(vocabulary)
    ids = tokenizer(corpus).flat_values.numpy()
    assert len(ids) > 50_000
    assert (ids == 100).mean() < 0.01
    # No word whose characters are all in the vocabulary becomes [UNK].
    characters = {t for t in vocabulary if len(t) == 1}
    words = set()
    for text in normalize_text(tf.constant(corpus)).numpy():
        words.update(re.findall(r"\w+|[^\w\s]", text.decode("utf-8")))
    words = sorted(w for w in words if set(w) <= characters and len(w.encode()) <= 100)
    assert len(words) > 3000
    unknown = [w for w, pieces in zip(words, tokenizer(words).to_list()) if 100 in pieces]
    assert not unknown, unknown[:20]
    # Frequent words are single tokens.
    for word in ("the", "said", "president"):
        assert len(tokenizer(word).numpy()) == 1, word


def test_output_path_round_trip(trained):
    vocabulary, path, _ = trained
    assert path.exists()
    assert load_vocabulary(path) == vocabulary
    assert kbk.BertTokenizer(str(path)).get_vocabulary() == vocabulary


def test_dataset_input_and_spare_slots(corpus):
    # A small corpus: the learner stops short and [unusedN] tokens fill up.
    texts = corpus[:60]
    from_dataset = train_wordpiece_vocabulary(tf.data.Dataset.from_tensor_slices(texts), 500)
    assert len(from_dataset) == len(set(from_dataset)) == 500
    assert [from_dataset[i] for i in (0, 100, 101, 102, 103)] == [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    spare = [t for t in from_dataset[104:] if t.startswith("[unused")]
    assert spare and from_dataset[-len(spare):] == spare
    ids = kbk.BertTokenizer(from_dataset)(texts).flat_values.numpy()
    assert (ids == 100).mean() < 0.01


def test_custom_reserved_tokens_and_casing():
    texts = ["Hello World, hello there. Café CAFÉ café!"] * 40
    reserved = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[EXTRA]"]
    vocabulary = train_wordpiece_vocabulary(texts, 60, reserved_tokens=reserved, min_frequency=2)
    assert vocabulary[:6] == reserved and len(vocabulary) == 60
    assert "hello" in vocabulary and "Hello" not in vocabulary and "cafe" in vocabulary
    cased = train_wordpiece_vocabulary(texts, 60, lowercase=False, reserved_tokens=reserved,
                                       min_frequency=2)
    assert "Hello" in cased and "Café" in cased
    assert len(cased) == 60


@pytest.mark.parametrize("vocab_size", [50, 104, 0, -5, 2.5, True])
def test_vocab_size_too_small_or_invalid(vocab_size):
    with pytest.raises(ValueError, match="vocab_size"):
        train_wordpiece_vocabulary(["some text here"], vocab_size=vocab_size)


@pytest.mark.parametrize("missing", SPECIAL_TOKENS)
def test_reserved_tokens_missing_a_special_token(missing):
    reserved = [t for t in SPECIAL_TOKENS if t != missing] + ["[unused0]"]
    with pytest.raises(ValueError, match=re.escape(missing)):
        train_wordpiece_vocabulary(["some text here"], 500, reserved_tokens=reserved)


def test_empty_texts():
    with pytest.raises(ValueError, match="empty"):
        train_wordpiece_vocabulary([], 500)
    with pytest.raises(ValueError, match="empty"):
        train_wordpiece_vocabulary(iter([]), 500)


@pytest.mark.parametrize(
    "dataset",
    [
        tf.data.Dataset.from_tensor_slices([1, 2, 3]),
        tf.data.Dataset.from_tensor_slices([["a", "b"], ["c", "d"]]),
        tf.data.Dataset.from_tensor_slices(["a", "b"]).batch(2),
        tf.data.Dataset.from_tensor_slices({"text": ["a", "b"]}),
    ],
)
def test_dataset_of_wrong_element_spec(dataset):
    with pytest.raises(ValueError, match="scalar strings"):
        train_wordpiece_vocabulary(dataset, 500)


def test_a_single_string_is_one_text():
    vocabulary = train_wordpiece_vocabulary("the quick brown fox " * 50, 200, min_frequency=1)
    assert len(vocabulary) == 200 and "quick" in vocabulary
    assert np.all([vocabulary.count(t) == 1 for t in ("[PAD]", "[UNK]")])
