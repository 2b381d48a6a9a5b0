"""`BertPreprocessor`: text (single texts or pairs) to the encoder's id inputs.

Packing is BERT's: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, segment id 0
for `[CLS] A [SEP]` and 1 for `B [SEP]`. Pairs too long for `sequence_length`
are truncated longest-first: tokens come off the end of the longer segment, and
when both must shrink the shorter keeps half the room (rounded down). That is
Hugging Face's `truncation="longest_first"`, token for token.
"""

from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from keras_bert_kit.keras_internals import accept_raw_inputs
from keras_bert_kit.saving import from_config_with_objects
from keras_bert_kit.tokenization.tokenizer import BertTokenizer, as_string_tensor
from keras_bert_kit.tokenization.vocabulary import CLS_TOKEN, PAD_TOKEN, SEP_TOKEN
from keras_bert_kit.validation import check_int

PADDINGS = ("max_length", "longest")


def _truncate_longest_first(segments, budget):
    """Cuts ragged `[batch, (tokens)]` segments to at most `budget` tokens per row."""
    if len(segments) == 1:
        return [segments[0][:, :budget]]
    a, b = segments
    length_a, length_b = a.row_lengths(), b.row_lengths()
    a_is_shorter = length_a <= length_b
    shorter = tf.minimum(length_a, length_b)
    longer = tf.maximum(length_a, length_b)
    keep_shorter = tf.minimum(shorter, budget // 2)
    keep_longer = tf.minimum(longer, budget - keep_shorter)
    keep_a = tf.where(a_is_shorter, keep_shorter, keep_longer)
    keep_b = tf.where(a_is_shorter, keep_longer, keep_shorter)
    return [_keep_first(a, keep_a), _keep_first(b, keep_b)]


def _keep_first(ragged, counts):
    positions = tf.ragged.range(ragged.row_lengths())
    return tf.ragged.boolean_mask(ragged, positions < counts[:, None])


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class BertPreprocessor(keras.layers.Layer):
    """Turns strings into `input_ids`, `segment_ids` and `padding_mask`.

    Args:
        tokenizer: a `BertTokenizer`.
        sequence_length: the most tokens per example, [CLS] and [SEP] included.
            Use at most the encoder's position table (`for_encoder` checks it).
        padding: `"max_length"` pads every example to `sequence_length` (fixed
            shapes, as serving and TFLite want); `"longest"` pads a batch to its
            longest example (less work in training).

    Call: `preprocessor(x, y=None, sample_weight=None)`, the calling
    convention of every preprocessor here and in keras-hub. `x` is a string, a
    list or 1-D tensor of strings, or a **tuple** `(texts_a, texts_b)` of those
    for pairs (a list is always a batch). It becomes a dict of int32 tensors
    `[batch, seq]` (`[seq]` for a single string): `input_ids`, `segment_ids`,
    `padding_mask` (1 = real token). `y` and `sample_weight` pass through; the
    result is packed by `keras.utils.pack_x_y_sample_weight`: the dict alone
    without `y`, else `(features, y)` or `(features, y, sample_weight)`. So
    `dataset.map(preprocessor)` works on elements `x`, `(x, y)` and
    `(x, y, sample_weight)` (a pair nests: `((texts_a, texts_b), y)`).
    """

    def __init__(self, tokenizer, sequence_length=512, padding="max_length", **kwargs):
        super().__init__(**kwargs)
        accept_raw_inputs(self)

        if not isinstance(tokenizer, BertTokenizer):
            raise ValueError(
                f"`tokenizer` must be a BertTokenizer; got {type(tokenizer).__name__}."
            )
        check_int("sequence_length", sequence_length, minimum=3, hint="[CLS], a token, [SEP]")
        if padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {PADDINGS}; got {padding!r}.")
        missing = [
            token
            for token, token_id in (
                (CLS_TOKEN, tokenizer.cls_token_id),
                (SEP_TOKEN, tokenizer.sep_token_id),
                (PAD_TOKEN, tokenizer.pad_token_id),
            )
            if token_id is None
        ]
        if missing:
            raise ValueError(f"The tokenizer's vocabulary lacks {missing}, which packing needs.")
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.padding = padding
        self.built = True

    @classmethod
    def for_encoder(cls, encoder_or_config, tokenizer, sequence_length=None, **kwargs):
        """A preprocessor checked against an encoder (or its config).

        `sequence_length` defaults to the encoder's position table; a longer
        one, or a vocabulary larger than the encoder's embedding table, raises.
        """
        config = getattr(encoder_or_config, "config", encoder_or_config)
        limit = config.max_sequence_length
        sequence_length = limit if sequence_length is None else sequence_length
        if isinstance(sequence_length, int) and sequence_length > limit:
            raise ValueError(
                f"`sequence_length` {sequence_length} exceeds the encoder's position table "
                f"of {limit} positions."
            )
        if tokenizer.vocabulary_size() > config.vocab_size:
            raise ValueError(
                f"The tokenizer's vocabulary ({tokenizer.vocabulary_size()} tokens) is larger "
                f"than the encoder's embedding table ({config.vocab_size} rows)."
            )
        return cls(tokenizer, sequence_length=sequence_length, **kwargs)

    def _segments(self, inputs):
        """The input as a list of 1-D string tensors, and whether it was one string."""
        parts = list(inputs) if isinstance(inputs, tuple) else [inputs]
        if not 1 <= len(parts) <= 2:
            raise ValueError(
                f"Pass one text or a pair (texts_a, texts_b); got a tuple of {len(parts)}."
            )
        names = ["texts"] if len(parts) == 1 else ["texts_a", "texts_b"]
        tensors = [as_string_tensor(p, what=n) for p, n in zip(parts, names)]
        ranks = {t.shape.rank for t in tensors}
        if len(ranks) > 1 or not ranks <= {0, 1}:
            raise ValueError(
                "Texts must be a string or a 1-D batch of strings (both segments alike); "
                f"got shapes {[tuple(t.shape) for t in tensors]}."
            )
        scalar = ranks == {0}
        if scalar:
            tensors = [t[tf.newaxis] for t in tensors]
        if len(tensors) == 2:
            a, b = (tf.shape(t)[0] for t in tensors)
            tf.debugging.assert_equal(
                a, b, message="texts_a and texts_b must hold the same number of texts"
            )
        return tensors, scalar

    def call(self, x, y=None, sample_weight=None):
        return keras.utils.pack_x_y_sample_weight(self._features(x), y, sample_weight)

    def _features(self, inputs):
        segments, scalar = self._segments(inputs)
        outputs = self.pack([self.tokenizer.tokenize(s) for s in segments])
        if scalar:
            outputs = {name: value[0] for name, value in outputs.items()}
        return outputs

    def pack(self, tokenized):
        """Packs token ids into the encoder's inputs, as `call` does after tokenizing.

        `tokenized`: a list of one or two int32 ragged `[batch, (tokens)]`
        segments (ids of this preprocessor's tokenizer), for callers that
        tokenize text their own way (e.g. keeping "[MASK]" whole). Returns
        `input_ids`, `segment_ids` and `padding_mask`, int32 `[batch, seq]`.
        """
        if not 1 <= len(tokenized) <= 2:
            raise ValueError(f"Pack one or two segments; got {len(tokenized)}.")
        # [CLS] + one [SEP] per segment.
        budget = self.sequence_length - 1 - len(tokenized)
        if budget < len(tokenized):
            raise ValueError(
                f"`sequence_length` {self.sequence_length} leaves no room for the text of "
                f"{len(tokenized)} segments."
            )
        trimmed = _truncate_longest_first(tokenized, budget)
        input_ids, segment_ids = tf_text.combine_segments(
            trimmed,
            start_of_sequence_id=self.tokenizer.cls_token_id,
            end_of_segment_id=self.tokenizer.sep_token_id,
        )
        if self.padding == "max_length":
            input_ids, padding_mask = tf_text.pad_model_inputs(
                input_ids, self.sequence_length, pad_value=self.tokenizer.pad_token_id
            )
            segment_ids, _ = tf_text.pad_model_inputs(segment_ids, self.sequence_length)
        else:
            # Every row holds at least [CLS] and a [SEP] per segment; an empty
            # batch gets that width too, so models reading [CLS] answer it.
            width = tf.maximum(input_ids.bounding_shape(axis=1), 1 + len(trimmed))
            shape = tf.stack([input_ids.nrows(), width])
            padding_mask = tf.ones_like(input_ids).to_tensor(shape=shape)
            input_ids = input_ids.to_tensor(self.tokenizer.pad_token_id, shape=shape)
            segment_ids = segment_ids.to_tensor(shape=shape)
        return {
            "input_ids": tf.cast(input_ids, tf.int32),
            "segment_ids": tf.cast(segment_ids, tf.int32),
            "padding_mask": tf.cast(padding_mask, tf.int32),
        }

    def compute_output_spec(self, x, y=None, sample_weight=None):
        first = x[0] if isinstance(x, tuple) else x
        length = self.sequence_length if self.padding == "max_length" else None
        shape = tuple(first.shape) + (length,)
        features = {
            name: keras.KerasTensor(shape, dtype="int32")
            for name in ("input_ids", "segment_ids", "padding_mask")
        }
        return keras.utils.pack_x_y_sample_weight(features, y, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update(
            tokenizer=keras.saving.serialize_keras_object(self.tokenizer),
            sequence_length=self.sequence_length,
            padding=self.padding,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return from_config_with_objects(cls, config, ("tokenizer",))
