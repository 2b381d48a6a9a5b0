"""Fused training kernels (GELU, LayerNorm): values and gradients against TensorFlow and Keras."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.layers import LayerNormalization, training_kernels
from tests.conftest import tiny_bert_config


def _value_and_grads(fn, inputs, upstream):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = fn(*inputs)
        total = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    return [y] + tape.gradient(total, inputs)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gelu_matches_tensorflow(jit_compile):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(scale=3.0, size=(4, 7, 33)), tf.float32)
    upstream = tf.constant(rng.normal(size=x.shape), tf.float32)
    run = tf.function(_value_and_grads, jit_compile=jit_compile)
    ours = run(training_kernels.gelu, [x], upstream)
    reference = run(lambda v: tf.nn.gelu(v, approximate=False), [x], upstream)
    for got, want in zip(ours, reference):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_layer_norm_matches_keras(dtype):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(loc=2.0, scale=3.0, size=(3, 5, 64)), dtype)
    gamma = tf.constant(rng.normal(size=(64,)), tf.float32)
    beta = tf.constant(rng.normal(size=(64,)), tf.float32)
    upstream = tf.constant(rng.normal(size=x.shape), tf.float32)
    keras_layer = keras.layers.LayerNormalization(epsilon=1e-12, dtype=dtype)
    keras_layer.build(x.shape)
    keras_layer.gamma.assign(gamma)
    keras_layer.beta.assign(beta)

    def keras_fn(x, gamma, beta):
        return keras.ops.layer_normalization(tf.cast(x, tf.float32), gamma, beta, epsilon=1e-12)

    ours = _value_and_grads(lambda *a: training_kernels.layer_norm(*a, 1e-12),
                            [x, gamma, beta], upstream)
    reference = _value_and_grads(keras_fn, [x, gamma, beta], upstream)
    assert ours[0].dtype == x.dtype and ours[1].dtype == x.dtype
    tolerance = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=2e-2, atol=5e-2)
    for got, want in zip(ours, reference):
        np.testing.assert_allclose(np.asarray(tf.cast(got, tf.float32)),
                                   np.asarray(tf.cast(want, tf.float32)), **tolerance)


def test_layer_normalization_layer_trains_on_the_kernel_and_infers_with_keras():
    layer = LayerNormalization(epsilon=1e-12)
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 3, 16)), tf.float32)
    layer.build(x.shape)
    layer.gamma.assign(tf.linspace(0.5, 2.0, 16))
    np.testing.assert_allclose(layer(x, training=True), layer(x, training=False),
                               rtol=1e-5, atol=1e-5)
    graph = tf.function(lambda v: layer(v, training=True)).get_concrete_function(x).graph
    called = {f.signature.name for f in graph.as_graph_def().library.function}
    assert any("layer_norm_forward" in name for name in called), called
    again = LayerNormalization.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    rms = LayerNormalization(rms_scaling=True)
    rms.build(x.shape)
    np.testing.assert_allclose(rms(x, training=True), rms(x, training=False))


def test_pretrainer_gradients_are_the_same_in_training_and_inference_mode():
    # Without dropout, training mode differs from inference mode only in the kernels.
    config = tiny_bert_config(dropout_rate=0.0, attention_dropout_rate=0.0)
    model = kbk.BertPretrainer(kbk.BertEncoder(config))
    rng = np.random.default_rng(3)
    batch = {
        "input_ids": rng.integers(5, config.vocab_size, (2, 12)).astype("int32"),
        "segment_ids": np.repeat([[0] * 6 + [1] * 6], 2, 0).astype("int32"),
        "padding_mask": np.ones((2, 12), "int32"),
        "masked_positions": np.array([[1, 4, 9], [2, 3, 10]], "int32"),
    }

    @tf.function
    def gradients(training):
        with tf.GradientTape() as tape:
            outputs = model(batch, training=training)
            total = tf.reduce_sum(outputs["mlm_logits"] ** 2) + tf.reduce_sum(
                outputs["nsp_logits"])
        return tape.gradient(total, model.trainable_variables)

    library = gradients.get_concrete_function(True).graph.as_graph_def().library.function
    called = " ".join(f.signature.name for f in library)
    for kernel in ("gelu_forward", "gelu_backward", "layer_norm_forward", "layer_norm_backward"):
        assert kernel in called, kernel
    library = gradients.get_concrete_function(False).graph.as_graph_def().library.function
    assert "gelu_forward" not in " ".join(f.signature.name for f in library)
    for got, want in zip(gradients(True), gradients(False)):
        np.testing.assert_allclose(tf.convert_to_tensor(got), tf.convert_to_tensor(want),
                                   rtol=2e-4, atol=1e-5)
