"""`SequenceClassifierPreprocessor`: texts or text pairs to encoder inputs, labels passed through."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_bert_kit.data.pipelines import default_bucket_lengths, text_dataset
from keras_bert_kit.tasks.text_preprocessor import TextPreprocessor
from keras_bert_kit.tokenization import BertPreprocessor


def _check_texts(texts, what):
    if isinstance(texts, str):
        raise ValueError(f"`{what}` must be a list of texts, not a single string.")
    if isinstance(texts, (tf.Tensor, np.ndarray)):
        return texts
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"`{what}[{i}]` must be a string; got {type(text).__name__}.")
    return texts


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class SequenceClassifierPreprocessor(TextPreprocessor):
    """Strings (or pairs of strings) to the encoder's inputs, labels passed through.

    Args:
        tokenizer: a `BertTokenizer`.
        sequence_length: the most tokens per example, [CLS] and [SEP] included.

    Call: `preprocessor(x, y=None, sample_weight=None)` where `x` is a string,
    a batch of strings (list or 1-D tensor) or a tuple `(texts_a, texts_b)` of
    those for pairs. Returns `x` as id features (int32 `input_ids`,
    `segment_ids`, `padding_mask`, `[batch, seq]` padded to the batch's
    longest example), packed with `y` and `sample_weight` by
    `keras.utils.pack_x_y_sample_weight`. So `dataset.map(preprocessor)`
    works on elements `x`, `(x, y)`, `(x, y, sample_weight)`; a pair nests,
    `((texts_a, texts_b), y)`.
    """

    def __init__(self, tokenizer, sequence_length=128, **kwargs):
        super().__init__(tokenizer, sequence_length, **kwargs)
        self.packer = BertPreprocessor(tokenizer, sequence_length=sequence_length,
                                       padding="longest")

    def call(self, x, y=None, sample_weight=None):
        return keras.utils.pack_x_y_sample_weight(self.packer(x), y, sample_weight)

    def dataset(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False, seed=None):
        """A batched, preprocessed `tf.data.Dataset` of raw texts (and labels).

        Shuffled datasets are bucketed by length (less padding); unshuffled
        ones keep the input order, so `predict` outputs line up with `x`.
        """
        if isinstance(x, tuple):
            if len(x) != 2 or any(isinstance(part, str) for part in x):
                raise ValueError(
                    f"A tuple is a pair (texts_a, texts_b) of text lists; got a tuple of "
                    f"{len(x)} {type(x[0]).__name__ if x else 'item'}s. Pass a list for a "
                    "batch of texts."
                )
            texts, pairs = _check_texts(x[0], "texts_a"), _check_texts(x[1], "texts_b")
        else:
            texts, pairs = _check_texts(x, "x"), None
        if y is not None:
            y = np.asarray(y)
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"Labels must be integer class ids; got dtype {y.dtype}.")
        count = len(texts)
        return text_dataset(
            texts,
            self.packer,
            labels=y,
            text_pairs=pairs,
            sample_weights=sample_weight,
            batch_size=batch_size,
            bucket_lengths=default_bucket_lengths(self.sequence_length) if shuffle else None,
            shuffle_buffer_size=count if shuffle else 0,
            seed=seed,
        )
