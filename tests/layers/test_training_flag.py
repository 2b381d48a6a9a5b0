"""Layers take `training` as a tensor too (a symbolic flag of a `tf.function`)."""

import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.layers import Dropout, FusedDense, LayerNormalization
from tests.conftest import random_inputs, tiny_bert_config


def _run_with_tensor_flag(layer, x, flag):
    @tf.function(input_signature=[tf.TensorSpec(x.shape, tf.float32), tf.TensorSpec([], tf.bool)])
    def run(inputs, training):
        return layer(inputs, training=training)

    return run(x, tf.constant(flag)).numpy()


@pytest.mark.parametrize("flag", [False, True])
def test_fused_dense_and_layer_norm_take_a_tensor_flag(flag):
    x = tf.random.stateless_normal([2, 3, 8], seed=[1, 2])
    for layer in (FusedDense(6, activation="gelu"), LayerNormalization(epsilon=1e-12)):
        expected = layer(x, training=flag).numpy()
        np.testing.assert_allclose(_run_with_tensor_flag(layer, x, flag), expected, atol=1e-5)


def test_dropout_drops_only_when_the_tensor_flag_is_true():
    layer = Dropout(0.5, seed=3)
    x = tf.ones([4, 64])
    np.testing.assert_array_equal(_run_with_tensor_flag(layer, x, False), x.numpy())
    dropped = _run_with_tensor_flag(layer, x, True)
    assert 0 < (dropped == 0).mean() < 1
    np.testing.assert_allclose(dropped[dropped != 0], 2.0, rtol=1e-6)


@pytest.mark.parametrize("flag", [False, True])
def test_an_encoder_takes_a_tensor_flag(flag):
    # Without dropout both flags compute the same function, through different
    # kernels (the training ones with flag True); each must match its eager run.
    config = tiny_bert_config(dropout_rate=0.0, attention_dropout_rate=0.0)
    encoder = kbk.BertEncoder(config)
    inputs = random_inputs(config)
    inputs.pop("masked_positions")
    specs = {name: tf.TensorSpec(value.shape, value.dtype) for name, value in inputs.items()}

    @tf.function(input_signature=[specs, tf.TensorSpec([], tf.bool)])
    def run(features, training):
        return encoder(features, training=training)["sequence_output"]

    expected = encoder(inputs, training=flag)["sequence_output"].numpy()
    np.testing.assert_allclose(run(inputs, tf.constant(flag)).numpy(), expected, atol=1e-5)
