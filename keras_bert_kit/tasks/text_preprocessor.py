"""`TextPreprocessor`: the base of the task preprocessors."""

from __future__ import annotations

import keras


class TextPreprocessor(keras.layers.Layer):
    """Base of the task preprocessors that hold a tokenizer and a sequence length.

    They take Python objects (strings, ragged words), so Keras must not
    convert their inputs; `dataset()` turns raw data into batches.
    """

    def __init__(self, tokenizer, sequence_length=128, **kwargs):
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or (
            sequence_length < 3
        ):
            raise ValueError(
                "`sequence_length` must be an integer >= 3 ([CLS], a token, [SEP]); "
                f"got {sequence_length!r}."
            )
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
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)
