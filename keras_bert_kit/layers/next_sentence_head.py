"""Next-sentence-prediction head."""

import keras
from keras import ops

from keras_bert_kit.layers.fused_dense import FusedDense


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class NextSentenceHead(keras.layers.Layer):
    """Two-way classifier on the pooled output for next-sentence prediction.

    Label convention (the original BERT and Hugging Face one): 0 means segment B
    is the actual continuation of segment A; 1 means B is a random segment.

    Call: `head(pooled_output)` `[batch, hidden]` -> float32 logits `[batch, 2]`.
    """

    def __init__(self, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range

    def build(self, pooled_output_shape):
        self.dense = FusedDense(
            2,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range),
            dtype=self.dtype_policy,
            name="dense",
        )
        self.dense.build(pooled_output_shape)

    def call(self, pooled_output):
        return ops.cast(self.dense(pooled_output), "float32")

    def compute_output_shape(self, pooled_output_shape):
        return (pooled_output_shape[0], 2)

    def compute_output_spec(self, pooled_output):
        return keras.KerasTensor((pooled_output.shape[0], 2), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(initializer_range=self.initializer_range)
        return config
