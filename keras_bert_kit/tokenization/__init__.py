"""In-graph WordPiece tokenization, BERT input packing and vocabulary training."""

from keras_bert_kit.tokenization.preprocessor import BertPreprocessor
from keras_bert_kit.tokenization.tokenizer import BertTokenizer
from keras_bert_kit.tokenization.vocabulary import (
    CLS_TOKEN,
    MASK_TOKEN,
    PAD_TOKEN,
    SEP_TOKEN,
    SPECIAL_TOKENS,
    UNK_TOKEN,
    load_vocabulary,
    save_vocabulary,
    standard_reserved_tokens,
)

__all__ = [
    "CLS_TOKEN",
    "MASK_TOKEN",
    "PAD_TOKEN",
    "SEP_TOKEN",
    "SPECIAL_TOKENS",
    "UNK_TOKEN",
    "BertPreprocessor",
    "BertTokenizer",
    "load_vocabulary",
    "save_vocabulary",
    "standard_reserved_tokens",
]
