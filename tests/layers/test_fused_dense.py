import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bert_kit.layers import FusedDense
from keras_bert_kit.layers.activations import get_activation


@pytest.mark.parametrize("activation", [None, "gelu", "gelu_approximate", "relu", "tanh"])
@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 6), (2, 3, 4, 6)])
def test_matches_keras_dense(activation, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer = FusedDense(5, activation=activation)
    reference = keras.layers.Dense(5, activation=get_activation(activation) if activation else None)
    reference.build(shape)
    layer.build(shape)
    layer.set_weights([w + 0.1 for w in reference.get_weights()])
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer(x), reference(x), atol=1e-6)
    compiled = tf.function(layer, jit_compile=True)
    np.testing.assert_allclose(compiled(x), reference(x), atol=1e-5)


def test_dynamic_leading_dimensions():
    layer = FusedDense(3)
    traced = tf.function(layer, input_signature=[tf.TensorSpec((None, None, 4), tf.float32)])
    assert traced(tf.ones((2, 7, 4))).shape == (2, 7, 3)


def test_mixed_precision_computes_in_policy_dtype():
    layer = FusedDense(3, activation="gelu", dtype="mixed_bfloat16")
    y = layer(np.ones((2, 4), "float32"))
    assert y.dtype == tf.bfloat16 and layer.kernel.dtype == "float32"
