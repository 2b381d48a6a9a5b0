"""Token + (segment) + learned absolute position embeddings, then LayerNorm and dropout."""

import keras
from keras import ops

from keras_bert_kit.layers.dropout import Dropout
from keras_bert_kit.layers.layer_norm import LayerNormalization


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class TransformerEmbeddings(keras.layers.Layer):
    """The embedding block of BERT (with segments) and DistilBERT (without).

    Args:
        vocab_size: number of token ids.
        hidden_size: embedding width.
        max_sequence_length: rows of the learned position table.
        type_vocab_size: number of segment ids; 0 means no segment embeddings.
        layer_norm_epsilon: LayerNorm epsilon.
        dropout_rate: dropout after the LayerNorm.
        initializer_range: stddev of the truncated-normal initialiser.

    Call: `layer(input_ids, segment_ids=None, training=None)` with int
    `[batch, seq]` tensors; returns `[batch, seq, hidden_size]`.
    """

    def __init__(
        self,
        vocab_size,
        hidden_size,
        max_sequence_length,
        type_vocab_size=0,
        layer_norm_epsilon=1e-12,
        dropout_rate=0.1,
        initializer_range=0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.layer_norm_epsilon = layer_norm_epsilon
        self.dropout_rate = dropout_rate
        self.initializer_range = initializer_range

        initializer = keras.initializers.TruncatedNormal(stddev=initializer_range)
        # A standalone Embedding so that MaskedLMHead can tie to its matrix.
        self.token_embedding = keras.layers.Embedding(
            vocab_size,
            hidden_size,
            embeddings_initializer=initializer,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.segment_embedding = (
            keras.layers.Embedding(
                type_vocab_size,
                hidden_size,
                embeddings_initializer=initializer,
                dtype=self.dtype_policy,
                name="segment_embedding",
            )
            if type_vocab_size
            else None
        )
        self.layer_norm = LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.dropout = Dropout(dropout_rate, dtype=self.dtype_policy, name="dropout")

    def build(self, input_ids_shape, segment_ids_shape=None):
        self.token_embedding.build(input_ids_shape)
        if self.segment_embedding is not None:
            self.segment_embedding.build(input_ids_shape)
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(self.max_sequence_length, self.hidden_size),
            initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range),
        )
        self.layer_norm.build(tuple(input_ids_shape) + (self.hidden_size,))

    def call(self, input_ids, segment_ids=None, training=None):
        x = self.token_embedding(input_ids)
        seq_len = ops.shape(input_ids)[1]
        positions = ops.slice(self.position_embeddings, (0, 0), (seq_len, self.hidden_size))
        x = x + ops.cast(positions, x.dtype)[None]
        if self.segment_embedding is not None:
            if segment_ids is None:
                raise ValueError("This embedding block has segment embeddings: pass `segment_ids`.")
            x = x + self.segment_embedding(segment_ids)
        x = self.layer_norm(x)
        return self.dropout(x, training=training)

    def compute_output_shape(self, input_ids_shape, segment_ids_shape=None):
        return tuple(input_ids_shape) + (self.hidden_size,)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            max_sequence_length=self.max_sequence_length,
            type_vocab_size=self.type_vocab_size,
            layer_norm_epsilon=self.layer_norm_epsilon,
            dropout_rate=self.dropout_rate,
            initializer_range=self.initializer_range,
        )
        return config
