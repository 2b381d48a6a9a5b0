"""Bad input gets a ValueError naming the problem and the limit."""

import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from tests.conftest import encoder_inputs, random_inputs, tiny_bert_config


@pytest.fixture(scope="module")
def pretrainer():
    return kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config()))


@pytest.fixture
def inputs():
    return random_inputs(tiny_bert_config(), batch_size=2, seq_len=10)


@pytest.fixture(params=["encoder", "pretrainer"])
def model_and_inputs(request, pretrainer, inputs):
    if request.param == "encoder":
        return pretrainer.encoder, encoder_inputs(inputs)
    return pretrainer, inputs


def test_sequence_longer_than_position_table(model_and_inputs):
    model, inputs = model_and_inputs
    long = {k: np.ones((1, 65), "int32") for k in inputs}
    with pytest.raises(ValueError, match="sequence length 65 .* position table of 64 positions"):
        model(long)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_float_ids(model_and_inputs, dtype):
    model, inputs = model_and_inputs
    inputs["input_ids"] = inputs["input_ids"].astype(dtype)
    with pytest.raises(ValueError, match=rf"`input_ids` must hold integer ids .* got dtype {dtype}"):
        model(inputs)


def test_string_input_suggests_tokenizing(model_and_inputs):
    model, inputs = model_and_inputs
    inputs = {k: tf.constant(v) for k, v in inputs.items()}
    inputs["input_ids"] = tf.constant([["a"] * 10] * 2)
    with pytest.raises(ValueError, match="got dtype string. Tokenize text first"):
        model(inputs)


@pytest.mark.parametrize("missing", ["input_ids", "segment_ids", "padding_mask"])
def test_missing_key(model_and_inputs, missing):
    model, inputs = model_and_inputs
    del inputs[missing]
    with pytest.raises(ValueError, match=missing):
        model(inputs)


def test_not_a_dict(pretrainer, inputs):
    with pytest.raises(ValueError, match="expects 3 named input.*Pass inputs as a dict"):
        pretrainer.encoder(inputs["input_ids"])


@pytest.mark.parametrize("bad_id", [300, 100_000, -1])
def test_token_id_outside_vocabulary(model_and_inputs, bad_id):
    model, inputs = model_and_inputs
    inputs["input_ids"][1, 3] = bad_id
    message = rf"`input_ids` must hold values in \[0, 300\); it holds {bad_id}\."
    with pytest.raises(ValueError, match=message):
        model(inputs)


def test_segment_id_outside_type_vocabulary(model_and_inputs):
    model, inputs = model_and_inputs
    inputs["segment_ids"][0, 0] = 2
    message = r"`segment_ids` must hold values in \[0, 2\); it holds 2\."
    with pytest.raises(ValueError, match=message):
        model(inputs)


def test_masked_position_outside_sequence(pretrainer, inputs):
    inputs["masked_positions"][0, 0] = 10
    message = r"`masked_positions` must hold values in \[0, 10\); it holds 10\."
    with pytest.raises(ValueError, match=message):
        pretrainer(inputs)


def test_mismatched_lengths(pretrainer, inputs):
    inputs = encoder_inputs(inputs)
    inputs["padding_mask"] = inputs["padding_mask"][:, :5]
    with pytest.raises(ValueError, match="disagree on sequence length"):
        pretrainer.encoder(inputs)


def test_wrong_rank(pretrainer, inputs):
    inputs = encoder_inputs(inputs)
    inputs["input_ids"] = inputs["input_ids"][0]
    with pytest.raises(ValueError, match=r"shape \[batch, sequence_length\]; got shape \(10,\)"):
        pretrainer.encoder(inputs)


def test_static_length_checked_when_traced(pretrainer):
    traced = tf.function(lambda x: pretrainer.encoder(x)["sequence_output"])
    spec = {
        name: tf.TensorSpec((None, 80), tf.int32)
        for name in ("input_ids", "segment_ids", "padding_mask")
    }
    with pytest.raises(ValueError, match="sequence length 80 .* 64 positions"):
        traced.get_concrete_function(spec)
