"""Mean of the hidden states over the real (non-padding) tokens."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class MeanPooler(keras.layers.Layer):
    """Averages `[batch, seq, hidden]` states over positions where `padding_mask` is 1.

    The sentence embedding of sentence-transformers models (all-MiniLM-L6-v2
    among them), and an alternative to [CLS] pooling for classification. A
    row with no real token pools to zeros instead of NaN.

    Call: `pooler(sequence_output, padding_mask)` -> `[batch, hidden]`.
    """

    def call(self, sequence_output, padding_mask):
        mask = ops.cast(padding_mask, sequence_output.dtype)[:, :, None]
        total = ops.sum(sequence_output * mask, axis=1)
        count = ops.maximum(ops.sum(mask, axis=1), ops.cast(1, mask.dtype))
        return total / count

    def compute_output_shape(self, sequence_output_shape, padding_mask_shape=None):
        return (sequence_output_shape[0], sequence_output_shape[-1])
