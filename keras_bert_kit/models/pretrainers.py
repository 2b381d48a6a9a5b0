"""Pretraining models: an encoder plus masked-LM (and next-sentence) heads.

They train with `compile()` and `fit()` on the batches of
`keras_bert_kit.data.pretraining_dataset`, which carry their own targets
(`masked_ids`, `masked_weights`, `nsp_label`): no `y` is passed. The losses
and metrics are the pretrainers' own, logged as `mlm_loss`, `mlm_accuracy`,
`nsp_loss` and `nsp_accuracy` (BERT only), and `loss`, their sum (weighted
by `compile(loss_weights=...)`).
"""

import keras
import tensorflow as tf

from keras_bert_kit.distribute import MultiWorkerFitMixin
from keras_bert_kit.layers import MaskedLMHead, NextSentenceHead
from keras_bert_kit.losses import global_weighted_mean, unscaled
from keras_bert_kit.models.bert_encoder import BertEncoder
from keras_bert_kit.models.distilbert_encoder import DistilBertEncoder
from keras_bert_kit.models.graph import GraphModel
from keras_bert_kit.models.inputs import check_input_keys, check_position_inputs
from keras_bert_kit.optimization import warmup_then_linear_decay
from keras_bert_kit.saving import from_config_with_objects
from keras_bert_kit.validation import check_number

# The keys of a pretraining batch that are targets, not model inputs.
TARGET_KEYS = ("masked_ids", "masked_weights", "nsp_label")


