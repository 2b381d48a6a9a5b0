"""Encoders and pretrainers through the shared harness (config, `.keras`, mixed precision)."""

import pytest

import keras_bert_kit as kbk
from tests.conftest import random_inputs, tiny_bert_config, tiny_distilbert_config
from tests.harness import run_model_test

MODELS = {
    "BertEncoder": (lambda: kbk.BertEncoder(tiny_bert_config()), tiny_bert_config, False),
    "DistilBertEncoder": (lambda: kbk.DistilBertEncoder(tiny_distilbert_config()),
                          tiny_distilbert_config, False),
    "BertPretrainer": (lambda: kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config())),
                       tiny_bert_config, True),
    "DistilBertPretrainer": (
        lambda: kbk.DistilBertPretrainer(kbk.DistilBertEncoder(tiny_distilbert_config())),
        tiny_distilbert_config, True),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_harness(name, tmp_path):
    model_fn, config_fn, masked = MODELS[name]
    inputs = random_inputs(config_fn())
    if not masked:
        inputs.pop("masked_positions")
    # Encoders compute in bfloat16; the pretrainers' logits are float32.
    mixed_output_dtype = "float32" if masked else "bfloat16"
    run_model_test(model_fn, inputs, tmp_path, mixed_output_dtype=mixed_output_dtype)
