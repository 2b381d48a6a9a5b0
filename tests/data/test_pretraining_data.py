"""NSP examples, dynamic masking statistics, bucketed pipelines and TFRecords."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit import data


@pytest.fixture(scope="module")
def news_examples(uncased_tokenizer, news_articles):
    return data.create_pretraining_examples(news_articles[:600], uncased_tokenizer, 128, seed=3)


def test_split_sentences_keeps_text():
    text = 'Mr. Smith met U.S. Sen. Warren. "Hi!" she said… 50 came.\nNew line. and more.'
    sentences = data.split_sentences(text)
    assert sentences == ["Mr. Smith met U.S. Sen. Warren.", '"Hi!" she said…', "50 came.",
                         "New line. and more."]
    assert "".join(sentences).replace(" ", "") == text.replace(" ", "").replace("\n", "")


def test_example_structure_and_balanced_labels(news_examples, uncased_tokenizer):
    assert len(news_examples) >= 4000
    random_share = news_examples.nsp_labels.mean()
    assert abs(random_share - 0.5) <= 0.02, random_share
    for i in range(0, len(news_examples), 37):
        e = news_examples.example(i)
        ids, seg = e["input_ids"], e["segment_ids"]
        assert ids[0] == 101 and ids[-1] == 102 and len(ids) <= 128 and 0 not in ids
        seps = np.flatnonzero(ids == 102)
        assert len(seps) == 2 and 1 < seps[0] < len(ids) - 2
        np.testing.assert_array_equal(seg, (np.arange(len(ids)) > seps[0]).astype(int))


def test_next_pairs_are_adjacent_and_random_pairs_come_from_elsewhere(uncased_tokenizer):
    # Every sentence is "d<doc> s<sentence>." so its tokens say where it came from.
    docs = [[f"d{d} s{s}." for s in range(12)] for d in range(30)]
    ex = data.create_pretraining_examples(docs, uncased_tokenizer, 24, short_seq_prob=0.0,
                                          dupe_factor=2, seed=1)
    sentence_of = {tuple(uncased_tokenizer(f"d{d} s{s}.").numpy()): (d, s)
                   for d in range(30) for s in range(12)}
    labels = collections.Counter()
    for i in range(len(ex)):
        e = ex.example(i)
        ids = list(e["input_ids"])
        sep = ids.index(102)
        a, b = ids[1:sep], ids[sep + 1 : -1]
        n = len(next(iter(sentence_of)))
        a_last, b_first = sentence_of.get(tuple(a[-n:])), sentence_of.get(tuple(b[:n]))
        if a_last is None or b_first is None:
            continue  # truncated at the junction
        labels[int(e["nsp_label"])] += 1
        if e["nsp_label"] == 0:
            assert b_first == (a_last[0], a_last[1] + 1)
        else:
            assert b_first[0] != a_last[0]
    assert labels[0] > 20 and labels[1] > 20


def test_seed_short_seq_prob_and_errors(uncased_tokenizer, news_articles):
    docs = news_articles[:40]
    a = data.create_pretraining_examples(docs, uncased_tokenizer, 64, seed=5)
    b = data.create_pretraining_examples(docs, uncased_tokenizer, 64, seed=5)
    c = data.create_pretraining_examples(docs, uncased_tokenizer, 64, seed=6)
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    assert len(a.input_ids) != len(c.input_ids) or (a.input_ids != c.input_ids).any()
    short = data.create_pretraining_examples(docs, uncased_tokenizer, 64, short_seq_prob=1.0)
    assert short.lengths().mean() < a.lengths().mean()
    for kwargs, message in [(dict(max_seq_length=4), "max_seq_length"),
                            (dict(short_seq_prob=1.5), "short_seq_prob"),
                            (dict(dupe_factor=0), "dupe_factor")]:
        with pytest.raises(ValueError, match=message):
            data.create_pretraining_examples(docs, uncased_tokenizer, **kwargs)
    with pytest.raises(ValueError, match="at least 2"):
        data.create_pretraining_examples(["only one document."], uncased_tokenizer)
    with pytest.raises(ValueError, match="Document 1"):
        data.create_pretraining_examples(["a.", 7], uncased_tokenizer)


def _masking_counts(dataset, batches=None):
    counts = collections.Counter()
    for i, batch in enumerate(dataset):
        if batches is not None and i >= batches:
            break
        ids, mask = batch["input_ids"].numpy(), batch["padding_mask"].numpy()
        pos, orig, w = (batch[k].numpy() for k in ("masked_positions", "masked_ids",
                                                   "masked_weights"))
        counts["selectable"] += int(mask.sum()) - 3 * len(mask)
        real = w > 0
        counts["selected"] += int(real.sum())
        chosen = np.take_along_axis(ids, pos, axis=1)[real]
        assert not np.isin(orig[real], [0, 101, 102]).any()
        counts["mask"] += int((chosen == 103).sum())
        counts["same"] += int((chosen == orig[real]).sum())
    counts["random"] = counts["selected"] - counts["mask"] - counts["same"]
    return counts


def test_masking_statistics_over_100k_tokens(news_examples, uncased_tokenizer):
    tf.random.set_seed(0)
    masker = data.MaskedLMMasker.from_tokenizer(uncased_tokenizer)
    counts = _masking_counts(data.pretraining_dataset(news_examples, masker, batch_size=64))
    assert counts["selectable"] >= 100_000
    assert abs(counts["selected"] / counts["selectable"] - 0.15) <= 0.01
    for kind, share in (("mask", 0.8), ("random", 0.1), ("same", 0.1)):
        assert abs(counts[kind] / counts["selected"] - share) <= 0.01, (kind, counts)


def test_short_sequences_are_not_over_masked(uncased_tokenizer):
    tf.random.set_seed(1)
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 30, size=4000)
    ids = tf.RaggedTensor.from_row_lengths(
        rng.integers(1000, 30000, size=lengths.sum()).astype("int32"), lengths)
    out = data.MaskedLMMasker.from_tokenizer(uncased_tokenizer).mask(ids)
    assert abs(out["masked_weights"].numpy().sum() / lengths.sum() - 0.15) <= 0.01


def test_whole_word_masking(uncased_tokenizer):
    tf.random.set_seed(2)
    text = ["[CLS]"] + ["unbelievably photosynthesis antidisestablishmentarianism"] * 4
    ids = uncased_tokenizer(tf.constant([" ".join(text[1:])] * 64))
    cont = np.array([t.startswith("##") for t in uncased_tokenizer.get_vocabulary()])
    masker = data.MaskedLMMasker.from_tokenizer(uncased_tokenizer, whole_word_masking=True,
                                                max_predictions_per_seq=6, mask_rate=0.5)
    out = masker.mask(ids)
    for row, masked, pos, w in zip(ids.to_list(), out["input_ids"].to_list(),
                                   out["masked_positions"].numpy(), out["masked_weights"].numpy()):
        predicted = set(pos[w > 0].tolist())
        assert len(predicted) <= 6
        changed = {i for i, (a, b) in enumerate(zip(row, masked)) if a != b}
        assert changed <= predicted  # nothing hidden that is not predicted
        word = np.cumsum(~cont[row])
        for i in predicted:  # all pieces of a predicted word are predicted, unless capped
            members = set(np.flatnonzero(word == word[i]).tolist())
            assert members <= predicted or len(predicted) == 6


def test_masking_is_dynamic_and_pipeline_buckets(news_examples, uncased_tokenizer):
    masker = data.MaskedLMMasker.from_tokenizer(uncased_tokenizer)
    ds = data.pretraining_dataset(news_examples, masker, batch_size=16, shuffle_buffer_size=0)
    first, second = next(iter(ds)), next(iter(ds))
    np.testing.assert_array_equal(first["nsp_label"], second["nsp_label"])
    assert (first["masked_positions"].numpy() != second["masked_positions"].numpy()).any()
    assert data.default_bucket_lengths(128) == (32, 64, 128)
    widths = set()
    for batch in ds.take(60):
        width = batch["input_ids"].shape[1]
        widths.add(width)
        longest = batch["padding_mask"].numpy().sum(1).max()
        assert width in (32, 64, 128) and longest <= width
        assert width == 32 or longest > width // 2
    assert len(widths) >= 2
    encoder = kbk.BertEncoder(kbk.BertConfig(hidden_size=32, num_layers=1, num_heads=2,
                                             intermediate_size=64, max_sequence_length=128))
    logits = kbk.BertPretrainer(encoder)(first)
    assert np.isfinite(logits["mlm_logits"].numpy()).all()


def test_too_long_example_is_an_error(news_examples, uncased_tokenizer):
    masker = data.MaskedLMMasker.from_tokenizer(uncased_tokenizer)
    ds = data.pretraining_dataset(news_examples, masker, bucket_lengths=(32, 64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="largest bucket"):
        for _ in ds:
            pass


def _as_multiset(dataset):
    return collections.Counter(
        (tuple(e["input_ids"]), tuple(e["segment_ids"]), int(e["nsp_label"]))
        for e in dataset.as_numpy_iterator()
    )


def test_tfrecord_round_trip_and_streaming(tmp_path, uncased_tokenizer, news_articles):
    examples = data.create_pretraining_examples(news_articles[:50], uncased_tokenizer, 64)
    paths = data.write_pretraining_tfrecords(examples, tmp_path / "a", num_shards=3)
    assert len(paths) == 3 and (tmp_path / "a" / "dataset_info.json").exists()
    assert _as_multiset(data.read_pretraining_tfrecords(tmp_path / "a")) == _as_multiset(
        examples.to_dataset())
    docs = news_articles[:41]  # blocks of 10: the 41st document joins the last block
    paths = data.create_pretraining_tfrecords(iter(docs), uncased_tokenizer, tmp_path / "b",
                                              documents_per_shard=10, max_seq_length=64)
    assert len(paths) == 4 and not list((tmp_path / "b").glob("*.partial"))
    grams = lambda ids: {tuple(ids[i : i + 4]) for i in range(len(ids) - 3)}  # noqa: E731
    last_doc = grams(uncased_tokenizer(docs[-1]).numpy().tolist())
    streamed = set().union(*(grams(ids) for ids, _, _ in
                             _as_multiset(data.read_pretraining_tfrecords(paths[-1:]))))
    assert len(last_doc & streamed) > len(last_doc) // 2
    batch = next(iter(data.pretraining_dataset(str(tmp_path / "b"),
                                               data.MaskedLMMasker.from_tokenizer(
                                                   uncased_tokenizer), batch_size=4)))
    assert batch["input_ids"].shape[0] == 4
    with pytest.raises(FileNotFoundError):
        data.read_pretraining_tfrecords(tmp_path / "missing")


def test_text_dataset(uncased_tokenizer):
    p = kbk.BertPreprocessor(uncased_tokenizer, 64)
    texts = ["good movie", "a bad one here, truly", "x"] * 4
    ds = data.text_dataset(texts, p, labels=[1, 0, 1] * 4, batch_size=4,
                           bucket_lengths=(8, 16, 64))
    for features, labels in ds:
        assert features["input_ids"].shape[1] in (8, 16, 64) and labels.shape[0] <= 4
    pairs = next(iter(data.text_dataset(texts, p, text_pairs=texts, batch_size=4)))
    assert pairs["input_ids"].shape == (4, 64) and pairs["segment_ids"].numpy().max() == 1
    with pytest.raises(ValueError, match="differ in length"):
        data.text_dataset(texts, p, labels=[1])
    with pytest.raises(ValueError, match="exceeds"):
        data.text_dataset(texts, p, bucket_lengths=(128,))


def test_vocabulary_training(news_articles):
    vocab = kbk.train_wordpiece_vocabulary(news_articles[:150], vocab_size=2000)
    assert len(vocab) == 2000 and len(set(vocab)) == 2000
    assert [vocab[i] for i in (0, 100, 101, 102, 103)] == [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert any(t.startswith("##") for t in vocab)
    ids = kbk.BertTokenizer(vocab)(news_articles[:150]).flat_values.numpy()
    assert (ids == 100).mean() < 0.01
    with pytest.raises(ValueError, match="no room"):
        kbk.train_wordpiece_vocabulary(news_articles[:5], vocab_size=50)
    with pytest.raises(ValueError, match="special tokens"):
        kbk.train_wordpiece_vocabulary(news_articles[:5], 500, reserved_tokens=["[PAD]"])
