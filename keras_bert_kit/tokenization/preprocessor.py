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

from keras_bert_kit.keras_internals import accept_raw_inputs
from keras_bert_kit.saving import from_config_with_objects
from keras_bert_kit.tokenization.tokenizer import BertTokenizer, as_string_tensor
from keras_bert_kit.tokenization.vocabulary import CLS_TOKEN, PAD_TOKEN, SEP_TOKEN
from keras_bert_kit.validation import check_int

PADDINGS = ("max_length", "longest")


def _kept_lengths(lengths, budget):
    """How many tokens of each segment stay: int32 `[batch]` per segment, longest first."""
    if len(lengths) == 1:
        return [tf.minimum(lengths[0], budget)]
    length_a, length_b = lengths
    a_is_shorter = length_a <= length_b
    shorter = tf.minimum(length_a, length_b)
    longer = tf.maximum(length_a, length_b)
    keep_shorter = tf.minimum(shorter, budget // 2)
    keep_longer = tf.minimum(longer, budget - keep_shorter)
    return [tf.where(a_is_shorter, keep_shorter, keep_longer),
            tf.where(a_is_shorter, keep_longer, keep_shorter)]


def _segment_parts(ragged):
    """(values, row starts, row lengths) of a ragged `[batch, (tokens)]`, int32."""
    values = tf.cast(ragged.flat_values, tf.int32)
    starts = tf.cast(ragged.row_starts(), tf.int32)
    lengths = tf.cast(ragged.row_lengths(), tf.int32)
    return values, starts, lengths


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
        # Dense index arithmetic rather than ragged ops: every op here is a
        # TFLite builtin, so the same packing runs in text-in .tflite models.
        parts = [_segment_parts(segment) for segment in tokenized]
        kept = _kept_lengths([lengths for _, _, lengths in parts], budget)
        total = 1 + sum(kept) + len(kept)  # [CLS], the segments, a [SEP] each
        if self.padding == "max_length":
            width = self.sequence_length
        else:
            # An empty batch still gets [CLS] and a [SEP] per segment.
            width = tf.maximum(tf.reduce_max(total), 1 + len(kept))
        # `[batch, width]`: each row's positions.
        position = (tf.range(width, dtype=tf.int32)[tf.newaxis, :]
                    + tf.zeros_like(total)[:, tf.newaxis])
        input_ids = tf.where(position == 0, self.tokenizer.cls_token_id,
                             self.tokenizer.pad_token_id)
        segment_ids = tf.zeros_like(input_ids)
        begin = tf.ones_like(total)[:, tf.newaxis]  # where the segment's tokens begin
        for segment_id, ((values, starts, _), keep) in enumerate(zip(parts, kept)):
            keep = keep[:, tf.newaxis]
            end = begin + keep  # this segment's [SEP]
            # One pad id after the values, so that gathers stay in bounds
            # on rows (and batches) without tokens.
            padded = tf.concat([values, [self.tokenizer.pad_token_id]], axis=0)
            index = tf.clip_by_value(starts[:, tf.newaxis] + position - begin, 0,
                                     tf.size(values))
            tokens = tf.gather(padded, index)
            in_segment = (position >= begin) & (position < end)
            input_ids = tf.where(in_segment, tokens, input_ids)
            input_ids = tf.where(position == end, self.tokenizer.sep_token_id, input_ids)
            if segment_id:
                segment_ids = tf.where(in_segment | (position == end), segment_id, segment_ids)
            begin = end + 1
        padding_mask = tf.cast(position < total[:, tf.newaxis], tf.int32)
        return {
            "input_ids": input_ids,
            "segment_ids": segment_ids,
            "padding_mask": padding_mask,
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
