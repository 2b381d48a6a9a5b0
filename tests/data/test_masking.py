"""`MaskedLMMasker`: 15% selection with an unbiased count, 80/10/10 replacement, whole words."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.data import MaskedLMMasker, pretraining_dataset
from tests.data.corpus import CLS, MASK, PAD, SEP, SPECIAL_IDS, VOCAB_SIZE, original_ids

MAX_PREDICTIONS = 20


def _numpy(batch):
    return {name: np.asarray(value) for name, value in batch.items()}


def _examples_multiset(examples):
    return collections.Counter(
        (tuple(e["input_ids"]), tuple(e["segment_ids"]), int(e["nsp_label"]))
        for e in map(examples.example, range(len(examples)))
    )


def _row_arrays(batch):
    """Per row: (masked ids, original ids, predicted positions, their original ids)."""
    originals = original_ids(batch)
    lengths = batch["padding_mask"].sum(1)
    for i, length in enumerate(lengths):
        real = batch["masked_weights"][i] > 0
        yield (batch["input_ids"][i, :length], originals[i, :length],
               batch["masked_positions"][i][real], batch["masked_ids"][i][real])


@pytest.fixture(scope="module")
def masked_news(news_examples, bert_tokenizer):
    """One epoch of the news examples, masked by the pipeline, as numpy batches."""
    tf.random.set_seed(0)
    masker = MaskedLMMasker.from_tokenizer(bert_tokenizer, max_predictions_per_seq=MAX_PREDICTIONS)
    dataset = pretraining_dataset(news_examples, masker, batch_size=128, shuffle_buffer_size=0)
    return [_numpy(batch) for batch in dataset]


@pytest.fixture(scope="module")
def replacement_counts(masked_news):
    counts = collections.Counter()
    for batch in masked_news:
        for masked, original, positions, targets in _row_arrays(batch):
            counts["selectable"] += int(np.isin(original, SPECIAL_IDS, invert=True).sum())
            counts["selected"] += len(positions)
            chosen = masked[positions]
            counts["mask"] += int((chosen == MASK).sum())
            counts["same"] += int((chosen == targets).sum())
            counts["random"] += int(((chosen != MASK) & (chosen != targets)).sum())
    return counts


def test_from_tokenizer(bert_tokenizer):
    masker = MaskedLMMasker.from_tokenizer(bert_tokenizer)
    assert masker.vocabulary_size == VOCAB_SIZE and masker.mask_token_id == MASK
    assert masker.unselectable_ids == [PAD, CLS, SEP]
    assert (masker.mask_rate, masker.mask_token_rate, masker.random_token_rate) == (0.15, 0.8, 0.1)
    assert masker.max_predictions_per_seq == 20 and not masker.whole_word_masking
    assert MaskedLMMasker.from_tokenizer(bert_tokenizer, whole_word_masking=True).whole_word_masking


def test_selection_rate_is_15_percent(replacement_counts):
    counts = replacement_counts
    assert counts["selectable"] >= 100_000
    rate = counts["selected"] / counts["selectable"]
    assert abs(rate - 0.15) <= 0.01, (rate, counts)


def test_replacements_are_80_10_10(replacement_counts):
    counts = replacement_counts
    assert counts["mask"] + counts["same"] + counts["random"] == counts["selected"]
    for kind, share in (("mask", 0.8), ("random", 0.1), ("same", 0.1)):
        observed = counts[kind] / counts["selected"]
        assert abs(observed - share) <= 0.01, (kind, observed, counts)


def test_each_row_gets_the_unbiased_count(masked_news):
    # floor(0.15 n + u): always floor or ceil of 0.15 n (never ceil + 1), capped.
    rows = 0
    for batch in masked_news:
        for _, original, positions, _ in _row_arrays(batch):
            n = int(np.isin(original, SPECIAL_IDS, invert=True).sum())
            wanted = 0.15 * n
            assert min(np.floor(wanted), MAX_PREDICTIONS) <= len(positions) <= min(
                np.ceil(wanted), MAX_PREDICTIONS
            ), (n, len(positions))
            rows += 1
    assert rows >= 5000


def test_predictions_are_well_formed(masked_news, news_examples):
    for batch in masked_news:
        positions, targets = batch["masked_positions"], batch["masked_ids"]
        weights = batch["masked_weights"]
        assert positions.shape == targets.shape == weights.shape
        assert positions.shape[1] == MAX_PREDICTIONS
        assert positions.dtype == targets.dtype == np.int32 and weights.dtype == np.float32
        assert set(np.unique(weights)) <= {0.0, 1.0}
        real = weights == 1.0
        counts = real.sum(1)
        assert counts.max() <= MAX_PREDICTIONS
        # Real predictions first, then zero padding.
        np.testing.assert_array_equal(real, np.arange(MAX_PREDICTIONS) < counts[:, None])
        assert not positions[~real].any() and not targets[~real].any()
        for masked, original, predicted, predicted_ids in _row_arrays(batch):
            assert len(set(predicted.tolist())) == len(predicted)  # distinct
            assert (predicted > 0).all() and (predicted < len(original)).all()
            # Never [CLS], [SEP] or [PAD].
            assert not np.isin(original[predicted], SPECIAL_IDS).any()
            np.testing.assert_array_equal(predicted_ids, original[predicted])
            # Nothing changes that is not predicted.
            changed = np.flatnonzero(masked != original)
            assert set(changed.tolist()) <= set(predicted.tolist())
            assert (masked >= 0).all() and (masked < VOCAB_SIZE).all()
    # masked_ids are the true originals: putting them back restores every example.
    restored = collections.Counter()
    for batch in masked_news:
        originals = original_ids(batch)
        for i, length in enumerate(batch["padding_mask"].sum(1)):
            restored[(tuple(originals[i, :length]), tuple(batch["segment_ids"][i, :length]),
                      int(batch["nsp_label"][i]))] += 1
    assert restored == _examples_multiset(news_examples)


def _ragged_with_specials(rng, lengths, low=1000, high=30000):
    rows = [[CLS, *rng.integers(low, high, size=n - 2).tolist(), SEP] for n in lengths]
    return tf.ragged.constant(rows, tf.int32)


def test_short_sequences_are_not_over_masked(bert_tokenizer):
    # ceil(0.15 n) would mask 10-30 token sequences at about 19%.
    rng = np.random.default_rng(0)
    lengths = np.repeat(np.arange(10, 31), 300)
    ids = _ragged_with_specials(rng, lengths)
    masker = MaskedLMMasker.from_tokenizer(bert_tokenizer)
    out = tf.function(masker.mask)(ids)
    counts = out["masked_weights"].numpy().sum(1)
    selectable = lengths - 2
    rate = counts.sum() / selectable.sum()
    assert abs(rate - 0.15) <= 0.01, rate
    for n in np.unique(selectable):
        rows = counts[selectable == n]
        assert abs(rows.mean() / n - 0.15) <= 0.02, (n, rows.mean())
        assert set(rows.tolist()) <= {np.floor(0.15 * n), np.ceil(0.15 * n)}
    positions = out["masked_positions"].numpy()
    real = out["masked_weights"].numpy() > 0
    assert (positions[real] >= 1).all()
    assert (positions[real] < np.broadcast_to(lengths[:, None] - 1, positions.shape)[real]).all()


def test_max_predictions_caps_the_count(news_examples, bert_tokenizer):
    masker = MaskedLMMasker.from_tokenizer(bert_tokenizer, max_predictions_per_seq=5)
    batch = _numpy(next(iter(pretraining_dataset(news_examples, masker, batch_size=64,
                                                 shuffle_buffer_size=0))))
    assert batch["masked_positions"].shape == (64, 5)
    for masked, original, predicted, _ in _row_arrays(batch):
        n = np.isin(original, SPECIAL_IDS, invert=True).sum()
        assert len(predicted) == min(5, np.floor(0.15 * n)) or len(predicted) == min(
            5, np.ceil(0.15 * n))
        assert (masked != original).sum() <= 5


def test_rows_without_selectable_tokens_and_empty_rows(bert_tokenizer):
    for whole_words in (False, True):
        masker = MaskedLMMasker.from_tokenizer(bert_tokenizer, whole_word_masking=whole_words,
                                               mask_rate=1.0, max_predictions_per_seq=4)
        ids = tf.ragged.constant([[CLS, SEP], [CLS, 2000, SEP], [], [CLS, 2000, 2001, SEP], []],
                                 tf.int32)
        for mask in (masker.mask, tf.function(masker.mask)):
            out = mask(ids)
            np.testing.assert_array_equal(out["masked_weights"].numpy().sum(1), [0, 1, 0, 2, 0])
            np.testing.assert_array_equal(out["masked_positions"].numpy()[3, :2], [1, 2])
            np.testing.assert_array_equal(out["masked_ids"].numpy()[3, :2], [2000, 2001])
            assert out["input_ids"].row_lengths().numpy().tolist() == [2, 3, 0, 4, 0]


# -- whole-word masking ---------------------------------------------------------------

LONG_WORDS = ("antidisestablishmentarianism photosynthesis unbelievably xylophonist "
              "quintessentially electroencephalography").split()
SHORT_WORDS = "the cat sat on a mat".split()


@pytest.fixture(scope="module")
def word_batch(bert_tokenizer):
    """[CLS] text [SEP] rows, half the words split into 3-8 pieces; and the word index."""
    continuation = np.array([t.startswith("##") for t in bert_tokenizer.get_vocabulary()])
    for word in LONG_WORDS:
        assert len(bert_tokenizer(word).numpy()) >= 3, word
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(LONG_WORDS + SHORT_WORDS, size=rng.integers(6, 24)))
             for _ in range(400)]
    ids = bert_tokenizer(texts)
    ids = tf.concat([tf.fill([ids.nrows(), 1], CLS), ids, tf.fill([ids.nrows(), 1], SEP)], 1)
    return ids, continuation


def _words(row, continuation):
    """Word number of every piece (a piece and its ## continuations share one)."""
    return np.cumsum(~continuation[row])


def test_whole_words_are_masked_together(word_batch, bert_tokenizer):
    ids, continuation = word_batch
    masker = MaskedLMMasker.from_tokenizer(bert_tokenizer, whole_word_masking=True,
                                           max_predictions_per_seq=128)
    out = tf.function(masker.mask)(ids)
    chosen_words = total_words = partial = 0
    multi_piece_chosen = 0
    for row, masked, positions, targets, weights in zip(
        ids.to_list(), out["input_ids"].to_list(), out["masked_positions"].numpy(),
        out["masked_ids"].numpy(), out["masked_weights"].numpy(),
    ):
        row, masked = np.array(row), np.array(masked)
        predicted = positions[weights > 0]
        assert len(predicted) < 128  # the cap never binds here
        np.testing.assert_array_equal(targets[weights > 0], row[predicted])
        assert set(np.flatnonzero(masked != row).tolist()) <= set(predicted.tolist())
        words = _words(row, continuation)
        for word in np.unique(words[predicted]):
            members = np.flatnonzero(words == word)
            if not set(members.tolist()) <= set(predicted.tolist()):
                partial += 1
            multi_piece_chosen += len(members) > 1
        chosen_words += len(np.unique(words[predicted]))
        total_words += len(np.unique(words[1:-1]))
    assert partial == 0
    assert multi_piece_chosen > 100
    # 15% of the words are chosen.
    assert abs(chosen_words / total_words - 0.15) <= 0.02, chosen_words / total_words


def test_whole_words_are_capped_and_the_rest_restored(word_batch, bert_tokenizer):
    ids, continuation = word_batch
    masker = MaskedLMMasker.from_tokenizer(bert_tokenizer, whole_word_masking=True,
                                           max_predictions_per_seq=6, mask_rate=0.5)
    out = tf.function(masker.mask)(ids)
    assert out["masked_positions"].shape[1] == 6
    capped = 0
    for row, masked, positions, targets, weights in zip(
        ids.to_list(), out["input_ids"].to_list(), out["masked_positions"].numpy(),
        out["masked_ids"].numpy(), out["masked_weights"].numpy(),
    ):
        row, masked = np.array(row), np.array(masked)
        predicted = positions[weights > 0]
        assert len(predicted) <= 6
        capped += len(predicted) == 6
        np.testing.assert_array_equal(targets[weights > 0], row[predicted])
        # Pieces past the cap are back to their original ids.
        unpredicted = np.setdiff1d(np.arange(len(row)), predicted)
        np.testing.assert_array_equal(masked[unpredicted], row[unpredicted])
        # Only the word cut by the cap (the last one) may be partly predicted.
        words = _words(row, continuation)
        if len(predicted):
            last = words[predicted.max()]
            for word in set(words[predicted].tolist()) - {last}:
                assert set(np.flatnonzero(words == word).tolist()) <= set(predicted.tolist())
    assert capped >= 300  # half of 6-24 words, most of them long: the cap binds


# -- dynamic masking and errors ---------------------------------------------------------


def test_masking_differs_between_epochs(small_examples, bert_tokenizer):
    masker = MaskedLMMasker.from_tokenizer(bert_tokenizer)
    dataset = pretraining_dataset(small_examples, masker, batch_size=32, shuffle_buffer_size=0)
    tf.random.set_seed(3)
    first = [_numpy(b) for b in dataset.take(3)]
    tf.random.set_seed(3)
    second = [_numpy(b) for b in dataset.take(3)]
    for a, b in zip(first, second):
        # The same examples in the same order ...
        np.testing.assert_array_equal(original_ids(a), original_ids(b))
        np.testing.assert_array_equal(a["nsp_label"], b["nsp_label"])
    # ... masked differently.
    same = [np.array_equal(a["masked_positions"], b["masked_positions"])
            for a, b in zip(first, second)]
    assert not any(same)
    # Two masker calls on one batch differ too.
    batch = first[0]
    ids = tf.RaggedTensor.from_tensor(batch["input_ids"], lengths=batch["padding_mask"].sum(1))
    one, two = masker.mask(ids), masker.mask(ids)
    assert not np.array_equal(one["masked_positions"], two["masked_positions"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mask_rate=0.0), "mask_rate"),
        (dict(mask_rate=-0.1), "mask_rate"),
        (dict(mask_rate=1.5), "mask_rate"),
        (dict(max_predictions_per_seq=0), "max_predictions_per_seq"),
        (dict(max_predictions_per_seq=2.5), "max_predictions_per_seq"),
        (dict(max_predictions_per_seq=True), "max_predictions_per_seq"),
        (dict(mask_token_rate=0.9, random_token_rate=0.2), "sum to at most 1"),
        (dict(mask_token_rate=-0.1), "mask_token_rate"),
        (dict(random_token_rate=-0.1), "random_token_rate"),
    ],
)
def test_bad_options(kwargs, message, bert_tokenizer):
    with pytest.raises(ValueError, match=message):
        MaskedLMMasker.from_tokenizer(bert_tokenizer, **kwargs)
    with pytest.raises(ValueError, match=message):
        MaskedLMMasker(VOCAB_SIZE, MASK, SPECIAL_IDS, **kwargs)


