"""Post-LayerNorm transformer encoder block (BERT, DistilBERT)."""

import keras
import tensorflow as tf

from keras_bert_kit.layers.dropout import Dropout
from keras_bert_kit.layers.layer_norm import LayerNormalization
from keras_bert_kit.layers.fused_dense import FusedDense
from keras_bert_kit.layers.attention import MultiHeadSelfAttention


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class TransformerBlock(keras.layers.Layer):
    """`x = LN(x + Attention(x)); x = LN(x + FFN(x))`, dropout after each sublayer.

    Args:
        num_heads: attention heads.
        intermediate_size: width of the feed-forward layer.
        activation: "gelu" (exact erf), "gelu_approximate" (tanh) or "relu".
        dropout_rate: dropout on each sublayer's output.
        attention_dropout_rate: dropout on the attention probabilities.
        layer_norm_epsilon: LayerNorm epsilon.
        initializer_range: stddev of the truncated-normal initialiser.

    Call: `block(x, padding_mask, training=None, query_positions=None)` ->
    `(output, attention_probabilities)`. With an int `query_positions`
    `[batch, n]`, only those rows are computed (keys and values still see
    every position): the output is `[batch, n, hidden]`, equal to those rows
    of the full output. Heads that read a few positions (MLM, NSP) then skip
    most of the last layer.
    """

    def __init__(
        self,
        num_heads,
        intermediate_size,
        activation="gelu",
        dropout_rate=0.1,
        attention_dropout_rate=0.1,
        layer_norm_epsilon=1e-12,
        initializer_range=0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range

    def build(self, x_shape, padding_mask_shape=None, query_positions_shape=None):
        hidden_size = x_shape[-1]
        initializer = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        policy = self.dtype_policy
        self.attention = MultiHeadSelfAttention(
            self.num_heads,
            dropout_rate=self.attention_dropout_rate,
            initializer_range=self.initializer_range,
            dtype=policy,
            name="attention",
        )
        self.attention.build(x_shape)
        self.attention_layer_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="attention_layer_norm"
        )
        self.attention_layer_norm.build(x_shape)
        self.intermediate_dense = FusedDense(
            self.intermediate_size,
            activation=self.activation,
            kernel_initializer=initializer,
            dtype=policy,
            name="intermediate_dense",
        )
        self.intermediate_dense.build(x_shape)
        self.output_dense = FusedDense(
            hidden_size, kernel_initializer=initializer, dtype=policy, name="output_dense"
        )
        self.output_dense.build(tuple(x_shape[:-1]) + (self.intermediate_size,))
        self.output_layer_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="output_layer_norm"
        )
        self.output_layer_norm.build(x_shape)
        self.dropout = Dropout(self.dropout_rate, dtype=policy)

    def call(self, x, padding_mask, training=None, query_positions=None):
        attended, probabilities = self.attention(
            x, padding_mask, training=training, query_positions=query_positions
        )
        if query_positions is not None:
            x = tf.gather(x, query_positions, batch_dims=1)
        x = self.attention_layer_norm(x + self.dropout(attended, training=training))
        hidden = self.output_dense(self.intermediate_dense(x))
        x = self.output_layer_norm(x + self.dropout(hidden, training=training))
        return x, probabilities

    def compute_output_shape(self, x_shape, padding_mask_shape=None, query_positions_shape=None):
        # The residual stream keeps the attention output's shape.
        return self.attention.compute_output_shape(
            x_shape, padding_mask_shape, query_positions_shape
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            activation=self.activation,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            layer_norm_epsilon=self.layer_norm_epsilon,
            initializer_range=self.initializer_range,
        )
        return config
