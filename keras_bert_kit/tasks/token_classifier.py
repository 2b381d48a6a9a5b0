"""Token classification (NER, tagging): one tag per word, predicted at its first sub-token.

Data comes as words, since tagged corpora (CoNLL and the like) are split into
words already, or as raw texts, split into words in graph as BERT does
(`split_words_with_offsets`), with each word's character span. Each word is
tokenized on its own; its tag goes to its first piece, and its other pieces
are left out of the loss (sample weight 0) and of decoding, as in the BERT
paper's NER set-up. A word that tokenizes to nothing (only control
characters, say) becomes one [UNK], so no word loses its tag.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_bert_kit.tasks.task import Task
from keras_bert_kit.tasks.token_classifier_preprocessor import (
    TokenClassifierPreprocessor,
    check_texts,
    check_words,
    is_texts,
)
from keras_bert_kit.tokenization.words import split_words_with_offsets
from keras_bert_kit.validation import check_int


class TaggedWord(NamedTuple):
    """A word of a text, its character span (`text[start:end] == word`) and its tag id."""

    word: str
    start: int
    end: int
    tag_id: int


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class TokenClassifier(Task):
    """An encoder with a per-token classification head, for NER and tagging.

    Args:
        encoder: a `BertEncoder` or `DistilBertEncoder`.
        num_tags: number of tags.
        preprocessor: a `TokenClassifierPreprocessor`, so that `fit`,
            `evaluate`, `predict` and `predict_tags` take words or texts.
        dropout: dropout rate before the classifier.
        tag_names: optional tag names in id order (e.g. "O", "B-PER", ...).

    Outputs float32 logits `[batch, seq, num_tags]`. Default `compile()`:
    cross-entropy from logits averaged over first pieces only, and token
    accuracy on first pieces. `predict_tags(words or texts)` gives one tag per
    word; `text_function()` does the same in one `tf.function`, for export.

    Example:
    ```python
    tagger = TokenClassifier(encoder, num_tags=len(names), tag_names=names,
                             preprocessor=TokenClassifierPreprocessor(tokenizer, 128))
    tagger.compile()
    tagger.fit(sentences, tags, epochs=3)  # sentences: lists of words
    tagger.predict_tags(["Ada Lovelace lived in London."])
    # [[TaggedWord(word='Ada', start=0, end=3, tag_id=1), ...]]
    ```
    """

    def __init__(
        self, encoder, num_tags, preprocessor=None, dropout=0.1, tag_names=None, **kwargs
    ):
        check_int("num_tags", num_tags, minimum=2)
        if tag_names is not None and len(tag_names) != num_tags:
            raise ValueError(f"{len(tag_names)} tag_names for num_tags={num_tags}.")
        if preprocessor is not None and not isinstance(preprocessor, TokenClassifierPreprocessor):
            raise ValueError(
                "`preprocessor` must be a TokenClassifierPreprocessor; got "
                f"{type(preprocessor).__name__}."
            )

        # === Layers ===
        head_dropout, logits_layer = self._head_layers(encoder, num_tags, dropout, "logits")

        # === Functional model ===
        self._freeze_unused_pooler(encoder)
        layers = dict(encoder=encoder, head_dropout=head_dropout, logits_layer=logits_layer)
        self._init_task(layers, preprocessor, **kwargs)

        # === Config ===
        self.num_tags = num_tags
        self.dropout = dropout
        self.tag_names = tuple(tag_names) if tag_names is not None else None

    graph_layer_names = ("encoder", "head_dropout", "logits_layer")

    @staticmethod
    def build_graph(layers, inputs, full_sequence=False):
        hidden_states, attentions = layers["encoder"].encode(inputs)
        logits = layers["logits_layer"](layers["head_dropout"](hidden_states[-1]))
        return {"outputs": logits, "hidden_states": hidden_states, "attentions": attentions}

    def default_loss(self):
        # Averaged over the weighted (first-piece) tokens, not over padding.
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        )

    def default_metrics(self):
        return None, [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def _check_targets(self, y):
        if isinstance(y, (np.ndarray, tf.Tensor)) and np.ndim(y) == 2:
            return  # token-level targets of already-preprocessed input
        for i, sentence_tags in enumerate(y):
            for j, tag in enumerate(sentence_tags):
                if not 0 <= int(tag) < self.num_tags:
                    raise ValueError(
                        f"Sentence {i}, tag {j} is {tag}, outside [0, {self.num_tags}) for a "
                        f"{self.num_tags}-tag classifier."
                    )

    def predict_tags(self, texts_or_words, batch_size=32):
        """One tag id per word: of pre-split sentences, or of raw texts.

        Sentences longer than the preprocessor's `sequence_length` are split
        into windows of whole words, so no word goes without a tag.

        Args:
            texts_or_words: a list of sentences, each a list of words; or a
                list of texts, split into words as BERT does (whitespace
                separates words; each punctuation character and CJK
                ideograph is a word of its own: `split_words`).
            batch_size: windows per forward pass.

        Returns:
            For sentences of words, a list (per sentence) of lists of tag ids.
            For texts, a list (per text) of lists of `TaggedWord(word, start,
            end, tag_id)`, with `text[start:end] == word` (character offsets);
            a text without words gets `[]`. Map tag ids through `tag_names`
            for names.
        """
        preprocessor = self._require_preprocessor()
        if is_texts(texts_or_words):
            texts = check_texts(texts_or_words)
            words, starts, ends = split_words_with_offsets(texts)
        else:
            words = tf.ragged.constant(check_words(texts_or_words), dtype=tf.string)
        features, window_index, token_position = preprocessor.windows(words)
        if features["input_ids"].shape[0]:
            logits = self.predict(self._select_inputs(features), batch_size=batch_size,
                                  verbose=0)
        else:  # Only texts without words: nothing to run.
            logits = np.zeros((0, 0, self.num_tags), "float32")
        tag_ids = self._tags_at(logits, window_index, token_position).to_list()
        if not is_texts(texts_or_words):
            return tag_ids
        return [
            [TaggedWord(word.decode("utf-8"), *spans) for word, *spans in zip(*columns)]
            for columns in zip(words.to_list(), starts.to_list(), ends.to_list(), tag_ids)
        ]

    @staticmethod
    def _tags_at(logits, window_index, token_position):
        """Ragged `[batch, (words)]` int32 tag ids, read at each word's first piece."""
        indices = tf.stack([window_index.flat_values, token_position.flat_values], axis=1)
        tag_ids = tf.argmax(tf.gather_nd(logits, indices), axis=-1, output_type=tf.int32)
        return window_index.with_flat_values(tag_ids)

    def text_function(self):
        """A `tf.function` from raw texts to per-word tags, for serving and export.

        The function takes a 1-D string tensor `text` of any batch size. Each
        text is split into words in graph (`split_words_with_offsets`), and
        sentences longer than `sequence_length` into windows of whole words,
        as `predict_tags` does, so every word is tagged; windows are padded
        only to the longest of the batch. It returns a dict of dense tensors,
        `max_words` being the most words of a text in the batch:
        `tag_ids`, int32 `[batch, max_words]`, -1 past a text's words;
        `starts` and `ends`, int32 `[batch, max_words]`, each word's character
        (code point) offsets in its text, -1 past its words; `word_count`,
        int32 `[batch]`; and `tags`, string `[batch, max_words]` ("" past the
        words), when the tagger has `tag_names`. It traces without Python
        branches on the data: it runs in `tf.data` and exports as a SavedModel
        signature. Make it once and call it many times.
        """
        preprocessor = self._require_preprocessor()
        tag_names = None if self.tag_names is None else tf.constant(self.tag_names)

        @tf.function(input_signature=self._text_specs("text"))
        def tag_texts(text):
            words, starts, ends = split_words_with_offsets(text)
            features, window_index, token_position = preprocessor.windows(words)
            logits = self._call_on_features(features)
            tag_ids = self._tags_at(logits, window_index, token_position)
            outputs = {
                "tag_ids": tag_ids.to_tensor(-1),
                "starts": tf.cast(starts, tf.int32).to_tensor(-1),
                "ends": tf.cast(ends, tf.int32).to_tensor(-1),
                "word_count": tf.cast(words.row_lengths(), tf.int32),
            }
            if tag_names is not None:
                outputs["tags"] = tf.gather(tag_names, tag_ids).to_tensor("")
            return outputs

        return tag_texts

    def get_config(self):
        return {
            **self._task_config(),
            "num_tags": self.num_tags,
            "dropout": self.dropout,
            "tag_names": list(self.tag_names) if self.tag_names else None,
        }
