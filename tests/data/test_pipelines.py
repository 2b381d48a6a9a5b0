"""`pretraining_dataset` and `text_dataset`: batch layout, length buckets, options, errors."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.data import (
    MaskedLMMasker,
    default_bucket_lengths,
    pretraining_dataset,
    text_dataset,
    write_pretraining_tfrecords,
)
from tests.data.corpus import original_ids

BATCH_KEYS = {"input_ids", "segment_ids", "padding_mask", "masked_positions", "masked_ids",
              "masked_weights", "nsp_label"}


@pytest.fixture(scope="module")
def masker(bert_tokenizer):
    return MaskedLMMasker.from_tokenizer(bert_tokenizer)


def _numpy(batch):
    return {name: np.asarray(value) for name, value in batch.items()}


def _examples_multiset(examples):
    return collections.Counter(
        (tuple(e["input_ids"]), tuple(e["segment_ids"]), int(e["nsp_label"]))
        for e in map(examples.example, range(len(examples)))
    )


def _batches_multiset(batches):
    """The unmasked, unpadded examples of masked batches."""
    found = collections.Counter()
    for batch in batches:
        originals = original_ids(batch)
        for i, length in enumerate(batch["padding_mask"].sum(1)):
            found[(tuple(originals[i, :length]), tuple(batch["segment_ids"][i, :length]),
                   int(batch["nsp_label"][i]))] += 1
    return found


# -- pretraining_dataset ------------------------------------------------------------------


def test_default_bucket_lengths():
    assert default_bucket_lengths(128) == (32, 64, 128)
    assert default_bucket_lengths(512) == (32, 64, 128, 256, 512)
    assert default_bucket_lengths(100) == (32, 64, 100)
    assert default_bucket_lengths(64) == (32, 64)
    assert default_bucket_lengths(32) == (32,)
    assert default_bucket_lengths(20) == (20,)


def test_batch_keys_dtypes_and_shapes(small_examples, masker):
    dataset = pretraining_dataset(small_examples, masker, batch_size=16)
    spec = dataset.element_spec
    assert set(spec) == BATCH_KEYS
    for name in ("input_ids", "segment_ids", "padding_mask"):
        assert spec[name].dtype == tf.int32 and spec[name].shape.rank == 2
    for name in ("masked_positions", "masked_ids"):
        assert spec[name].dtype == tf.int32 and spec[name].shape.as_list() == [None, 20]
    assert spec["masked_weights"].dtype == tf.float32
    assert spec["masked_weights"].shape.as_list() == [None, 20]
    assert spec["nsp_label"].dtype == tf.int32 and spec["nsp_label"].shape.rank == 1
    rows = 0
    for batch in dataset:
        batch = _numpy(batch)
        size, width = batch["input_ids"].shape
        assert 1 <= size <= 16
        for name in ("segment_ids", "padding_mask"):
            assert batch[name].shape == (size, width)
        for name in ("masked_positions", "masked_ids", "masked_weights"):
            assert batch[name].shape == (size, 20)
        assert batch["nsp_label"].shape == (size,)
        assert set(np.unique(batch["nsp_label"])) <= {0, 1}
        rows += size
    assert rows == len(small_examples)


def test_batches_are_padded_to_their_bucket(small_examples, masker):
    dataset = pretraining_dataset(small_examples, masker, batch_size=8, seed=0)
    buckets = (32, 64, 128)
    widths = collections.Counter()
    for batch in map(_numpy, dataset):
        width = batch["input_ids"].shape[1]
        assert width in buckets
        widths[width] += 1
        smaller = max([b for b in buckets if b < width], default=0)
        lengths = batch["padding_mask"].sum(1)
        # Every example went to the smallest bucket that holds it.
        assert (lengths <= width).all() and (lengths > smaller).all(), (width, lengths)
        # padding_mask: ones over the example, zeros over the padding.
        np.testing.assert_array_equal(
            batch["padding_mask"], (np.arange(width) < lengths[:, None]).astype(np.int32)
        )
        padding = batch["padding_mask"] == 0
        assert not batch["input_ids"][padding].any() and not batch["segment_ids"][padding].any()
        assert (original_ids(batch)[~padding] != 0).all()
        # Predictions point at real tokens only.
        real = batch["masked_weights"] > 0
        rows = np.broadcast_to(np.arange(len(lengths))[:, None], real.shape)
        assert (batch["masked_positions"][real] < lengths[rows[real]]).all()
    assert set(widths) == set(buckets), widths
    assert _batches_multiset(map(_numpy, dataset)) == _examples_multiset(small_examples)


def test_custom_bucket_lengths(small_examples, masker):
    dataset = pretraining_dataset(small_examples, masker, batch_size=16,
                                  bucket_lengths=[128, 48, 96])
    widths = {batch["input_ids"].shape[1] for batch in dataset}
    assert widths <= {48, 96, 128} and 128 in widths and len(widths) >= 2


def test_example_longer_than_the_largest_bucket(small_examples, masker):
    assert small_examples.lengths().max() > 64
    for kwargs in (dict(bucket_lengths=(32, 64)), dict(max_seq_length=64)):
        dataset = pretraining_dataset(small_examples, masker, batch_size=16, **kwargs)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"largest bucket \(64 tokens\)"):
            for _ in dataset:
                pass


def test_drop_remainder(small_examples, masker):
    kept = 0
    for batch in pretraining_dataset(small_examples, masker, batch_size=32, drop_remainder=True):
        assert batch["input_ids"].shape[0] == 32
        assert batch["masked_positions"].shape[0] == batch["nsp_label"].shape[0] == 32
        kept += 32
    # At most one partial batch per bucket is left out.
    assert len(small_examples) - 3 * 31 <= kept <= len(small_examples)
    assert kept < len(small_examples)  # 570 examples do not fill the buckets exactly


def test_repeat(small_examples, masker):
    once = sum(1 for _ in pretraining_dataset(small_examples, masker, batch_size=32))
    dataset = pretraining_dataset(small_examples, masker, batch_size=32, repeat=True, seed=1)
    batches = [_numpy(b) for b in dataset.take(3 * once)]
    assert len(batches) == 3 * once
    found = _batches_multiset(batches)
    expected = _examples_multiset(small_examples)
    assert set(found) <= set(expected)
    assert sum(found.values()) > 2 * len(small_examples)


def test_shuffle_keeps_the_examples(small_examples, masker):
    def first_labels(**kwargs):
        dataset = pretraining_dataset(small_examples, masker, batch_size=16, **kwargs)
        return [_numpy(b) for b in dataset]

    ordered, shuffled = first_labels(shuffle_buffer_size=0), first_labels(seed=5)
    assert _batches_multiset(ordered) == _batches_multiset(shuffled)
    assert [b["nsp_label"].tolist() for b in ordered] != [b["nsp_label"].tolist()
                                                          for b in shuffled]


def test_in_memory_examples_are_shuffled_as_a_whole(masker):
    # Examples come document by document; a 10,000-example window would feed
    # the first batches from the first documents only.
    count, length = 20_000, 8
    ids = np.tile(np.array([101, 2000, 2001, 102, 2002, 2003, 2004, 102], np.int32), count)
    segments = np.tile(np.array([0, 0, 0, 0, 1, 1, 1, 1], np.int32), count)
    examples = kbk.data.PretrainingExamples(
        input_ids=ids, segment_ids=segments,
        row_splits=np.arange(0, count * length + 1, length, dtype=np.int64),
        nsp_labels=np.arange(count, dtype=np.int32),  # the label marks the position
    )
    first = next(iter(pretraining_dataset(examples, masker, batch_size=64, seed=0)))
    assert np.asarray(first["nsp_label"]).max() > 10_100


def test_from_a_dataset_of_examples(small_examples, masker):
    dataset = pretraining_dataset(small_examples.to_dataset(), masker, batch_size=64)
    assert _batches_multiset(map(_numpy, dataset)) == _examples_multiset(small_examples)


def test_from_a_tfrecord_directory(small_examples, masker, tmp_path):
    write_pretraining_tfrecords(small_examples, tmp_path / "shards", num_shards=3)
    for source in (str(tmp_path / "shards"), tmp_path / "shards",
                   [str(tmp_path / "shards" / "*.tfrecord")]):
        dataset = pretraining_dataset(source, masker, batch_size=32, seed=2)
        assert set(dataset.element_spec) == BATCH_KEYS
        batches = [_numpy(b) for b in dataset]
        assert {b["input_ids"].shape[1] for b in batches} <= {32, 64, 128}
        assert _batches_multiset(batches) == _examples_multiset(small_examples)


def test_missing_tfrecords(masker, tmp_path):
    with pytest.raises(FileNotFoundError):
        pretraining_dataset(str(tmp_path / "nothing"), masker)


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, True, None])
def test_bad_batch_size(small_examples, masker, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        pretraining_dataset(small_examples, masker, batch_size=batch_size)


def test_bad_bucket_lengths(small_examples, masker):
    with pytest.raises(ValueError, match="bucket_lengths"):
        pretraining_dataset(small_examples, masker, bucket_lengths=(0, 128))


def test_tiny_pretrainer_runs_on_a_batch(small_examples, masker, keras_session):
    config = kbk.BertConfig(vocab_size=30522, hidden_size=32, num_layers=1, num_heads=2,
                            intermediate_size=64, max_sequence_length=128)
    model = kbk.BertPretrainer(kbk.BertEncoder(config))
    assert set(model.input_names) <= BATCH_KEYS
    dataset = pretraining_dataset(small_examples, masker, batch_size=8, seed=3)
    widths = set()
    for batch in dataset.take(6):
        outputs = model(batch)
        size, width = batch["input_ids"].shape
        widths.add(width)
        assert tuple(outputs["mlm_logits"].shape) == (size, 20, 30522)
        assert tuple(outputs["nsp_logits"].shape) == (size, 2)
        assert np.isfinite(outputs["mlm_logits"].numpy()).all()
        assert np.isfinite(outputs["nsp_logits"].numpy()).all()
    # Only the model's own inputs matter: the extra batch keys are labels.
    inputs = {name: batch[name] for name in model.input_names}
    np.testing.assert_allclose(model(inputs)["nsp_logits"], outputs["nsp_logits"], atol=1e-5)


# -- text_dataset ---------------------------------------------------------------------------

TEXTS = [
    "good movie",
    "a bad one here, truly awful from start to finish",
    "x",
    "An extraordinarily long-winded review " + "that keeps going and going " * 12,
    "Fine.",
    "meh, it was okay I guess",
]


@pytest.fixture(scope="module")
def preprocessor(bert_tokenizer):
    return kbk.BertPreprocessor(bert_tokenizer, sequence_length=64)


def test_text_dataset_with_labels_keeps_order_and_padding(preprocessor):
    texts, labels = TEXTS * 3, list(range(len(TEXTS) * 3))
    dataset = text_dataset(texts, preprocessor, labels=labels, batch_size=4)
    seen = 0
    for features, batch_labels in dataset:
        size = batch_labels.shape[0]
        expected = preprocessor(texts[seen : seen + size])
        assert set(features) == {"input_ids", "segment_ids", "padding_mask"}
        for name, value in expected.items():
            np.testing.assert_array_equal(features[name], value)
        assert features["input_ids"].shape == (size, 64)
        np.testing.assert_array_equal(batch_labels, labels[seen : seen + size])
        seen += size
    assert seen == len(texts)


def test_text_dataset_pairs(preprocessor):
    first, second = TEXTS, TEXTS[::-1]
    batches = list(text_dataset(first, preprocessor, text_pairs=second, batch_size=len(TEXTS)))
    assert len(batches) == 1 and isinstance(batches[0], dict)
    expected = preprocessor((first, second))
    for name, value in expected.items():
        np.testing.assert_array_equal(batches[0][name], value)
    assert batches[0]["segment_ids"].numpy().max() == 1


def _unpadded(features):
    lengths = features["padding_mask"].numpy().sum(1)
    ids, segments = features["input_ids"].numpy(), features["segment_ids"].numpy()
    return [(tuple(ids[i, :n]), tuple(segments[i, :n])) for i, n in enumerate(lengths)]


@pytest.mark.parametrize("pairs", [False, True])
def test_text_dataset_buckets(preprocessor, bert_tokenizer, pairs):
    texts = TEXTS * 4
    text_pairs = texts[::-1] if pairs else None
    labels = list(range(len(texts)))
    buckets = (8, 16, 32)
    dataset = text_dataset(texts, preprocessor, labels=labels, text_pairs=text_pairs,
                           batch_size=3, bucket_lengths=buckets)
    # Bucketing sees each example truncated to the largest bucket.
    reference = kbk.BertPreprocessor(bert_tokenizer, sequence_length=32, padding="longest")
    found = collections.Counter()
    for features, batch_labels in dataset:
        width = features["input_ids"].shape[1]
        assert width in buckets
        lengths = features["padding_mask"].numpy().sum(1)
        smaller = max([b for b in buckets if b < width], default=0)
        assert (lengths <= width).all() and (lengths > smaller).all()
        np.testing.assert_array_equal(
            features["padding_mask"], (np.arange(width) < lengths[:, None]).astype(np.int32)
        )
        for row, label in zip(_unpadded(features), batch_labels.numpy()):
            found[(row, int(label))] += 1
    expected = collections.Counter()
    for i, label in enumerate(labels):
        segments = (texts[i], text_pairs[i]) if pairs else texts[i]
        single = reference(segments)
        n = int(single["padding_mask"].numpy().sum())
        expected[((tuple(single["input_ids"].numpy()[:n]),
                   tuple(single["segment_ids"].numpy()[:n])), label)] += 1
    assert found == expected


def test_text_dataset_buckets_without_labels(preprocessor):
    batches = list(text_dataset(TEXTS, preprocessor, batch_size=2, bucket_lengths=(16, 64)))
    assert all(isinstance(b, dict) for b in batches)
    assert sum(b["input_ids"].shape[0] for b in batches) == len(TEXTS)
    assert {b["input_ids"].shape[1] for b in batches} == {16, 64}


def test_text_dataset_repeat_shuffle_and_drop_remainder(preprocessor):
    labels = list(range(len(TEXTS)))
    dataset = text_dataset(TEXTS, preprocessor, labels=labels, batch_size=4, repeat=True,
                           shuffle_buffer_size=10, seed=0)
    seen = [int(x) for _, batch_labels in dataset.take(6) for x in batch_labels]
    assert len(seen) == 24 and collections.Counter(seen) == collections.Counter(labels * 4)
    dropped = list(text_dataset(TEXTS, preprocessor, labels=labels, batch_size=4,
                                drop_remainder=True))
    assert [b[1].shape[0] for b in dropped] == [4]


def test_text_dataset_errors(preprocessor):
    with pytest.raises(ValueError, match="differ in length"):
        text_dataset(TEXTS, preprocessor, labels=[1, 0])
    with pytest.raises(ValueError, match="differ in length"):
        text_dataset(TEXTS, preprocessor, text_pairs=TEXTS[:2])
    with pytest.raises(ValueError, match="empty"):
        text_dataset([], preprocessor)
    with pytest.raises(ValueError, match=r"largest bucket \(128\).*sequence_length \(64\)"):
        text_dataset(TEXTS, preprocessor, bucket_lengths=(32, 128))
    with pytest.raises(ValueError, match="batch_size"):
        text_dataset(TEXTS, preprocessor, batch_size=0)
