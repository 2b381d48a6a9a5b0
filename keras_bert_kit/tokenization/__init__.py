"""In-graph WordPiece tokenization, BERT input packing, word splitting and vocabulary training."""

from keras_bert_kit.tokenization.preprocessor import BertPreprocessor
from keras_bert_kit.tokenization.tokenizer import BertTokenizer, normalize_text
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
from keras_bert_kit.tokenization.vocabulary_training import train_wordpiece_vocabulary
from keras_bert_kit.tokenization.words import split_words, split_words_with_offsets

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
    "normalize_text",
    "save_vocabulary",
    "split_words",
    "split_words_with_offsets",
    "standard_reserved_tokens",
    "train_wordpiece_vocabulary",
]
