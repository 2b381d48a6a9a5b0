"""Multi-head self-attention with a fused QKV projection and a float32 softmax."""

import math

import keras
import tensorflow as tf

from keras_bert_kit.layers.dropout import Dropout
from keras_bert_kit.layers.fused_dense import FusedDense

# Added to the scores of padding keys. It fits in float16 and bfloat16 as well
# as float32, so no cast can turn it into -inf; it is finite so that a row with
# no real key gives a uniform distribution instead of NaN; and exp(-30000)
# underflows to exactly 0 in float32, where the softmax runs.
MASK_VALUE = -30000.0


def self_attention_output_shapes(x_shape, num_heads, query_positions_shape=None):
    """Shapes of (output, probabilities) of self-attention over `x_shape` inputs."""
    queries = x_shape[1] if query_positions_shape is None else query_positions_shape[1]
    return (
        (x_shape[0], queries, x_shape[2]),
        (x_shape[0], num_heads, queries, x_shape[1]),
    )


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Scaled dot-product self-attention over `num_heads` heads.

    Query, key and value come from one `[hidden, 3 * hidden]` projection: one
    large matmul instead of three smaller ones. The softmax runs in float32
    whatever the compute dtype, so mixed precision neither overflows nor loses
    the mask.

    Call: `layer(x, padding_mask, training=None, query_positions=None)` with
    `x` `[batch, seq, hidden]` and an int `padding_mask` `[batch, seq]` (1 =
    real token, 0 = padding). The mask stays an integer tensor so that
    mixed-precision autocasting never touches it. Returns `(output,
    probabilities)`; `probabilities` is float32 `[batch, heads, queries, seq]`,
    taken before attention dropout. Queries are all `seq` positions, or only
    those in the int `query_positions` `[batch, n]`: the output then has `n`
    rows, equal to those rows of the full output, at a fraction of the cost.
    """

    def __init__(self, num_heads, dropout_rate=0.1, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range

    def build(self, x_shape, padding_mask_shape=None, query_positions_shape=None):
        hidden_size = x_shape[-1]
        if hidden_size % self.num_heads:
            raise ValueError(
                f"Input width {hidden_size} is not divisible by num_heads={self.num_heads}."
            )
        self.head_size = hidden_size // self.num_heads
        initializer = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.qkv_dense = FusedDense(
            3 * hidden_size,
            kernel_initializer=initializer,
            dtype=self.dtype_policy,
            name="qkv_dense",
        )
        self.qkv_dense.build(x_shape)
        self.output_dense = FusedDense(
            hidden_size,
            kernel_initializer=initializer,
            dtype=self.dtype_policy,
            name="output_dense",
        )
        self.output_dense.build(x_shape)
        self.dropout = Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def call(self, x, padding_mask, training=None, query_positions=None):
        hidden_size = self.num_heads * self.head_size
        if query_positions is None:
            query, key, value = self._split_heads(self.qkv_dense(x), 3)
        else:
            rows = tf.gather(x, query_positions, batch_dims=1)
            (query,) = self._split_heads(self.qkv_dense.call_units(rows, 0, hidden_size), 1)
            key, value = self._split_heads(
                self.qkv_dense.call_units(x, hidden_size, 3 * hidden_size), 2
            )
        # Scale and mask in one pass over float32 scores: grappler fuses
        # BatchMatMul -> Mul -> Add into one oneDNN kernel.
        # `[batch, 1, 1, len]` by reshape: slicing with new axes is a
        # StridedSlice that TFLite has no builtin kernel for.
        mask_shape = tf.shape(padding_mask)
        bias = tf.reshape(
            (1.0 - tf.cast(padding_mask, tf.float32)) * MASK_VALUE,
            (mask_shape[0], 1, 1, mask_shape[1]),
        )
        scores = tf.matmul(query, key, transpose_b=True)
        scores = tf.cast(scores, tf.float32) * (1.0 / math.sqrt(self.head_size)) + bias
        probabilities = tf.nn.softmax(scores, axis=-1)
        weights = self.dropout(tf.cast(probabilities, x.dtype), training=training)
        context = tf.transpose(tf.matmul(weights, value), (0, 2, 1, 3))
        context = tf.reshape(context, (tf.shape(query)[0], tf.shape(query)[2], hidden_size))
        return self.output_dense(context), probabilities

    def _split_heads(self, projected, parts):
        """`[batch, len, parts * hidden]` -> `parts` tensors `[batch, heads, len, head_size]`."""
        shape = tf.shape(projected)
        split = tf.reshape(
            projected, (shape[0], shape[1], parts, self.num_heads, self.head_size)
        )
        return tf.unstack(tf.transpose(split, (2, 0, 3, 1, 4)), num=parts)

    def compute_output_shape(self, x_shape, padding_mask_shape=None, query_positions_shape=None):
        return self_attention_output_shapes(x_shape, self.num_heads, query_positions_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            dropout_rate=self.dropout_rate,
            initializer_range=self.initializer_range,
        )
        return config
