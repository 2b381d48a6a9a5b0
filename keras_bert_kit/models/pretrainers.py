"""Pretraining models: an encoder plus masked-LM (and next-sentence) heads."""

import keras

from keras_bert_kit.layers import MaskedLMHead, NextSentenceHead
from keras_bert_kit.models.bert_encoder import BertEncoder
from keras_bert_kit.models.distilbert_encoder import DistilBertEncoder
from keras_bert_kit.models.inputs import (
    check_id_inputs,
    check_input_keys,
    static_sequence_length,
)


class _Pretrainer(keras.Model):
    """Encoder + heads as one functional model with dict inputs and outputs."""

    encoder_class = None

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
        encoded = encoder({name: inputs[name] for name in encoder.input_names})
        outputs = {
            "mlm_logits": masked_lm_head(encoded["sequence_output"], inputs["masked_positions"])
        }
        if next_sentence_head is not None:
            outputs["nsp_logits"] = next_sentence_head(encoded["pooled_output"])
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._input_names = list(inputs)

        # === Config ===
        self.encoder = encoder
        self.masked_lm_head = masked_lm_head
        self.next_sentence_head = next_sentence_head

    def _make_next_sentence_head(self, encoder):
        return None

    @property
    def input_names(self):
        return self._input_names

    def call(self, inputs, training=None, mask=None):
        # Checked here, not only in the encoder: the functional graph would
        # silently cast float ids to its int32 inputs before the encoder runs.
        check_input_keys(inputs, self.input_names, self.name)
        encoder_inputs = check_id_inputs(
            inputs, dict.fromkeys(self.encoder.input_names), self.name
        )
        positions = check_id_inputs(
            inputs,
            {"masked_positions": static_sequence_length(encoder_inputs["input_ids"])},
            self.name,
        )
        return super().call({**encoder_inputs, **positions}, training=training, mask=mask)

    def get_config(self):
        return {
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class BertPretrainer(_Pretrainer):
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
class DistilBertPretrainer(_Pretrainer):
    """DistilBERT with its masked-LM head (DistilBERT drops next-sentence prediction).

    Inputs: the encoder's inputs plus `masked_positions`. Output: `mlm_logits`.
    """

    encoder_class = DistilBertEncoder
