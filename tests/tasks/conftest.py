import pytest

import keras_bert_kit as kbk
from tests.conftest import TINY_SIZES


def tiny_encoder(kind="bert", **overrides):
    """A tiny encoder over the real 30522-token vocabulary, without dropout."""
    sizes = dict(TINY_SIZES, vocab_size=30522, dropout_rate=0.0, attention_dropout_rate=0.0)
    sizes.update(overrides)
    if kind == "bert":
        return kbk.BertEncoder(kbk.BertConfig(**sizes))
    return kbk.DistilBertEncoder(kbk.DistilBertConfig(**sizes))


@pytest.fixture(params=["bert", "distilbert"])
def kind(request):
    return request.param
