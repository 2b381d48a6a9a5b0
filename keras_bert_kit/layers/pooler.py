"""BERT's pooler: a tanh dense layer over the [CLS] position."""

import keras

from keras_bert_kit.layers.fused_dense import FusedDense


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class CLSPooler(keras.layers.Layer):
    """`tanh(W h_[CLS] + b)`; the input to BERT's next-sentence head.

    Call: `pooler(sequence_output)` with `[batch, seq, hidden]` -> `[batch, hidden]`.
    """

    def __init__(self, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range

    def build(self, sequence_output_shape):
        hidden_size = sequence_output_shape[-1]
        self.dense = FusedDense(
            hidden_size,
            activation="tanh",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range),
            dtype=self.dtype_policy,
            name="dense",
        )
        self.dense.build((sequence_output_shape[0], hidden_size))

    def call(self, sequence_output):
        return self.dense(sequence_output[:, 0, :])

    def compute_output_shape(self, sequence_output_shape):
        return (sequence_output_shape[0], sequence_output_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(initializer_range=self.initializer_range)
        return config
