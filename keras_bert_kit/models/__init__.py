"""Encoders and pretraining models."""

from keras_bert_kit.models.bert_encoder import BertEncoder
from keras_bert_kit.models.distilbert_encoder import DistilBertEncoder
from keras_bert_kit.models.pretrainers import (
    BertPretrainer,
    DistilBertPretrainer,
    Pretrainer,
    pretrainer_for,
)


def encoder_from_config(config, **kwargs):
    """The encoder `config` describes: a `BertEncoder` or a `DistilBertEncoder`."""
    for encoder_class in (BertEncoder, DistilBertEncoder):
        if type(config) is encoder_class.config_class:
            return encoder_class(config, **kwargs)
    raise ValueError(f"No encoder for a {type(config).__name__}.")


__all__ = [
    "BertEncoder",
    "BertPretrainer",
    "DistilBertEncoder",
    "DistilBertPretrainer",
    "Pretrainer",
    "encoder_from_config",
    "pretrainer_for",
]