class Pretrainer(GraphModel, MultiWorkerFitMixin, keras.Model):
    """Encoder + heads as one functional model with dict inputs and outputs.

    The base of `BertPretrainer` and `DistilBertPretrainer`. Besides Keras'
    API it offers `targets(x, y)`, `loss_weights`, `prediction_weights(x,
    y, sample_weight)` and `with_internals()`, which distillation uses.
    """

    encoder_class = None
    graph_layer_names = ("encoder", "masked_lm_head", "next_sentence_head")

    def __init__(self, encoder, **kwargs):
        if not isinstance(encoder, self.encoder_class):
            raise ValueError(
                f"{type(self).__name__} needs a {self.encoder_class.__name__}; "
                f"got {type(encoder).__name__}."
            )
        config = encoder.config

        # === Layers ===
        masked_lm_head = MaskedLMHead(
            token_embedding=encoder.token_embedding,
            activation=config.hidden_activation,
            layer_norm_epsilon=config.layer_norm_epsilon,
            initializer_range=config.initializer_range,
            dtype=encoder.dtype_policy,
            name="masked_lm_head",
        )
        next_sentence_head = self._make_next_sentence_head(encoder)

        # === Functional model ===
        inputs = {
            name: keras.Input((None,), dtype="int32", name=name) for name in encoder.input_names
        }
        inputs["masked_positions"] = keras.Input((None,), dtype="int32", name="masked_positions")
        layers = dict(
            encoder=encoder,
            masked_lm_head=masked_lm_head,
            next_sentence_head=next_sentence_head,
        )
        outputs = self.build_graph(layers, inputs)["outputs"]
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._input_names = list(inputs)

        # === Config ===
        self.encoder = encoder
        self.masked_lm_head = masked_lm_head
        self.next_sentence_head = next_sentence_head

        # === Training: losses and their metrics ===
        self._loss_weights = self._check_loss_weights(None)
        self.mlm_loss_tracker = keras.metrics.Mean(name="mlm_loss")
        self.mlm_accuracy = keras.metrics.SparseCategoricalAccuracy(name="mlm_accuracy")
        if next_sentence_head is not None:
            self._nsp_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            self.nsp_loss_tracker = keras.metrics.Mean(name="nsp_loss")
            self.nsp_accuracy = keras.metrics.SparseCategoricalAccuracy(name="nsp_accuracy")

    def _make_next_sentence_head(self, encoder):
        return None

    @staticmethod
    def build_graph(layers, inputs, full_sequence=False):
        encoder = layers["encoder"]
        # The heads read [CLS] and the masked positions only, so the last
        # layer computes just those rows: a quarter less encoder work for 4
        # layers, with the same outputs and gradients.
        masked_positions = inputs["masked_positions"]
        # [CLS]'s row (0) first, made from `input_ids`, which has one.
        rows = keras.ops.concatenate(
            [keras.ops.zeros_like(inputs["input_ids"][:, :1]), masked_positions], axis=1
        )
        encoder_inputs = {name: inputs[name] for name in encoder.input_names}
        if full_sequence:
            hidden_states, attentions = encoder.encode(encoder_inputs)
            states = keras.ops.take_along_axis(hidden_states[-1], rows[:, :, None], axis=1)
        else:
            hidden_states, attentions = encoder.encode(encoder_inputs, query_positions=rows)
            states = hidden_states[-1]
        outputs = {"mlm_logits": layers["masked_lm_head"](states[:, 1:])}
        if layers["next_sentence_head"] is not None:
            outputs["nsp_logits"] = layers["next_sentence_head"](encoder.pool(states))
        return {"outputs": outputs, "hidden_states": hidden_states, "attentions": attentions}

    @property
    def input_names(self):
        return self._input_names

    def check_inputs(self, inputs):
        """The encoder's inputs and `masked_positions` of `inputs`, validated.

        `masked_positions` must agree with `input_ids` on the batch size and
        point into the sequence: `[0, sequence_length)`.
        """
        check_input_keys(inputs, self.input_names, self.name)
        # No empty batches of empty sequences: the heads read [CLS]'s row.
        encoder_inputs = self.encoder.check_inputs(inputs, owner=self.name)
        positions = check_position_inputs(
            inputs, ["masked_positions"], encoder_inputs["input_ids"], self.name
        )
        return {**encoder_inputs, **positions}

    # -- training -------------------------------------------------------------------

    def compile(
        self,
        optimizer="auto",
        learning_rate=1e-4,
        num_train_steps=None,
        warmup_steps=0,
        weight_decay=0.01,
        clipnorm=1.0,
        loss_weights=None,
        **kwargs,
    ):
        """Configures pretraining; the loss is the model's own (MLM + NSP).

        Args:
            optimizer: "auto" for `create_optimizer` (AdamW, no weight decay
                on LayerNorm and biases, global-norm clipping): linear
                warmup over `warmup_steps`, then linear decay to 0 at
                `num_train_steps`, or a constant rate when that is None.
                Or any Keras optimizer.
            learning_rate, num_train_steps, warmup_steps, weight_decay,
                clipnorm: the "auto" optimizer's settings.
            loss_weights: each loss's weight in the total, by output name
                (`{"mlm_logits": 1.0, "nsp_logits": 1.0}`, the default; a
                name left out weighs 1). `mlm_loss` and `nsp_loss` are
                logged unweighted; `loss` is the weighted sum.
            **kwargs: passed to `keras.Model.compile` (`jit_compile`,
                `steps_per_execution`, ...). `loss` and `metrics` are not
                taken: the pretrainer computes its own.
        """
        self._loss_weights = self._check_loss_weights(loss_weights)
        for name in ("loss", "metrics", "weighted_metrics"):
            if kwargs.get(name) is not None:
                raise ValueError(
                    f"{type(self).__name__} computes its own losses and metrics; "
                    f"drop `{name}`."
                )
            kwargs.pop(name, None)
        if optimizer == "auto":
            optimizer = warmup_then_linear_decay(
                learning_rate, num_train_steps, warmup_steps, weight_decay, clipnorm
            )
        # Keras keeps `loss_weights` in the compile config, so a saved model
        # recompiles with them.
        super().compile(optimizer=optimizer, loss_weights=loss_weights, **kwargs)

    def _check_loss_weights(self, loss_weights):
        """`{output name: float}` for every output, from the user's partial mapping."""
        outputs = ["mlm_logits"] + (["nsp_logits"] if self.next_sentence_head is not None else [])
        weights = {name: 1.0 for name in outputs}
        if loss_weights is None:
            return weights
        if not isinstance(loss_weights, dict):
            raise ValueError(
                f"`loss_weights` must be a mapping of output names {sorted(weights)} to "
                f"numbers; got {loss_weights!r}."
            )
        for name, weight in loss_weights.items():
            if name not in weights:
                raise ValueError(
                    f"`loss_weights` names {name!r}, which is not an output of "
                    f"{type(self).__name__}; its outputs are {sorted(weights)}."
                )
            check_loss_weight(f"loss_weights[{name!r}]", weight)
            weights[name] = float(weight)
        return weights

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        for name in ("loss", "metrics", "weighted_metrics"):
            config.pop(name, None)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def targets(self, x, y):
        """The target tensors: from `y` when given, else from the batch `x` itself."""
        source = x if y is None else y
        if not isinstance(source, dict) or "masked_ids" not in source:
            raise ValueError(
                f"{type(self).__name__} trains on batches that carry `masked_ids` and "
                "`masked_weights` (and `nsp_label` for BERT), as "
                "keras_bert_kit.data.pretraining_dataset makes them."
            )
        targets = {"masked_ids": source["masked_ids"]}
        targets["masked_weights"] = source.get("masked_weights")
        if targets["masked_weights"] is None:
            targets["masked_weights"] = tf.ones_like(source["masked_ids"], tf.float32)
        if self.next_sentence_head is not None:
            if "nsp_label" not in source:
                raise ValueError("BERT pretraining batches need `nsp_label`.")
            targets["nsp_label"] = source["nsp_label"]
        return targets

    @property
    def loss_weights(self):
        """{output name: its weight in the loss}, as `compile(loss_weights=...)` set them."""
        return dict(self._loss_weights)

    def prediction_weights(self, x, y=None, sample_weight=None):
        """{output name: weights of its predictions}: which count in a loss over them.

        `mlm_logits`: the batch's `masked_weights` (0 on padding
        predictions); `nsp_logits`: one per example.
        """
        targets = self.targets(x, y)
        weights = {"mlm_logits": targets["masked_weights"]}
        if self.next_sentence_head is not None:
            weights["nsp_logits"] = tf.ones_like(targets["nsp_label"], tf.float32)
        return weights

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        targets = self.targets(x, y)
        # Each replica's loss is its share of the global mean (Keras losses
        # scale themselves for the number of replicas); the trackers log the
        # unscaled value, as Keras' own loss tracker does.
        # Batches weigh by their size, as in Keras' `loss`, so the logged
        # epoch means still add up: loss = mlm_loss + nsp_loss.
        batch_size = tf.shape(targets["masked_ids"])[0]
        mlm = masked_lm_loss(targets, y_pred["mlm_logits"])
        weights = self._loss_weights
        self.mlm_loss_tracker.update_state(unscaled(mlm), sample_weight=batch_size)
        total = weights["mlm_logits"] * mlm
        if self.next_sentence_head is not None:
            nsp = self._nsp_loss(targets["nsp_label"], y_pred["nsp_logits"])
            self.nsp_loss_tracker.update_state(unscaled(nsp), sample_weight=batch_size)
            total = total + weights["nsp_logits"] * nsp
        if self.losses:
            total = total + keras.ops.sum(self.losses)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        targets = self.targets(x, y)
        self.mlm_accuracy.update_state(
            targets["masked_ids"], y_pred["mlm_logits"], sample_weight=targets["masked_weights"]
        )
        if self.next_sentence_head is not None:
            self.nsp_accuracy.update_state(targets["nsp_label"], y_pred["nsp_logits"])
        return self.get_metrics_result()

    def get_config(self):
        return {
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return from_config_with_objects(cls, config, ("encoder",))


def check_loss_weight(name, weight):
    """Raises unless `weight` is a finite number >= 0."""
    check_number(name, weight, minimum=0, finite=True)


def masked_lm_loss(targets, logits):
    """Cross-entropy averaged over the real predictions of the global batch.

    `targets` holds `masked_ids` and `masked_weights` (0 on padding
    predictions); see `global_weighted_mean` for the multi-replica case.
    """
    losses = keras.losses.sparse_categorical_crossentropy(
        targets["masked_ids"], logits, from_logits=True
    )
    return global_weighted_mean(losses, targets["masked_weights"])


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class BertPretrainer(Pretrainer):
    """BERT with its two pretraining heads.

    Inputs: the encoder's inputs plus `masked_positions` (int32
    `[batch, num_predictions]`). Outputs: `mlm_logits`
    `[batch, num_predictions, vocab]` and `nsp_logits` `[batch, 2]` (label 0:
    B follows A, label 1: B is random), both float32.
    """

    encoder_class = BertEncoder

    def _make_next_sentence_head(self, encoder):
        return NextSentenceHead(
            initializer_range=encoder.config.initializer_range,
            dtype=encoder.dtype_policy,
            name="next_sentence_head",
        )


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class DistilBertPretrainer(Pretrainer):
    """DistilBERT with its masked-LM head (DistilBERT drops next-sentence prediction).

    Inputs: the encoder's inputs plus `masked_positions`. Output: `mlm_logits`.
    """

    encoder_class = DistilBertEncoder


def pretrainer_for(encoder, **kwargs):
    """The pretrainer of `encoder`'s architecture: BERT's or DistilBERT's."""
    for pretrainer_class in (BertPretrainer, DistilBertPretrainer):
        if type(encoder) is pretrainer_class.encoder_class:
            return pretrainer_class(encoder, **kwargs)
    raise ValueError(f"No pretrainer for a {type(encoder).__name__}.")
