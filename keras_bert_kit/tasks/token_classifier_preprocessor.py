"""`TokenClassifierPreprocessor`: words and word tags to encoder inputs, token tags and weights.

Each word is tokenized on its own; its tag goes to its first piece, and its
other pieces are left out of the loss (sample weight 0). A word that tokenizes
to nothing (only control characters, say) becomes one [UNK], so no word loses
its tag.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from keras_bert_kit.tasks.text_preprocessor import TextPreprocessor

AUTOTUNE = tf.data.AUTOTUNE

PADDINGS = ("longest", "max_length")


def check_sentences(words, tags):
    """Lists of lists of words (and tags), with errors that name the sentence."""
    if isinstance(words, (str, bytes)) or not hasattr(words, "__len__"):
        raise ValueError("`words` must be a list of sentences, each a list of words.")
    words = [list(sentence) for sentence in words]
    if not words:
        raise ValueError("`words` is empty: no sentences.")
    for i, sentence in enumerate(words):
        if not sentence:
            raise ValueError(f"Sentence {i} has no words.")
        for j, word in enumerate(sentence):
            if not isinstance(word, str):
                raise ValueError(
                    f"Sentence {i}, word {j} must be a string; got {type(word).__name__}."
                )
    if tags is None:
        return words, None
    tags = [list(sentence_tags) for sentence_tags in tags]
    if len(tags) != len(words):
        raise ValueError(f"{len(words)} sentences of words but {len(tags)} of tags.")
    for i, (sentence, sentence_tags) in enumerate(zip(words, tags)):
        if len(sentence) != len(sentence_tags):
            raise ValueError(
                f"Sentence {i} has {len(sentence)} words but {len(sentence_tags)} tags."
            )
        for j, tag in enumerate(sentence_tags):
            if isinstance(tag, bool) or not isinstance(tag, (int, np.integer)) or tag < 0:
                raise ValueError(
                    f"Sentence {i}, tag {j} must be a non-negative integer id; got {tag!r}."
                )
    return words, tags


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class TokenClassifierPreprocessor(TextPreprocessor):
    """Words (and word tags) to the encoder's inputs, token labels and loss weights.

    Args:
        tokenizer: a `BertTokenizer`.
        sequence_length: the most tokens per sentence, [CLS] and [SEP]
            included; longer sentences are cut in training. `predict_tags`
            splits them into windows instead, so every word gets a tag.

    Call: `preprocessor(words, tags=None, sample_weight=None)` with `words` a
    ragged `[batch, (words)]` string tensor and `tags` a ragged `[batch, (words)]`
    int tensor. Returns `features`, or `(features, token_tags, token_weights)`
    with tags: `[batch, seq]` tags at first pieces (0 elsewhere) and weights
    1.0 at first pieces, 0.0 elsewhere (times a per-sentence `sample_weight`).
    """

    def word_pieces(self, words):
        """Ragged `[batch, (words), (pieces)]` ids of ragged `[batch, (words)]` words."""
        words = tf.ragged.constant(words) if isinstance(words, list) else words
        pieces = self.tokenizer.tokenize(words.flat_values)
        if isinstance(pieces, tf.Tensor):  # A batch of one word comes back dense.
            pieces = tf.RaggedTensor.from_tensor(pieces)
        count = tf.shape(pieces.row_lengths(), out_type=tf.int64)[0]
        unknown = tf.fill([count, 1], tf.constant(self.tokenizer.unk_token_id, pieces.dtype))
        with_unknown = tf.concat([pieces, tf.RaggedTensor.from_tensor(unknown)], axis=1)
        keep = tf.maximum(pieces.row_lengths(), 1)
        positions = tf.ragged.range(with_unknown.row_lengths())
        pieces = tf.ragged.boolean_mask(with_unknown, positions < keep[:, None])
        return tf.RaggedTensor.from_row_lengths(pieces, words.row_lengths())

    def _pack(self, words, tags=None, sample_weight=None, padding="longest"):
        pieces = self.word_pieces(words)
        all_tokens = pieces.merge_dims(1, 2)
        counts = pieces.values.row_lengths()  # pieces per word
        first = pieces.with_values(tf.ragged.range(counts) == 0).merge_dims(1, 2)
        budget = self.sequence_length - 2
        tokens, first = all_tokens[:, :budget], first[:, :budget]
        input_ids, segment_ids = tf_text.combine_segments(
            [tokens],
            start_of_sequence_id=self.tokenizer.cls_token_id,
            end_of_segment_id=self.tokenizer.sep_token_id,
        )
        length = self.sequence_length if padding == "max_length" else None

        def dense(ragged, value=0):
            return ragged.to_tensor(value, shape=None if length is None else [None, length])

        features = {
            "input_ids": tf.cast(dense(input_ids, self.tokenizer.pad_token_id), tf.int32),
            "segment_ids": tf.cast(dense(segment_ids), tf.int32),
            "padding_mask": tf.cast(dense(tf.ones_like(input_ids)), tf.int32),
        }
        if tags is None:
            return features
        tags = tf.ragged.constant(tags) if isinstance(tags, list) else tags
        word_tags = tf.cast(tags.flat_values, tf.int32)
        token_tags = all_tokens.with_flat_values(tf.repeat(word_tags, counts))[:, :budget]
        weights = tf.cast(first, tf.float32)
        if sample_weight is not None:
            weights = weights * tf.cast(sample_weight, tf.float32)[:, None]
        edge = tf.zeros_like(token_tags[:, :1])
        token_tags = tf.concat([edge, token_tags, edge], axis=1)
        weights = tf.concat([tf.cast(edge, tf.float32), weights, tf.cast(edge, tf.float32)], 1)
        return features, dense(token_tags), dense(weights)

    def call(self, words, tags=None, sample_weight=None):
        return self._pack(words, tags, sample_weight)

    def dataset(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False, seed=None):
        """A batched, preprocessed dataset of sentences (lists of words) and their tag ids.

        Unshuffled datasets are padded to `sequence_length`, so that
        `predict` can stack the batches in input order.
        """
        words, tags = check_sentences(x, y)
        columns = {"words": tf.ragged.constant(words, dtype=tf.string)}
        if tags is not None:
            columns["tags"] = tf.ragged.constant(tags, dtype=tf.int32)
        if sample_weight is not None:
            if tags is None:
                raise ValueError("`sample_weight` needs tags.")
            sample_weight = np.asarray(sample_weight, "float32")
            if sample_weight.shape != (len(words),):
                raise ValueError(
                    f"`sample_weight` must hold one weight per sentence ({len(words)}); "
                    f"got shape {sample_weight.shape}."
                )
            columns["sample_weight"] = tf.constant(sample_weight)
        dataset = tf.data.Dataset.from_tensor_slices(columns)
        if shuffle:
            dataset = dataset.shuffle(len(words), seed=seed, reshuffle_each_iteration=True)
        padding = "longest" if shuffle else "max_length"
        dataset = dataset.ragged_batch(batch_size).map(
            lambda batch: self._pack(
                batch["words"], batch.get("tags"), batch.get("sample_weight"), padding
            ),
            num_parallel_calls=AUTOTUNE,
        )
        return dataset.prefetch(AUTOTUNE)
