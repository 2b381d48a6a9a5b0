"""`TokenClassifierPreprocessor`: words or texts, and word tags, to encoder inputs and token tags.

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
from keras_bert_kit.tokenization.words import split_words_with_offsets
from keras_bert_kit.validation import is_int

AUTOTUNE = tf.data.AUTOTUNE


def check_words(words):
    """Lists of lists of words, with errors that name the sentence."""
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
    return words


def check_texts(texts):
    """A list of texts (or a string tensor or array, as it is), with errors that name the text."""
    if isinstance(texts, (str, bytes)):
        raise ValueError("Pass a list of texts, not a single string.")
    if isinstance(texts, (tf.Tensor, np.ndarray)):
        return texts
    texts = list(texts)
    if not texts:
        raise ValueError("`texts` is empty.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"Text {i} must be a string; got {type(text).__name__}.")
    return texts


def check_tags(word_counts, tags):
    """Tag id lists, one tag per word (`word_counts[i]` words in sentence i)."""
    tags = [list(sentence_tags) for sentence_tags in tags]
    if len(tags) != len(word_counts):
        raise ValueError(f"{len(word_counts)} sentences of words but {len(tags)} of tags.")
    for i, (count, sentence_tags) in enumerate(zip(word_counts, tags)):
        if count != len(sentence_tags):
            raise ValueError(f"Sentence {i} has {count} words but {len(sentence_tags)} tags.")
        for j, tag in enumerate(sentence_tags):
            if not is_int(tag) or tag < 0:
                raise ValueError(
                    f"Sentence {i}, tag {j} must be a non-negative integer id; got {tag!r}."
                )
    return tags


def check_sentences(words, tags):
    """Lists of lists of words (and tags), with errors that name the sentence."""
    words = check_words(words)
    return words, None if tags is None else check_tags([len(s) for s in words], tags)


def is_texts(x):
    """Whether raw `x` is texts (a string or a flat batch), not sentences of words."""
    if isinstance(x, (str, bytes)):
        return True
    if isinstance(x, tf.RaggedTensor):
        return False
    if isinstance(x, (tf.Tensor, np.ndarray)):
        return len(x.shape) <= 1
    return bool(x) and all(isinstance(item, (str, bytes)) for item in x)


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class TokenClassifierPreprocessor(TextPreprocessor):
    """Words or texts (and word tags) to the encoder's inputs, token labels and loss weights.

    Args:
        tokenizer: a `BertTokenizer`.
        sequence_length: the most tokens per sentence, [CLS] and [SEP]
            included; longer sentences are cut in training. `windows` (and
            `TokenClassifier.predict_tags`) splits them into windows of whole
            words instead, so every word gets a tag.

    Call: `preprocessor(x, y=None, sample_weight=None)`. `x` is words, a
    ragged `[batch, (words)]` string tensor (or a list of lists of words), or
    texts, a string or a list or 1-D tensor of strings, each split into words
    in graph by BERT's basic tokenization (`split_words_with_offsets`). `y`
    holds one tag id per word, ragged `[batch, (words)]`; `sample_weight` one
    weight per sentence `[batch]`. Returns `features`, or
    `(features, token_tags, token_weights)` with tags: `[batch, seq]` tags at
    first pieces (0 elsewhere) and weights 1.0 at first pieces, 0.0 elsewhere
    (times the sentence's `sample_weight`). Batches are padded to their
    longest sentence; a single string gives unbatched `[seq]` tensors. In a
    `tf.data.Dataset` a 1-D string element is texts: batch sentences of words
    (`ragged_batch`) before mapping the preprocessor over them.
    """

    def words(self, x):
        """Ragged `[batch, (words)]` words of raw `x` (words or texts, as `call` takes)."""
        if not is_texts(x):
            words = tf.ragged.constant(x, dtype=tf.string) if isinstance(x, list) else x
            if words.dtype != tf.string or words.shape.rank != 2:
                raise ValueError(
                    "Words must be a [batch, (words)] string tensor or a list of lists of "
                    f"words; got dtype {words.dtype.name}, shape {words.shape}."
                )
            return words if isinstance(words, tf.RaggedTensor) else (
                tf.RaggedTensor.from_tensor(words))
        return split_words_with_offsets(x)[0]

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

    def _pack(self, pieces, tags=None, sample_weight=None, padding="longest"):
        """Features, token tags and token weights (None without tags) of ragged word pieces."""
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
            if sample_weight is not None:
                raise ValueError("`sample_weight` needs tags (`y`).")
            return features, None, None
        word_tags = tf.cast(tags.flat_values, tf.int32)
        token_tags = all_tokens.with_flat_values(tf.repeat(word_tags, counts))[:, :budget]
        weights = tf.cast(first, tf.float32)
        if sample_weight is not None:
            weights = weights * tf.cast(sample_weight, tf.float32)[:, None]
        edge = tf.zeros_like(token_tags[:, :1])
        token_tags = tf.concat([edge, token_tags, edge], axis=1)
        weights = tf.concat([tf.cast(edge, tf.float32), weights, tf.cast(edge, tf.float32)], 1)
        return features, dense(token_tags), dense(weights)

    def _preprocess(self, x, y=None, sample_weight=None, padding="longest"):
        single = isinstance(x, (str, bytes)) or (
            isinstance(x, (tf.Tensor, np.ndarray)) and len(x.shape) == 0
        )
        if single:  # A batch of one, unbatched at the end.
            x, y, sample_weight = (
                None if value is None else tf.convert_to_tensor(value)[tf.newaxis]
                for value in (x, y, sample_weight)
            )
        words = self.words(x)
        tags = None
        if y is not None:
            tags = tf.ragged.constant(y) if isinstance(y, list) else y
            if not isinstance(tags, tf.RaggedTensor):
                tags = tf.RaggedTensor.from_tensor(tags)
            tf.debugging.assert_equal(
                tags.row_lengths(), words.row_lengths(),
                message="every sentence needs one tag per word",
            )
        outputs = self._pack(self.word_pieces(words), tags, sample_weight, padding)
        if single:
            outputs = tuple(None if value is None else tf.nest.map_structure(
                lambda tensor: tensor[0], value) for value in outputs)
        return outputs

    def call(self, x, y=None, sample_weight=None):
        return keras.utils.pack_x_y_sample_weight(*self._preprocess(x, y, sample_weight))

    def windows(self, words):
        """Windows of whole words that fit `sequence_length`, so that every word gets a tag.

        Each sentence is cut greedily: a window takes the next words while
        their pieces fit (always at least one word; a word longer than the
        window is cut, but keeps its first piece, where its tag is read).

        Args:
            words: ragged `[batch, (words)]` words.

        Returns:
            `(features, window_index, token_position)`: the encoder inputs of
            every window, `[windows, seq]`, padded to the longest; and per word, ragged
            `[batch, (words)]` int64, the window it is in and the position of
            its first piece there. A sentence without words has no window.
        """
        pieces = self.word_pieces(words)
        counts = pieces.row_lengths(axis=2)
        budget = tf.constant(self.sequence_length - 2, tf.int64)

        def add_word(state, count):
            used, _ = state
            opens_window = (used > 0) & (used + count > budget)
            start = tf.where(opens_window, tf.zeros_like(used), used)
            return start + count, start

        zeros = tf.zeros([counts.nrows()], tf.int64)
        # One column more than the longest sentence: tf.scan cannot stack zero steps.
        columns = tf.transpose(tf.pad(counts.to_tensor(), [[0, 0], [0, 1]]))
        _, starts = tf.scan(add_word, columns, initializer=(zeros, zeros))
        starts = tf.RaggedTensor.from_tensor(tf.transpose(starts), lengths=counts.row_lengths())
        # A word at position 0 of its window opens it; sentences follow each other.
        opens = tf.cast(starts.flat_values == 0, tf.int64)
        window_index = tf.cumsum(opens) - 1
        window_pieces = tf.RaggedTensor.from_value_rowids(
            pieces.values, window_index, nrows=tf.reduce_sum(opens)
        )
        features, _, _ = self._pack(window_pieces)
        return features, starts.with_flat_values(window_index), starts + 1  # after [CLS]

    def dataset(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False, seed=None):
        """A batched, preprocessed dataset of sentences (words or texts) and their tag ids.

        `x` is a list of sentences, each a list of words, or a list of texts
        (split into words by `split_words_with_offsets`). Unshuffled datasets are
        padded to `sequence_length`, so that `predict` can stack the batches
        in input order.
        """
        if is_texts(x):
            texts = check_texts(x)
            column = tf.constant(texts, tf.string)
            if y is not None:
                y = check_tags(split_words_with_offsets(column)[0].row_lengths().numpy(), y)
            count = len(texts)
        else:
            words, y = check_sentences(x, y)
            column = tf.ragged.constant(words, dtype=tf.string)
            count = len(words)
        columns = {"x": column}
        if y is not None:
            columns["y"] = tf.ragged.constant(y, dtype=tf.int32, ragged_rank=1)
        if sample_weight is not None:
            if y is None:
                raise ValueError("`sample_weight` needs tags.")
            sample_weight = np.asarray(sample_weight, "float32")
            if sample_weight.shape != (count,):
                raise ValueError(
                    f"`sample_weight` must hold one weight per sentence ({count}); "
                    f"got shape {sample_weight.shape}."
                )
            columns["sample_weight"] = tf.constant(sample_weight)
        dataset = tf.data.Dataset.from_tensor_slices(columns)
        if shuffle:
            dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        padding = "longest" if shuffle else "max_length"
        dataset = dataset.ragged_batch(batch_size).map(
            lambda batch: keras.utils.pack_x_y_sample_weight(*self._preprocess(
                batch["x"], batch.get("y"), batch.get("sample_weight"), padding
            )),
            num_parallel_calls=AUTOTUNE,
        )
        return dataset.prefetch(AUTOTUNE)
