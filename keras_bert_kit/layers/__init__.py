"""Registered Keras layers the encoders and heads are built from."""

from keras_bert_kit.layers.attention import MultiHeadSelfAttention
from keras_bert_kit.layers.dropout import Dropout
from keras_bert_kit.layers.embeddings import TransformerEmbeddings
from keras_bert_kit.layers.fused_dense import FusedDense
from keras_bert_kit.layers.layer_norm import LayerNormalization
from keras_bert_kit.layers.masked_lm_head import MaskedLMHead
from keras_bert_kit.layers.mean_pooler import MeanPooler
from keras_bert_kit.layers.next_sentence_head import NextSentenceHead
from keras_bert_kit.layers.pooler import CLSPooler
from keras_bert_kit.layers.transformer_block import TransformerBlock

__all__ = [
    "CLSPooler",
    "Dropout",
    "FusedDense",
    "LayerNormalization",
    "MaskedLMHead",
    "MeanPooler",
    "MultiHeadSelfAttention",
    "NextSentenceHead",
    "TransformerBlock",
    "TransformerEmbeddings",
]
