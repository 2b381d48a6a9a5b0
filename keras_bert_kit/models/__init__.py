"""Encoders and pretraining models."""

from keras_bert_kit.models.bert_encoder import BertEncoder
from keras_bert_kit.models.distilbert_encoder import DistilBertEncoder
from keras_bert_kit.models.pretrainers import BertPretrainer, DistilBertPretrainer

__all__ = ["BertEncoder", "BertPretrainer", "DistilBertEncoder", "DistilBertPretrainer"]
