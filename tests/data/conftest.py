"""Session fixtures: the real 30k uncased tokenizer and the news corpus, built once."""

import keras
import pytest

import keras_bert_kit as kbk
from tests.data import corpus


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """The root fixture of this name, less its `clear_session`.

    `clear_session` runs a full garbage collection, 0.2 s per test with the
    tokenizer and corpus alive; the data tests build no Keras models, and the
    one that does asks for `keras_session`.
    """
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.fixture
def keras_session():
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="session")
def bert_tokenizer():
    tokenizer = kbk.BertTokenizer(corpus.bert_vocab_path())
    assert tokenizer.vocabulary_size() == corpus.VOCAB_SIZE
    assert [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id,
            tokenizer.sep_token_id, tokenizer.mask_token_id] == [0, 100, 101, 102, 103]
    return tokenizer


@pytest.fixture(scope="session")
def news():
    texts = corpus.news_texts()
    assert len(texts) > 3700
    return list(texts)


@pytest.fixture(scope="session")
def news_examples(news, bert_tokenizer):
    """About 6,700 NSP examples of up to 128 tokens from 800 articles."""
    return kbk.data.create_pretraining_examples(news[:800], bert_tokenizer, 128, seed=7)


@pytest.fixture(scope="session")
def small_examples(news, bert_tokenizer):
    """About 570 examples of up to 128 tokens, some short (all three default buckets)."""
    return kbk.data.create_pretraining_examples(
        news[900:950], bert_tokenizer, 128, short_seq_prob=0.5, seed=1
    )
