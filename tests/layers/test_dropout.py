"""Dropout: Keras' contract (rate, scaling, inference), in eager, graph and XLA steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert_kit.layers import Dropout


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_drops_the_rate_and_keeps_the_expectation(mode):
    layer = Dropout(0.25, seed=3)
    x = tf.ones((200, 500))
    call = lambda v: layer(v, training=True)  # noqa: E731
    if mode != "eager":
        call = tf.function(call, jit_compile=mode == "xla")
    first, second = call(x).numpy(), call(x).numpy()
    kept = first != 0
    assert abs(kept.mean() - 0.75) < 0.005
    np.testing.assert_allclose(first[kept], 1 / 0.75, rtol=1e-6)
    assert abs(first.mean() - 1.0) < 0.01
    # Every call draws a new mask.
    assert (kept != (second != 0)).mean() > 0.2


def test_inference_and_zero_rate_pass_inputs_through():
    x = tf.random.normal((4, 8))
    np.testing.assert_array_equal(Dropout(0.5)(x), x)
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True), x)


def test_mixed_precision_keeps_the_dtype():
    layer = Dropout(0.1, dtype="mixed_bfloat16")
    out = layer(tf.ones((8, 8), tf.bfloat16), training=True)
    assert out.dtype == tf.bfloat16


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_gradient_is_the_same_mask_times_the_scale(mode):
    # The backward pass draws the mask again from the seed: it must be the same one.
    layer = Dropout(0.5, seed=0)

    def forward_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return y, tape.gradient(y, x, output_gradients=tf.fill(tf.shape(x), 3.0))

    if mode != "eager":
        forward_and_gradient = tf.function(forward_and_gradient, jit_compile=mode == "xla")
    y, gradient = forward_and_gradient(tf.ones((64, 64)))
    np.testing.assert_array_equal(gradient.numpy(), 3.0 * y.numpy())  # x is ones: y = mask * 2
    assert 0.4 < (y.numpy() == 0).mean() < 0.6


def test_bad_rate_and_config_round_trip():
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.0)
    layer = Dropout(0.3, seed=7, name="d")
    clone = Dropout.from_config(layer.get_config())
    assert (clone.rate, clone.seed, clone.name) == (0.3, 7, "d")
    assert isinstance(keras.layers.deserialize(keras.layers.serialize(layer)), Dropout)
