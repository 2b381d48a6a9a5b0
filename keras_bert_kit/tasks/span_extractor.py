"""Extractive question answering: the answer is a span of the context.

`[CLS] question [SEP] context [SEP]`, start and end logits per token. A
context longer than the window is cut into overlapping windows (`stride`
tokens of overlap); each window is one model input (a "feature"). Decoding
picks the best valid span over all features of an example: start in the
context, end not before start, at most `max_answer_length` tokens, the start
token taken from the window where it has the most context on both sides (as
the original BERT does). Token spans map back to characters through BERT's
basic tokens (`tokenization.words.split_words`), so answers are exact slices
of the original context.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from keras_bert_kit.layers.attention import MASK_VALUE
from keras_bert_kit.tasks.span_extractor_preprocessor import (
    SpanExtractorPreprocessor,
    best_spans,
    decode_answers,
)
from keras_bert_kit.tasks.task import Task
from keras_bert_kit.validation import check_int


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class SpanExtractor(Task):
    """An encoder with start/end logits per token, for extractive QA.

    Args:
        encoder: a `BertEncoder` or `DistilBertEncoder`.
        preprocessor: a `SpanExtractorPreprocessor`, so that `fit`,
            `evaluate` and `predict` take `(questions, contexts)` and `answer`
            works.
        dropout: dropout rate before the span head.

    Outputs float32 `start_logits` and `end_logits` `[batch, seq]`, with
    padding positions masked. Default `compile()`: the mean of the start and
    end cross-entropies, and start/end accuracy.

    Example:
    ```python
    qa = SpanExtractor(encoder, preprocessor=SpanExtractorPreprocessor(tokenizer))
    qa.compile()
    qa.fit((questions, contexts), answers, epochs=2)  # answers: (text, start_char)
    qa.answer(["Who wrote it?"], ["It was written by Ada Lovelace in 1843."])
    ```
    """

    def __init__(self, encoder, preprocessor=None, dropout=0.1, **kwargs):
        if preprocessor is not None and not isinstance(preprocessor, SpanExtractorPreprocessor):
            raise ValueError(
                "`preprocessor` must be a SpanExtractorPreprocessor; got "
                f"{type(preprocessor).__name__}."
            )

        # === Layers ===
        head_dropout, span_layer = self._head_layers(encoder, 2, dropout, "span_logits")

        # === Functional model ===
        self._freeze_unused_pooler(encoder)
        layers = dict(encoder=encoder, head_dropout=head_dropout, span_layer=span_layer)
        self._init_task(layers, preprocessor, **kwargs)

        # === Config ===
        self.dropout = dropout

    graph_layer_names = ("encoder", "head_dropout", "span_layer")

    @staticmethod
    def build_graph(layers, inputs, full_sequence=False):
        hidden_states, attentions = layers["encoder"].encode(inputs)
        logits = layers["span_layer"](layers["head_dropout"](hidden_states[-1]))
        padding = (1.0 - ops.cast(inputs["padding_mask"], "float32")) * MASK_VALUE
        outputs = {
            "start_logits": keras.layers.Identity(name="start_logits")(logits[:, :, 0] + padding),
            "end_logits": keras.layers.Identity(name="end_logits")(logits[:, :, 1] + padding),
        }
        return {"outputs": outputs, "hidden_states": hidden_states, "attentions": attentions}

    def default_loss(self):
        return {
            "start_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "end_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        }

    def default_loss_weights(self):
        return {"start_logits": 0.5, "end_logits": 0.5}

    def default_metrics(self):
        return {
            "start_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            "end_logits": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        }, None

    def answer(self, questions, contexts, max_answer_length=30, n_best=20, batch_size=32):
        """The best answer to each question in its context (see `decode_answers`)."""
        if self.preprocessor is None:
            raise ValueError("answer() needs a SpanExtractor built with a preprocessor.")
        contexts = list(contexts)
        features = self.preprocessor.features(questions, contexts)
        outputs = super().predict(features.inputs, batch_size=batch_size, verbose=0)
        return decode_answers(
            outputs["start_logits"],
            outputs["end_logits"],
            features,
            contexts,
            max_answer_length=max_answer_length,
            n_best=n_best,
        )

    def text_function(self, max_answer_length=30):
        """A `tf.function` from raw questions and contexts to answers, for serving and export.

        It takes 1-D string tensors `question` and `context` of the same (any)
        batch size, and runs the preprocessor's windowing, the model and the
        decoding all in graph; windows are padded only to the longest of the
        batch. Decoding follows `decode_answers`' rules (start and end in the
        context, end not before start, at most `max_answer_length` tokens, the
        start token in the window where it has the most context) but scores
        every valid pair, as `answer(..., n_best=sequence_length)` does. It
        returns a dict of dense tensors: `answer`, string `[batch]`; `start`
        and `end`, int32 `[batch]` character (code point) offsets,
        `context[start:end] == answer`; and `score`, float32 `[batch]`, the
        start + end logit. An example with no valid span (an empty context)
        gets answer "", start = end = 0 and score -inf. Make it once and call
        it many times.
        """
        preprocessor = self._require_preprocessor()
        check_int("max_answer_length", max_answer_length, minimum=1)

        @tf.function(input_signature=self._text_specs("question", "context"))
        def answer_texts(question, context):
            features, _, _ = preprocessor.windows(question, context)
            logits = self._call_on_features(features)
            return best_spans(
                logits["start_logits"], logits["end_logits"], features, context,
                max_answer_length,
            )

        return answer_texts

    def get_config(self):
        return {**self._task_config(), "dropout": self.dropout}
