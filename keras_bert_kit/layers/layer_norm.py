"""LayerNormalization whose training pass runs the fused kernels of `training_kernels`."""

import keras
import tensorflow as tf

from keras_bert_kit.layers import training_kernels
from keras_bert_kit.layers.training_flag import by_training


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` (same arguments, weights and outputs).

    In training, a LayerNorm over the last axis with `gamma` and `beta` runs
    `training_kernels.layer_norm`: one fused loop forward and one backward
    where Keras' ops take about a dozen passes. Inference, and every other
    setting, is Keras' own computation.
    """

    def call(self, inputs, training=None):
        if not self._uses_training_kernel(inputs):
            return super().call(inputs)

        def fused():
            outputs = training_kernels.layer_norm(
                inputs,
                tf.cast(self.gamma, tf.float32),
                tf.cast(self.beta, tf.float32),
                self.epsilon,
            )
            return tf.cast(outputs, self.compute_dtype)

        return by_training(training, fused, lambda: super(LayerNormalization, self).call(inputs))

    def _uses_training_kernel(self, inputs):
        rank = len(inputs.shape)
        return (
            self.axis in ([rank - 1], [-1])
            and self.center
            and self.scale
            and not self.rms_scaling
        )