def test_edge_rates_are_accepted(bert_tokenizer):
    ids = tf.ragged.constant([[CLS, 2000, 2001, 2002, SEP], [CLS, 2003, SEP]], tf.int32)
    # Every selectable token chosen, and every chosen one becomes [MASK].
    everything = MaskedLMMasker.from_tokenizer(bert_tokenizer, mask_rate=1.0,
                                               mask_token_rate=1.0, random_token_rate=0.0)
    out = everything.mask(ids)
    np.testing.assert_array_equal(out["masked_weights"].numpy().sum(1), [3, 1])
    assert out["input_ids"].to_list() == [[CLS, MASK, MASK, MASK, SEP], [CLS, MASK, SEP]]
    # Chosen tokens are predicted but all keep their own ids.
    unchanged = MaskedLMMasker.from_tokenizer(bert_tokenizer, mask_rate=1.0,
                                              mask_token_rate=0.0, random_token_rate=0.0)
    out = unchanged.mask(ids)
    np.testing.assert_array_equal(out["masked_weights"].numpy().sum(1), [3, 1])
    assert out["input_ids"].to_list() == ids.to_list()


def test_tokenizer_without_mask_token():
    tokenizer = kbk.BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world"])
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        MaskedLMMasker.from_tokenizer(tokenizer)
