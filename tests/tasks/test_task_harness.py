"""Tasks and preprocessors through the shared harness."""

import numpy as np
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.assets import bert_uncased_vocab_path
from tests.harness import check_config, check_registration, run_model_test
from tests.tasks.conftest import tiny_encoder

TEXTS = ["A gripping, funny film.", "Two hours I will never get back"]


@pytest.fixture(scope="module")
def tokenizer():
    return kbk.BertTokenizer(bert_uncased_vocab_path())


def _ids(tokenizer):
    return {k: v.numpy() for k, v in kbk.BertPreprocessor(tokenizer, 16)(TEXTS).items()}


@pytest.mark.parametrize("task", ["classifier", "tagger", "qa"])
def test_task_harness(task, tokenizer, tmp_path):
    def make():
        if task == "classifier":
            return kbk.SequenceClassifier(
                tiny_encoder(), 3, preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, 16),
                label_names=["a", "b", "c"])
        if task == "tagger":
            return kbk.TokenClassifier(
                tiny_encoder(), 3, preprocessor=kbk.TokenClassifierPreprocessor(tokenizer, 16))
        return kbk.SpanExtractor(tiny_encoder(), preprocessor=kbk.SpanExtractorPreprocessor(
            tokenizer, sequence_length=32, stride=4, max_question_length=8))

    run_model_test(make, _ids(tokenizer), tmp_path)


@pytest.mark.parametrize("name", ["tokenizer", "bert", "classifier", "tagger", "qa"])
def test_preprocessor_config_and_registration(name, tokenizer):
    layer, call = {
        "tokenizer": (tokenizer, lambda p: p(TEXTS)),
        "bert": (kbk.BertPreprocessor(tokenizer, 16), lambda p: p(TEXTS)),
        "classifier": (kbk.SequenceClassifierPreprocessor(tokenizer, 16), lambda p: p(TEXTS)),
        "tagger": (kbk.TokenClassifierPreprocessor(tokenizer, 16), lambda p: p(TEXTS)),
        "qa": (kbk.SpanExtractorPreprocessor(tokenizer, sequence_length=32, stride=4,
                                             max_question_length=8),
               lambda p: p((["Who?", "What?"], TEXTS))),
    }[name]
    check_registration(type(layer))
    rebuilt = check_config(layer)
    for a, b in zip(_flatten(call(layer)), _flatten(call(rebuilt))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _flatten(outputs):
    import keras
    import tensorflow as tf

    return [x.to_tensor() if isinstance(x, tf.RaggedTensor) else x
            for x in keras.tree.flatten(outputs)]
