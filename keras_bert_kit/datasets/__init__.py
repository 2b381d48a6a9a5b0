"""Corpora (news articles, Rotten Tomatoes) and loaders for users' own text files."""

from keras_bert_kit.datasets.corpora import (
    RT_LABEL_NAMES,
    load_news_articles,
    load_rotten_tomatoes,
    rotten_tomatoes_split,
)
from keras_bert_kit.datasets.files import load_csv, load_jsonl, load_text_documents
from keras_bert_kit.datasets.labeled import LabeledTexts

__all__ = [
    "RT_LABEL_NAMES",
    "LabeledTexts",
    "load_csv",
    "load_jsonl",
    "load_news_articles",
    "load_rotten_tomatoes",
    "load_text_documents",
    "rotten_tomatoes_split",
]
