"""Token classification (NER, tagging): one tag per word, predicted at its first sub-token.

Data comes as words, since tagged corpora (CoNLL and the like) are split into
words already. Each word is tokenized on its own; its tag goes to its first
piece, and its other pieces are left out of the loss (sample weight 0) and of
decoding, as in the BERT paper's NER set-up. A word that tokenizes to nothing
(only control characters, say) becomes one [UNK], so no word loses its tag.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_bert_kit.tasks.task import Task
from keras_bert_kit.tasks.token_classifier_preprocessor import (
    TokenClassifierPreprocessor,
    check_sentences,
)

@keras.saving.register_keras_serializable(package="keras_bert_kit")
class TokenClassifier(Task):
    """An encoder with a per-token classification head, for NER and tagging.

    Args:
        encoder: a `BertEncoder` or `DistilBertEncoder`.
        num_tags: number of tags.
        preprocessor: a `TokenClassifierPreprocessor`, so that `fit`,
            `evaluate`, `predict` and `predict_tags` take words.
        dropout: dropout rate before the classifier.
        tag_names: optional tag names in id order (e.g. "O", "B-PER", ...).

    Outputs float32 logits `[batch, seq, num_tags]`. Default `compile()`:
    cross-entropy from logits averaged over first pieces only, and token
    accuracy on first pieces. `predict_tags(words)` gives one tag per word.
    """

    def __init__(
        self, encoder, num_tags, preprocessor=None, dropout=0.1, tag_names=None, **kwargs
    ):
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags < 2:
            raise ValueError(f"`num_tags` must be an integer >= 2; got {num_tags!r}.")
        if tag_names is not None and len(tag_names) != num_tags:
            raise ValueError(f"{len(tag_names)} tag_names for num_tags={num_tags}.")
        if preprocessor is not None and not isinstance(preprocessor, TokenClassifierPreprocessor):
            raise ValueError(
                "`preprocessor` must be a TokenClassifierPreprocessor; got "
                f"{type(preprocessor).__name__}."
            )

        # === Layers ===
        dropout_layer, logits_layer = self._head_layers(encoder, num_tags, dropout, "logits")

        # === Functional model ===
        self._freeze_unused_pooler(encoder)
        inputs = self._encoder_inputs(encoder)
        sequence_output = encoder(inputs)["sequence_output"]
        logits = logits_layer(dropout_layer(sequence_output))
        self._init_task(encoder, preprocessor, inputs, logits, **kwargs)

        # === Config ===
        self.num_tags = num_tags
        self.dropout = dropout
        self.tag_names = tuple(tag_names) if tag_names is not None else None

    def _default_loss(self):
        # Averaged over the weighted (first-piece) tokens, not over padding.
        return keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        )

    def _default_metrics(self):
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

    def predict_tags(self, words, batch_size=32):
        """One tag id per word, for every word of every sentence.

        Sentences longer than the preprocessor's `sequence_length` are split
        into windows of whole words, so no word goes without a tag.

        Args:
            words: a list of sentences, each a list of words.

        Returns:
            A list (per sentence) of lists of tag ids; map them through
            `tag_names` for names.
        """
        if self.preprocessor is None:
            raise ValueError("predict_tags needs a TokenClassifier built with a preprocessor.")
        words, _ = check_sentences(words, None)
        counts = self.preprocessor.word_pieces(
            tf.ragged.constant(words, dtype=tf.string)
        ).row_lengths(axis=2)
        budget = self.preprocessor.sequence_length - 2
        windows, layout = [], []  # layout: (sentence, word start, token positions)
        for i, sentence_counts in enumerate(counts.to_list()):
            start = 0
            while start < len(sentence_counts):
                end, used, positions = start, 0, []
                while end < len(sentence_counts) and (
                    end == start or used + sentence_counts[end] <= budget
                ):
                    positions.append(1 + used)  # after [CLS]
                    used += sentence_counts[end]
                    end += 1
                windows.append(words[i][start:end])
                layout.append((i, positions))
                start = end
        logits = self.predict(windows, batch_size=batch_size, verbose=0)
        tags = [[] for _ in words]
        for (i, positions), window_logits in zip(layout, logits):
            tags[i] += np.argmax(window_logits[positions], axis=-1).tolist()
        return tags

    def get_config(self):
        return {
            **self._task_config(),
            "num_tags": self.num_tags,
            "dropout": self.dropout,
            "tag_names": list(self.tag_names) if self.tag_names else None,
        }
