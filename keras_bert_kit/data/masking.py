"""Dynamic masked-LM masking with tensorflow-text's masking ops.

`MaskedLMMasker` is applied to batches inside the input pipeline, so every
epoch masks every example afresh (RoBERTa's dynamic masking). Per sequence, 15%
of the non-special tokens are chosen (never [CLS], [SEP], [PAD]); of those 80%
become [MASK], 10% a random token and 10% stay as they are. With whole-word
masking, words (a piece and its `##` continuations) are chosen instead of
pieces, and all pieces of a chosen word are masked together.

tensorflow-text's `RandomItemSelector` chooses `ceil(rate * n)` items, which
over-masks short sequences (a 28-token review would get 17.9%). Here the count
is `floor(rate * n + u)` with `u ~ U[0, 1)`, whose mean is exactly `rate * n`,
and it is handed to the selector as a per-sequence rate.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from keras_bert_kit.tokenization import BertTokenizer
from keras_bert_kit.validation import check_int, check_number


class MaskedLMMasker:
    """Masks a batch of token ids for masked-LM pretraining.

    Args:
        vocabulary_size: random replacement tokens are drawn from [0, this).
        mask_token_id: the [MASK] id.
        unselectable_ids: ids never chosen ([CLS], [SEP], [PAD]).
        mask_rate: share of the selectable tokens (or words) chosen.
        max_predictions_per_seq: at most this many tokens are predicted per
            sequence; the outputs have this many columns.
        mask_token_rate, random_token_rate: how chosen tokens are replaced; the
            rest (1 - both) stay unchanged.
        continuation_ids: ids of `##` pieces; given, whole words are masked.
        seed: seeds the selections (None: a fresh random state). Seeded, a
            pipeline that masks its batches in order masks them the same way
            on every run, e.g. for a fixed evaluation set.

    Build it from a tokenizer with `MaskedLMMasker.from_tokenizer`.
    """

    def __init__(
        self,
        vocabulary_size,
        mask_token_id,
        unselectable_ids,
        mask_rate=0.15,
        max_predictions_per_seq=20,
        mask_token_rate=0.8,
        random_token_rate=0.1,
        continuation_ids=None,
        seed=None,
    ):
        check_number("mask_rate", mask_rate, 0.0, 1.0, include_minimum=False)
        check_int("max_predictions_per_seq", max_predictions_per_seq, minimum=1)
        check_number("mask_token_rate", mask_token_rate, 0.0, 1.0)
        check_number("random_token_rate", random_token_rate, 0.0, 1.0)
        if mask_token_rate + random_token_rate > 1:
            raise ValueError(
                "`mask_token_rate` and `random_token_rate` must sum to at most 1; "
                f"got {mask_token_rate!r} and {random_token_rate!r}."
            )
        self.vocabulary_size = int(vocabulary_size)
        self.mask_token_id = int(mask_token_id)
        self.unselectable_ids = sorted(int(i) for i in unselectable_ids)
        self.mask_rate = float(mask_rate)
        self.max_predictions_per_seq = max_predictions_per_seq
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        self.whole_word_masking = continuation_ids is not None
        if self.whole_word_masking:
            is_continuation = np.zeros(self.vocabulary_size, bool)
            is_continuation[np.asarray(list(continuation_ids), np.int64)] = True
            self._is_continuation = tf.constant(is_continuation)
        # Its state lives outside any dataset iterator, so each epoch draws new
        # selections even under a global seed (stateful ops would replay).
        self.seed = seed
        self._generator = (
            tf.random.Generator.from_non_deterministic_state()
            if seed is None
            else tf.random.Generator.from_seed(seed)
        )
        self._values_chooser = tf_text.MaskValuesChooser(
            self.vocabulary_size,
            self.mask_token_id,
            mask_token_rate=self.mask_token_rate,
            random_token_rate=self.random_token_rate,
        )

    @classmethod
    def from_tokenizer(cls, tokenizer: BertTokenizer, whole_word_masking=False, **kwargs):
        if tokenizer.mask_token_id is None:
            raise ValueError("The tokenizer's vocabulary has no [MASK] token.")
        unselectable = [
            i
            for i in (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
            if i is not None
        ]
        continuation = None
        if whole_word_masking:
            vocabulary = tokenizer.get_vocabulary()
            continuation = [i for i, t in enumerate(vocabulary) if t.startswith("##")]
        return cls(
            vocabulary_size=tokenizer.vocabulary_size(),
            mask_token_id=tokenizer.mask_token_id,
            unselectable_ids=unselectable,
            continuation_ids=continuation,
            **kwargs,
        )

    def _items(self, token_ids):
        """Tokens, or words of tokens, as the selector should see them."""
        if not self.whole_word_masking:
            return token_ids
        starts = tf.logical_not(tf.gather(self._is_continuation, token_ids.flat_values))
        # A sequence's first piece always starts a word (it is [CLS] in practice).
        # (An empty row has no first piece; the last one's start is out of range.)
        row_starts = tf.boolean_mask(token_ids.row_starts(), token_ids.row_lengths() > 0)
        starts = tf.tensor_scatter_nd_update(
            starts, row_starts[:, None], tf.ones_like(row_starts, tf.bool)
        )
        words = tf.RaggedTensor.from_row_starts(
            token_ids.flat_values, tf.cast(tf.where(starts)[:, 0], tf.int64)
        )
        words_per_row = tf.math.segment_sum(
            tf.cast(starts, tf.int64), token_ids.value_rowids()
        )
        words_per_row = tf.pad(words_per_row, [[0, token_ids.nrows() - tf.shape(words_per_row, tf.int64)[0]]])
        return tf.RaggedTensor.from_row_lengths(words, words_per_row)

    def _shuffle(self, values):
        return tf.gather(values, tf.argsort(self._generator.uniform(tf.shape(values))))

    def _selector(self, items):
        """A `RandomItemSelector` whose per-row rate yields an unbiased count."""
        probe = tf_text.RandomItemSelector(
            max_selections_per_batch=self.max_predictions_per_seq,
            selection_rate=self.mask_rate,
            unselectable_ids=self.unselectable_ids,
        )
        # [batch, (items)]: for words, True where no piece is unselectable.
        selectable = probe.get_selectable(items, axis=1)
        num_selectable = tf.reduce_sum(tf.cast(selectable, tf.float32), axis=1)
        wanted = tf.floor(
            num_selectable * self.mask_rate + self._generator.uniform(tf.shape(num_selectable))
        )
        # The selector picks ceil(num_selectable * rate) of the selectable
        # items; this rate makes that exactly `wanted`.
        rate = (wanted - 0.5) / tf.maximum(num_selectable, 1.0)
        return tf_text.RandomItemSelector(
            max_selections_per_batch=self.max_predictions_per_seq,
            selection_rate=rate,
            shuffle_fn=self._shuffle,
            unselectable_ids=self.unselectable_ids,
        )

    def mask(self, token_ids):
        """Masks ragged int32 `[batch, (seq)]` ids.

        Returns a dict: `input_ids` (ragged, masked), and dense
        `[batch, max_predictions_per_seq]` `masked_positions` (int32),
        `masked_ids` (the original ids, int32) and `masked_weights` (float32,
        1 for a real prediction, 0 for padding).
        """
        token_ids = tf.cast(token_ids, tf.int32)
        items = self._items(token_ids)
        masked_items, positions, original = tf_text.mask_language_model(
            items, self._selector(items), self._values_chooser, axis=1
        )
        # mask_language_model hands back token-level ids and positions.
        masked = masked_items
        if self.whole_word_masking:
            # Whole words can overshoot the cap; the tokens beyond it go back
            # to their original ids, so nothing is hidden that is not predicted.
            keep = tf.ragged.range(positions.row_lengths()) < self.max_predictions_per_seq
            dropped = tf.ragged.boolean_mask(positions, tf.logical_not(keep))
            restore = tf.ragged.boolean_mask(original, tf.logical_not(keep))
            flat_index = tf.cast(dropped.flat_values, tf.int64) + tf.gather(
                masked.row_starts(), dropped.value_rowids()
            )
            masked = masked.with_flat_values(
                tf.tensor_scatter_nd_update(
                    masked.flat_values, flat_index[:, None], restore.flat_values
                )
            )
            positions = tf.ragged.boolean_mask(positions, keep)
            original = tf.ragged.boolean_mask(original, keep)
        shape = [None, self.max_predictions_per_seq]
        return {
            "input_ids": masked,
            "masked_positions": tf.cast(positions.to_tensor(0, shape=shape), tf.int32),
            "masked_ids": tf.cast(original.to_tensor(0, shape=shape), tf.int32),
            "masked_weights": tf.cast(
                tf.ones_like(positions, tf.float32).to_tensor(0.0, shape=shape), tf.float32
            ),
        }
