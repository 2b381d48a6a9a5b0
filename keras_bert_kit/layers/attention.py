"""Multi-head self-attention with a fused QKV projection and a float32 softmax."""

import math

import keras
import tensorflow as tf

from keras_bert_kit.layers.fused_dense import FusedDense

# Added to the scores of padding keys. It fits in float16 and bfloat16 as well
# as float32, so no cast can turn it into -inf; it is finite so that a row with
# no real key gives a uniform distribution instead of NaN; and exp(-30000)
# underflows to exactly 0 in float32, where the softmax runs.
MASK_VALUE = -30000.0


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Scaled dot-product self-attention over `num_heads` heads.

    Query, key and value come from one `[hidden, 3 * hidden]` projection: one
    large matmul instead of three smaller ones. The softmax runs in float32
    whatever the compute dtype, so mixed precision neither overflows nor loses
    the mask.

    Call: `layer(x, padding_mask, training=None)` with `x` `[batch, seq, hidden]`
    and an int `padding_mask` `[batch, seq]` (1 = real token, 0 = padding). The
    mask stays an integer tensor so that mixed-precision autocasting never
    touches it. Returns `(output, probabilities)`; `probabilities` is float32
    `[batch, heads, seq, seq]`, taken before attention dropout.
    """

    def __init__(self, num_heads, dropout_rate=0.1, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range

    def build(self, x_shape, padding_mask_shape=None):
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
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def call(self, x, padding_mask, training=None):
        batch, seq_len = tf.shape(x)[0], tf.shape(x)[1]
        qkv = tf.reshape(
            self.qkv_dense(x), (batch, seq_len, 3, self.num_heads, self.head_size)
        )
        # [3, batch, heads, seq, head_size]: q, k and v as batches of matrices.
        qkv = tf.transpose(qkv, (2, 0, 3, 1, 4))
        query, key, value = qkv[0], qkv[1], qkv[2]
        # Scale and mask in one pass over float32 scores: grappler fuses
        # BatchMatMul -> Mul -> Add into one oneDNN kernel.
        bias = (1.0 - tf.cast(padding_mask, tf.float32))[:, None, None, :] * MASK_VALUE
        scores = tf.matmul(query, key, transpose_b=True)
        scores = tf.cast(scores, tf.float32) * (1.0 / math.sqrt(self.head_size)) + bias
        probabilities = tf.nn.softmax(scores, axis=-1)
        weights = self.dropout(tf.cast(probabilities, x.dtype), training=training)
        context = tf.transpose(tf.matmul(weights, value), (0, 2, 1, 3))
        context = tf.reshape(context, (batch, seq_len, self.num_heads * self.head_size))
        return self.output_dense(context), probabilities

    def compute_output_shape(self, x_shape, padding_mask_shape=None):
        return tuple(x_shape), (x_shape[0], self.num_heads, x_shape[1], x_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            dropout_rate=self.dropout_rate,
            initializer_range=self.initializer_range,
        )
        return config
