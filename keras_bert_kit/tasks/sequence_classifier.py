"""Sequence classification: one label per text or text pair (sentiment, NLI, ...)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_bert_kit.layers import MeanPooler
from keras_bert_kit.metrics import SparseMacroF1
from keras_bert_kit.tasks.sequence_classifier_preprocessor import SequenceClassifierPreprocessor
from keras_bert_kit.tasks.task import Task
from keras_bert_kit.validation import check_int

POOLINGS = ("cls", "mean")


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class SequenceClassifier(Task):
    """An encoder with a classification head over the whole sequence.

    `pooling="cls"` classifies BERT's pooled [CLS] output (DistilBERT's final
    [CLS] state), as `BertForSequenceClassification` does; `"mean"` averages
    the real tokens' final states, as sentence-embedding models are trained.

    Args:
        encoder: a `BertEncoder` or `DistilBertEncoder` (e.g. from
            `keras_bert_kit.from_huggingface`).
        num_classes: number of classes.
        preprocessor: a `SequenceClassifierPreprocessor`, so that `fit`,
            `evaluate` and `predict` take strings; None for id inputs only.
        pooling: "cls" or "mean".
        dropout: dropout rate before the classifier.
        label_names: optional names of the classes, in id order.

    Outputs float32 logits `[batch, num_classes]`. Default `compile()`:
    sparse cross-entropy from logits, accuracy and macro-F1.

    Example:
    ```python
    classifier = SequenceClassifier(encoder, num_classes=2, preprocessor=
        SequenceClassifierPreprocessor(BertTokenizer(vocab_path), sequence_length=128))
    classifier.compile()
    classifier.fit(texts, labels, epochs=3, batch_size=32)
    classifier.predict(["a delight", "a chore"])  # logits
    ```
    """

    def __init__(
        self,
        encoder,
        num_classes,
        preprocessor=None,
        pooling="cls",
        dropout=0.1,
        label_names=None,
        **kwargs,
    ):
        check_int("num_classes", num_classes, minimum=2)
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}; got {pooling!r}.")
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(
                f"{len(label_names)} label_names for num_classes={num_classes}; they must match."
            )
        if preprocessor is not None and not isinstance(
            preprocessor, SequenceClassifierPreprocessor
        ):
            raise ValueError(
                "`preprocessor` must be a SequenceClassifierPreprocessor; got "
                f"{type(preprocessor).__name__}."
            )

        # === Layers ===
        mean_pooler = MeanPooler(dtype=encoder.dtype_policy, name="mean_pooler") if (
            pooling == "mean"
        ) else None
        head_dropout, logits_layer = self._head_layers(encoder, num_classes, dropout, "logits")

        # === Functional model ===
        if pooling == "mean":
            self._freeze_unused_pooler(encoder)
        layers = dict(
            encoder=encoder,
            mean_pooler=mean_pooler,
            head_dropout=head_dropout,
            logits_layer=logits_layer,
        )
        self._init_task(layers, preprocessor, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.pooling = pooling
        self.dropout = dropout
        self.label_names = tuple(label_names) if label_names is not None else None

    graph_layer_names = ("encoder", "mean_pooler", "head_dropout", "logits_layer")

    @staticmethod
    def build_graph(layers, inputs, full_sequence=False):
        encoder, mean_pooler = layers["encoder"], layers["mean_pooler"]
        if mean_pooler is not None or full_sequence:
            hidden_states, attentions = encoder.encode(inputs)
        else:
            # [CLS] pooling reads one row: the last layer computes only that.
            cls_row = keras.ops.zeros_like(inputs["input_ids"][:, :1])
            hidden_states, attentions = encoder.encode(inputs, query_positions=cls_row)
        if mean_pooler is None:
            pooled = encoder.pool(hidden_states[-1])
        else:
            pooled = mean_pooler(hidden_states[-1], inputs["padding_mask"])
        logits = layers["logits_layer"](layers["head_dropout"](pooled))
        return {"outputs": logits, "hidden_states": hidden_states, "attentions": attentions}

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def _check_targets(self, y):
        labels = np.asarray(y)
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"Labels must be integer class ids; got dtype {labels.dtype}.")
        bad = np.nonzero((labels < 0) | (labels >= self.num_classes))[0]
        if len(bad):
            raise ValueError(
                f"Label {labels.flat[bad[0]]} (example {bad[0]}) is outside "
                f"[0, {self.num_classes}) for a {self.num_classes}-class classifier."
            )

    def default_metrics(self):
        return [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            SparseMacroF1(self.num_classes),
        ], None

    def get_config(self):
        return {
            **self._task_config(),
            "num_classes": self.num_classes,
            "pooling": self.pooling,
            "dropout": self.dropout,
            "label_names": list(self.label_names) if self.label_names else None,
        }


    def answers(self, features):
        """The classifier's answers on id features, as tensors (graph or eager).

        `features`: a preprocessor's dict of int32 `[batch, seq]` tensors.
        Returns `logits` and `probabilities`, float32 `[batch, num_classes]`;
        `label_id`, int32 `[batch]`; and `label`, string `[batch]`, when the
        classifier has `label_names`. `text_function` and the exported
        `predict_ids` signature both answer with it.
        """
        logits = tf.cast(self._call_on_features(features), tf.float32)
        label_id = tf.argmax(logits, axis=-1, output_type=tf.int32)
        outputs = {
            "logits": logits,
            "probabilities": tf.nn.softmax(logits),
            "label_id": label_id,
        }
        if self.label_names is not None:
            outputs["label"] = tf.gather(tf.constant(self.label_names), label_id)
        return outputs

    def text_function(self, pairs=False):
        """A `tf.function` from raw texts to the classifier's answers, for serving and export.

        Args:
            pairs: whether the classifier reads text pairs (NLI, paraphrase):
                the function then takes `text` and `text_pair`. A classifier
                accepts both at `fit` time; which one it was trained on is the
                caller's to say.

        The function takes 1-D string tensors of any batch size, by name
        `text` (and `text_pair`); each batch is padded only to its longest
        example, and longer texts are cut at the preprocessor's
        `sequence_length`, as in `predict`. It returns a dict of dense tensors:
        `logits` and `probabilities`, float32 `[batch, num_classes]`;
        `label_id`, int32 `[batch]`; and `label`, string `[batch]`, when the
        classifier has `label_names`. It traces without Python branches on the
        data: it runs in `tf.data` and exports as a SavedModel signature. Make
        it once and call it many times (each call of `text_function` traces anew).
        """
        preprocessor = self._require_preprocessor()

        def answers(x):
            return self.answers(preprocessor(x))

        if pairs:
            @tf.function(input_signature=self._text_specs("text", "text_pair"))
            def classify_text_pairs(text, text_pair):
                same_batch = tf.debugging.assert_equal(
                    tf.shape(text)[0], tf.shape(text_pair)[0],
                    message="`text_pair` must hold as many texts as `text`",
                )
                with tf.control_dependencies([same_batch]):
                    return answers((tf.identity(text), tf.identity(text_pair)))

            return classify_text_pairs

        @tf.function(input_signature=self._text_specs("text"))
        def classify_texts(text):
            return answers(text)

        return classify_texts
