"""`TextPreprocessor`: the base of the task preprocessors, and their one calling convention."""

from __future__ import annotations

import keras

from keras_bert_kit.keras_internals import accept_raw_inputs
from keras_bert_kit.saving import from_config_with_objects
from keras_bert_kit.validation import check_int


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class TextPreprocessor(keras.layers.Layer):
    """Base of the task preprocessors that hold a tokenizer and a sequence length.

    Every preprocessor is called the same way, as keras-hub's are:
    `preprocessor(x, y=None, sample_weight=None)` turns raw `x` into the id
    features the task model takes (and `y`, `sample_weight` into its targets
    and weights), packed by `keras.utils.pack_x_y_sample_weight`: the
    features alone without `y`, else `(features, y)` or
    `(features, y, sample_weight)`. It runs as TensorFlow ops, so
    `dataset.map(preprocessor)` preprocesses a `tf.data.Dataset` of raw
    elements `x`, `(x, y)` or `(x, y, sample_weight)`, and `Task.fit`,
    `evaluate` and `predict` need nothing task-specific to use it.
    `dataset()` makes batches of raw Python data (lists of texts or words).

    They take strings and ragged words, so Keras must not convert their inputs.
    """

    def __init__(self, tokenizer, sequence_length=128, **kwargs):
        super().__init__(**kwargs)
        accept_raw_inputs(self)
        check_int("sequence_length", sequence_length, minimum=3, hint="[CLS], a token, [SEP]")
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(
            tokenizer=keras.saving.serialize_keras_object(self.tokenizer),
            sequence_length=self.sequence_length,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return from_config_with_objects(cls, config, ("tokenizer",))
