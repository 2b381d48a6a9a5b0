"""Same ids as transformers' BertTokenizerFast, on real text and on hard cases."""

import random

import numpy as np
import pytest
from transformers import BertTokenizerFast

import keras_bert_kit as kbk
from keras_bert_kit.data import split_sentences
from keras_bert_kit.datasets import load_rotten_tomatoes

HARD_CASES = [
    "Café naïve résumé Ünïcödé ÀÉÎÕÜ", "e\u0301 combining a\u0301b \u0301start",
    "!!!???...", "hello---world", "$100.00 & 50% off!!", "don't won't y'all",
    "日本語のテキスト中文字符 한국어", "emoji 😀👍🏽 test 👨‍👩‍👧", "ctrl\x00\x01\x7f chars",
    "zero\u200bwidth\u200djoiner\ufeffbom", "soft\u00adhyphen", "\ufffd replacement",
    "tab\tnew\nline\r\nreturn", "a" * 150, "é" * 60, "İstanbul ΟΔΟΣ Σ", "Straße",
    "… ellipsis…here", "non‑breaking‑hyphen", "\u3000ideographic space", "", "   ",
    "x\u2028y\u2029z", "\u202eright-to-left", "naïve\u00a0nbsp",
]


def _ids(tokenizer, texts):
    return [list(row) for row in tokenizer(texts).to_list()]


def test_every_rotten_tomatoes_snippet(uncased_tokenizer, hf_uncased):
    texts = list(load_rotten_tomatoes("all").texts)
    assert len(texts) == 12808
    ours = _ids(uncased_tokenizer, texts)
    theirs = hf_uncased(texts, add_special_tokens=False)["input_ids"]
    mismatched = [t for t, a, b in zip(texts, ours, theirs) if a != b]
    assert not mismatched, mismatched[:5]


def test_news_sentences(uncased_tokenizer, hf_uncased, news_articles):
    sentences = [s for a in news_articles[:300] for s in split_sentences(a)]
    assert len(sentences) >= 1000
    ours = _ids(uncased_tokenizer, sentences)
    theirs = hf_uncased(sentences, add_special_tokens=False)["input_ids"]
    mismatched = [t for t, a, b in zip(sentences, ours, theirs) if a != b]
    assert not mismatched, mismatched[:5]


@pytest.mark.parametrize("text", HARD_CASES, ids=range(len(HARD_CASES)))
def test_hard_cases(uncased_tokenizer, hf_uncased, text):
    assert list(uncased_tokenizer(text).numpy()) == hf_uncased(text, add_special_tokens=False)[
        "input_ids"
    ]


def test_cased_parity(bert_vocab_path):
    texts = list(load_rotten_tomatoes("test").texts[:500]) + HARD_CASES
    ours = _ids(kbk.BertTokenizer(bert_vocab_path, lowercase=False), texts)
    hf = BertTokenizerFast(vocab_file=bert_vocab_path, do_lower_case=False)
    assert ours == hf(texts, add_special_tokens=False)["input_ids"]


def test_pair_packing_and_truncation(uncased_tokenizer, hf_uncased):
    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dogs café naïve … , . ! unbelievably".split()
    sentence = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))  # noqa: E731
    for length in (5, 8, 13, 16, 31, 64):
        a = [sentence() for _ in range(40)]
        b = [sentence() for _ in range(40)]
        ours = kbk.BertPreprocessor(uncased_tokenizer, length)((a, b))
        theirs = hf_uncased(a, b, truncation="longest_first", max_length=length,
                            padding="max_length")
        np.testing.assert_array_equal(ours["input_ids"], theirs["input_ids"])
        np.testing.assert_array_equal(ours["segment_ids"], theirs["token_type_ids"])
        np.testing.assert_array_equal(ours["padding_mask"], theirs["attention_mask"])
        single = kbk.BertPreprocessor(uncased_tokenizer, length)(a)
        theirs = hf_uncased(a, truncation=True, max_length=length, padding="max_length")
        np.testing.assert_array_equal(single["input_ids"], theirs["input_ids"])


def test_empty_second_text_keeps_its_separator(uncased_tokenizer):
    out = kbk.BertPreprocessor(uncased_tokenizer, 8)(("hello", ""))
    assert out["input_ids"].numpy().tolist() == [101, 7592, 102, 102, 0, 0, 0, 0]
    assert out["segment_ids"].numpy().tolist() == [0, 0, 0, 1, 0, 0, 0, 0]


def test_tf_text_normalizer_agrees_on_plain_text_and_folds_compatibility(
    bert_vocab_path, hf_uncased
):
    fast = kbk.BertTokenizer(bert_vocab_path, normalizer="tf_text")
    plain = ["The movie was great, wasn't it?", "Accents: café naïve"]
    assert _ids(fast, plain) == hf_uncased(plain, add_special_tokens=False)["input_ids"]
    # Documented difference: FastBertNormalizer folds "…" into "...".
    assert list(fast("wait…").numpy()) != hf_uncased("wait…", add_special_tokens=False)[
        "input_ids"
    ]


def test_special_token_text_is_plain_text(bert_vocab_path, uncased_tokenizer):
    # "[CLS]" typed in user text is text, never the special token (HF's
    # split_special_tokens=True), so inputs cannot forge structure.
    hf = BertTokenizerFast(vocab_file=bert_vocab_path, split_special_tokens=True)
    text = "[CLS] [SEP] [MASK] ##ing"
    assert list(uncased_tokenizer(text).numpy()) == hf(text, add_special_tokens=False)["input_ids"]
    assert 101 not in uncased_tokenizer(text).numpy()
