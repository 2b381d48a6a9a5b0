"""TransformerBlock: computing only some query rows gives exactly those rows."""

import numpy as np
import pytest
import tensorflow as tf

from keras_bert_kit.layers import TransformerBlock
from tests.conftest import randomize_weights


def block_and_inputs(seed=0):
    block = TransformerBlock(num_heads=4, intermediate_size=64, dropout_rate=0.0,
                             attention_dropout_rate=0.0)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(3, 10, 32)), tf.float32)
    padding_mask = (np.arange(10)[None] < np.array([[10], [7], [4]])).astype("int32")
    block(x, padding_mask)
    randomize_weights(block, seed)
    return block, x, padding_mask


def test_query_positions_give_the_rows_of_the_full_output():
    block, x, padding_mask = block_and_inputs()
    # [CLS] first, then any positions: repeated, unsorted, even padding ones.
    positions = np.array([[0, 9, 3, 3], [0, 1, 6, 2], [0, 3, 8, 1]], "int32")
    full, full_probabilities = block(x, padding_mask)
    rows, probabilities = block(x, padding_mask, query_positions=positions)
    assert tuple(rows.shape) == (3, 4, 32) and tuple(probabilities.shape) == (3, 4, 4, 10)
    np.testing.assert_allclose(rows, tf.gather(full, positions, batch_dims=1), atol=1e-5)
    np.testing.assert_allclose(
        probabilities, tf.gather(full_probabilities, positions, axis=2, batch_dims=1), atol=1e-6)


def test_query_positions_give_the_same_gradients():
    block, x, padding_mask = block_and_inputs(seed=1)
    positions = np.array([[0, 2, 5], [0, 6, 1], [0, 3, 2]], "int32")
    weights = tf.constant(np.random.default_rng(2).normal(size=(3, 3, 32)), tf.float32)

    def gradients(pruned):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if pruned:
                rows, _ = block(x, padding_mask, query_positions=positions)
            else:
                rows = tf.gather(block(x, padding_mask)[0], positions, batch_dims=1)
            loss = tf.reduce_sum(rows * weights)
        return tape.gradient(loss, [x] + block.trainable_weights)

    for pruned, full in zip(gradients(True), gradients(False)):
        np.testing.assert_allclose(pruned, full, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_symbolic_output_shapes(dtype):
    import keras

    x = keras.Input((None, 32))
    padding_mask = keras.Input((None,), dtype="int32")
    positions = keras.Input((5,), dtype="int32")
    block = TransformerBlock(num_heads=4, intermediate_size=64, dtype=dtype)
    rows, probabilities = block(x, padding_mask, query_positions=positions)
    assert tuple(rows.shape) == (None, 5, 32)
    assert tuple(probabilities.shape) == (None, 4, 5, None)
