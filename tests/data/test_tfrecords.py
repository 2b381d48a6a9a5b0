"""TFRecord shards: write/read round trip, dataset_info.json, streaming creation."""

import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_bert_kit.data import (
    create_pretraining_examples,
    create_pretraining_tfrecords,
    read_pretraining_tfrecords,
    write_pretraining_tfrecords,
)
from keras_bert_kit.data import tfrecords as tfrecords_module
from tests.data import corpus


def _multiset(elements):
    return collections.Counter(
        (tuple(np.asarray(e["input_ids"]).tolist()), tuple(np.asarray(e["segment_ids"]).tolist()),
         int(e["nsp_label"]))
        for e in elements
    )


def _examples_multiset(examples):
    return _multiset(map(examples.example, range(len(examples))))


def _read(files, **kwargs):
    return list(read_pretraining_tfrecords(files, **kwargs).as_numpy_iterator())


def _info(directory):
    with open(os.path.join(directory, "dataset_info.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def examples(news, bert_tokenizer):
    return create_pretraining_examples(news[:50], bert_tokenizer, 64, seed=2)


@pytest.mark.parametrize("num_shards", [1, 3])
def test_write_read_round_trip(examples, tmp_path, num_shards):
    paths = write_pretraining_tfrecords(examples, tmp_path, num_shards=num_shards)
    assert paths == [str(tmp_path / f"examples-{i:05d}.tfrecord") for i in range(num_shards)]
    assert all(os.path.getsize(p) > 0 for p in paths)
    elements = _read(tmp_path)
    assert len(elements) == len(examples)
    element = elements[0]
    assert set(element) == {"input_ids", "segment_ids", "nsp_label"}
    assert element["input_ids"].dtype == element["segment_ids"].dtype == np.int32
    assert element["nsp_label"].dtype == np.int32 and element["nsp_label"].shape == ()
    # Shards are interleaved, so compare as multisets.
    assert _multiset(elements) == _examples_multiset(examples)
    # Each shard holds a contiguous, near-equal share.
    sizes = [sum(1 for _ in tf.data.TFRecordDataset(p)) for p in paths]
    assert sum(sizes) == len(examples) and max(sizes) - min(sizes) <= 1
    first = _read(paths[0])
    assert _multiset(first) == _multiset(map(examples.example, range(sizes[0])))
    assert not list(tmp_path.glob("*.partial"))


def test_dataset_info(examples, tmp_path):
    paths = write_pretraining_tfrecords(examples, tmp_path / "out", num_shards=2)
    info = _info(tmp_path / "out")
    assert info == {
        "num_examples": len(examples),
        "max_example_length": int(examples.lengths().max()),
        "shards": ["examples-00000.tfrecord", "examples-00001.tfrecord"],
    }
    assert [os.path.basename(p) for p in paths] == info["shards"]


def test_read_paths_globs_and_lists(examples, tmp_path):
    paths = write_pretraining_tfrecords(examples, tmp_path, num_shards=3)
    expected = _examples_multiset(examples)
    assert _multiset(_read(str(tmp_path / "*.tfrecord"))) == expected
    assert _multiset(_read(paths)) == expected
    assert _multiset(_read([paths[0], str(tmp_path / "examples-0000[12].tfrecord")])) == expected
    assert _multiset(_read(tmp_path, shuffle_files=True, seed=1)) == expected


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_pretraining_tfrecords(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        read_pretraining_tfrecords(str(tmp_path / "missing-*.tfrecord"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        read_pretraining_tfrecords(tmp_path / "empty")  # a folder without shards
    with pytest.raises(FileNotFoundError):
        read_pretraining_tfrecords([tmp_path / "empty", tmp_path / "missing"])


def test_bad_num_shards(examples, tmp_path):
    for num_shards in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_shards"):
            write_pretraining_tfrecords(examples, tmp_path, num_shards=num_shards)


# -- streaming from an iterable -------------------------------------------------------------

WORDS_PER_SENTENCE, SENTENCES = 4, 6


@pytest.fixture(scope="module")
def traceable_documents(bert_tokenizer):
    """41 documents of one-token words that occur once, so every token names its document.

    With 4-token sentences and max_seq_length 11 (8 for A + B), nothing is
    ever truncated: every token of every document ends up in some example.
    """
    count = 41 * SENTENCES * WORDS_PER_SENTENCE
    words = np.array(corpus.single_piece_words(bert_tokenizer, count)).reshape(
        41, SENTENCES, WORDS_PER_SENTENCE)
    documents = [[" ".join(s) for s in doc] for doc in words]
    owner = {}
    for d, doc in enumerate(documents):
        for token in bert_tokenizer(" ".join(doc)).numpy():
            owner[int(token)] = d
    assert len(owner) == count
    return documents, owner


def _documents_in(elements, owner):
    """Document -> set of its tokens found in the elements."""
    found = collections.defaultdict(set)
    for element in elements:
        for token in element["input_ids"]:
            if int(token) in owner:
                found[owner[int(token)]].add(int(token))
    return found


def test_create_streams_blocks_into_shards(traceable_documents, bert_tokenizer, tmp_path,
                                           monkeypatch):
    documents, owner = traceable_documents
    pulled = []
    made = []

    def generator():
        for document in documents:
            pulled.append(document)
            yield document

    original = tfrecords_module.create_pretraining_examples

    def spy(block, *args, **kwargs):
        made.append((len(block), len(pulled)))
        return original(block, *args, **kwargs)

    monkeypatch.setattr(tfrecords_module, "create_pretraining_examples", spy)
    # 41 documents in blocks of 10: the 41st cannot pair alone and joins the 4th shard.
    paths = create_pretraining_tfrecords(generator(), bert_tokenizer, tmp_path,
                                         documents_per_shard=10, max_seq_length=11,
                                         short_seq_prob=0.0, seed=4)
    assert paths == [str(tmp_path / f"examples-{i:05d}.tfrecord") for i in range(4)]
    assert [size for size, _ in made] == [10, 10, 10, 11]
    # Streaming: a shard is made with at most one block read ahead.
    for k, (_, read) in enumerate(made):
        assert read <= 10 * (k + 2) + 1, made
    assert not list(tmp_path.glob("*.partial"))
    # Every document's tokens, the short last block's included, are in its block's shard.
    blocks = [range(0, 10), range(10, 20), range(20, 30), range(30, 41)]
    total = 0
    for path, block in zip(paths, blocks):
        elements = _read(path)
        total += len(elements)
        found = _documents_in(elements, owner)
        assert set(found) == set(block)
        for d in block:
            expected = {t for t, owner_d in owner.items() if owner_d == d}
            assert found[d] == expected, d
        for element in elements:
            ids = element["input_ids"]
            assert len(ids) <= 11 and ids[0] == corpus.CLS and ids[-1] == corpus.SEP
    info = _info(tmp_path)
    assert info["num_examples"] == total
    assert info["shards"] == [os.path.basename(p) for p in paths]
    assert info["max_example_length"] == max(len(e["input_ids"]) for e in _read(paths))


def test_create_matches_examples_of_each_block(news, bert_tokenizer, tmp_path):
    docs = news[:24]
    paths = create_pretraining_tfrecords(iter(docs), bert_tokenizer, tmp_path,
                                         documents_per_shard=8, max_seq_length=64, seed=9)
    assert len(paths) == 3
    for k, path in enumerate(paths):
        # Shard k is block k made with seed + k.
        block = create_pretraining_examples(docs[8 * k : 8 * k + 8], bert_tokenizer, 64,
                                            seed=9 + k)
        assert _multiset(_read(path)) == _examples_multiset(block)


def test_create_with_runs_of_empty_documents(bert_tokenizer, tmp_path):
    def docs(first, n):
        return [f"Document {i} speaks. It has a second sentence." for i in range(first, first + n)]

    cases = {
        "middle": [*docs(0, 2), "", "", "", "", *docs(2, 4)],
        "first": ["", *docs(0, 1), *docs(1, 4)],
        "several": [*docs(0, 2), *docs(2, 1), "", "", "", *docs(3, 2)],
        "tail": [*docs(0, 2), *docs(2, 1), "", "", *docs(3, 1)],
    }
    for name, documents in cases.items():
        non_empty = [d for d in documents if d]
        paths = create_pretraining_tfrecords(documents, bert_tokenizer, tmp_path / name,
                                             documents_per_shard=2, max_seq_length=32)
        elements = _read(paths)
        text = " ".join(bert_tokenizer.detokenize(e["input_ids"]).numpy().decode()
                        for e in elements)
        for i in range(len(non_empty)):
            assert f"document {i} speaks" in text, (name, i)


def test_create_errors(bert_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="at least 2 non-empty documents"):
        create_pretraining_tfrecords(["Only one.", "", "  "], bert_tokenizer, tmp_path / "a")
    with pytest.raises(ValueError, match="at least 2 non-empty documents"):
        create_pretraining_tfrecords(iter([]), bert_tokenizer, tmp_path / "b")
    for bad in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match="documents_per_shard"):
            create_pretraining_tfrecords(["A.", "B."], bert_tokenizer, tmp_path / "c",
                                         documents_per_shard=bad)
