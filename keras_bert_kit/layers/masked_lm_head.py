"""Masked-language-model head with the output projection tied to the token embeddings."""

import keras
import tensorflow as tf
from keras import ops

from keras_bert_kit.layers.fused_dense import FusedDense
from keras_bert_kit.layers.layer_norm import LayerNormalization


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class MaskedLMHead(keras.layers.Layer):
    """Predicts the original tokens at the masked positions.

    `gather -> dense -> activation -> LayerNorm -> x E^T + b`, where `E` is the
    token-embedding matrix of `token_embedding` (tied, not copied) and `b` a
    per-token bias. Gathering first makes the cost proportional to the number
    of predictions, not to the sequence length.

    Args:
        token_embedding: the encoder's `keras.layers.Embedding` (e.g.
            `encoder.token_embedding`).
        activation: "gelu", "gelu_approximate" or "relu".
        layer_norm_epsilon: LayerNorm epsilon.
        initializer_range: stddev of the truncated-normal initialiser.

    Call: `head(sequence_output, masked_positions)` with `[batch, seq, hidden]`
    and int `[batch, num_predictions]` -> float32 logits
    `[batch, num_predictions, vocab_size]`. Without `masked_positions`,
    `sequence_output` is taken as the hidden states at the masked positions
    already (as `BertEncoder.final_states_at` gives them).
    """

    def __init__(
        self,
        token_embedding,
        activation="gelu",
        layer_norm_epsilon=1e-12,
        initializer_range=0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range

    def build(self, sequence_output_shape, masked_positions_shape=None):
        hidden_size = sequence_output_shape[-1]
        embedding_size = self.token_embedding.output_dim
        if embedding_size != hidden_size:
            raise ValueError(
                f"MaskedLMHead ties to an embedding of width {embedding_size}, "
                f"but the sequence output has width {hidden_size}."
            )
        self.dense = FusedDense(
            hidden_size,
            activation=self.activation,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range),
            dtype=self.dtype_policy,
            name="dense",
        )
        self.dense.build((None, None, hidden_size))
        self.layer_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.layer_norm.build((None, None, hidden_size))
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.token_embedding.input_dim,), initializer="zeros"
        )

    def call(self, sequence_output, masked_positions=None):
        gathered = sequence_output
        if masked_positions is not None:
            gathered = ops.take_along_axis(
                sequence_output, ops.cast(masked_positions, "int32")[:, :, None], axis=1
            )
        x = self.layer_norm(self.dense(gathered))
        embeddings = tf.cast(self.token_embedding.embeddings, x.dtype)
        # One 2-D matmul with the table read as transposed: its gradients are
        # plain matmuls too, the table's landing in its own [vocab, hidden]
        # layout. A batched einsum here trained bert_small 24% slower, and an
        # explicit transpose cost a 30k x hidden transpose of the gradient.
        batch, predictions = tf.shape(x)[0], tf.shape(x)[1]
        flat = tf.reshape(x, (-1, x.shape[-1]))
        logits = tf.matmul(flat, embeddings, transpose_b=True)
        logits = tf.nn.bias_add(tf.cast(logits, "float32"), tf.cast(self.output_bias, "float32"))
        return tf.reshape(logits, (batch, predictions, embeddings.shape[0]))

    def compute_output_shape(self, sequence_output_shape, masked_positions_shape=None):
        rows = sequence_output_shape[:2] if masked_positions_shape is None else (
            masked_positions_shape)
        return tuple(rows) + (self.token_embedding.input_dim,)

    def compute_output_spec(self, sequence_output, masked_positions=None):
        return keras.KerasTensor(
            self.compute_output_shape(
                sequence_output.shape,
                None if masked_positions is None else masked_positions.shape,
            ),
            dtype="float32",
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            token_embedding=keras.layers.serialize(self.token_embedding),
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            initializer_range=self.initializer_range,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Standalone deserialization; inside a pretrainer the head is rebuilt
        # from the encoder instead, so the tie is restored, not duplicated.
        config = dict(config)
        config["token_embedding"] = keras.layers.deserialize(config["token_embedding"])
        return cls(**config)

