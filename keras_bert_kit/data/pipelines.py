"""`tf.data` input pipelines: pretraining batches and labelled-text batches.

Batches are bucketed by length: each example goes to the smallest bucket that
holds it and is padded to that bucket's length, not to the longest possible
sequence, so short examples cost short-sequence compute. Work runs in parallel
`map`s and overlaps training through `prefetch`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_bert_kit.data.masking import MaskedLMMasker
from keras_bert_kit.data.pretraining_examples import PretrainingExamples
from keras_bert_kit.data.tfrecords import read_pretraining_tfrecords
from keras_bert_kit.tokenization import BertPreprocessor
from keras_bert_kit.validation import check_int, is_int

AUTOTUNE = tf.data.AUTOTUNE


def default_bucket_lengths(max_length: int) -> tuple[int, ...]:
    """Powers of two from 32 below `max_length`, then `max_length` itself."""
    lengths, length = [], 32
    while length < max_length:
        lengths.append(length)
        length *= 2
    return (*lengths, max_length)


def _check_batch_size(batch_size):
    check_int("batch_size", batch_size, minimum=1)


def _bucketed_batches(dataset, length_fn, bucket_lengths, batch_size, drop_remainder):
    """Groups elements by length and pads each batch to its bucket's length."""
    if not bucket_lengths or not all(is_int(b) and b >= 1 for b in bucket_lengths):
        raise ValueError(
            f"`bucket_lengths` must be positive integer lengths; got {bucket_lengths!r}.")
    bucket_lengths = sorted(set(int(b) for b in bucket_lengths))
    longest = bucket_lengths[-1]

    def check_length(*element):
        tf.debugging.assert_less_equal(
            length_fn(*element),
            longest,
            message=f"an example is longer than the largest bucket ({longest} tokens)",
        )
        return element if len(element) > 1 else element[0]

    # With pad_to_bucket_boundary, bucket i holds lengths < boundary[i] and is
    # padded to boundary[i] - 1; an extra last boundary keeps `longest` in range.
    return dataset.map(check_length).bucket_by_sequence_length(
        element_length_func=length_fn,
        bucket_boundaries=[b + 1 for b in bucket_lengths],
        bucket_batch_sizes=[batch_size] * (len(bucket_lengths) + 1),
        pad_to_bucket_boundary=True,
        drop_remainder=drop_remainder,
    )


def pretraining_dataset(
    examples,
    masker: MaskedLMMasker,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    bucket_lengths=None,
    shuffle_buffer_size: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    seed: int | None = None,
    pad_token_id: int = 0,
) -> tf.data.Dataset:
    """Masked, bucketed batches for `BertPretrainer` / `DistilBertPretrainer`.

    Args:
        examples: `PretrainingExamples`, a dataset of their elements, or
            TFRecord shards (a directory, a glob pattern or a list).
        masker: masks each batch afresh every epoch.
        max_seq_length: the longest example; read from `PretrainingExamples`,
            else 128. A longer example stops the pipeline with an error.
        bucket_lengths: the lengths batches are padded to; default powers of
            two from 32 up to `max_seq_length`.
        shuffle_buffer_size: 0 keeps the order. None: every example for
            `PretrainingExamples` (a full shuffle, like BERT's
            `create_pretraining_data`), 10,000 for a dataset or TFRecords.
        repeat: loop forever (for `steps_per_epoch`).

    Elements are dicts: `input_ids`, `segment_ids`, `padding_mask` (int32
    `[batch, bucket_length]`), `masked_positions`, `masked_ids` (int32) and
    `masked_weights` (float32) `[batch, max_predictions_per_seq]`, `nsp_label`
    (int32 `[batch]`).
    """
    _check_batch_size(batch_size)
    if shuffle_buffer_size is None:
        # Examples are made document by document: a window smaller than the
        # whole set would feed each stretch of training from a few documents.
        in_memory = isinstance(examples, PretrainingExamples)
        shuffle_buffer_size = max(len(examples), 1) if in_memory else 10_000
    if isinstance(examples, PretrainingExamples):
        if max_seq_length is None:
            max_seq_length = int(examples.lengths().max(initial=1))
        dataset = examples.to_dataset()
    elif isinstance(examples, tf.data.Dataset):
        dataset = examples
    else:
        dataset = read_pretraining_tfrecords(examples, shuffle_files=shuffle_buffer_size > 0,
                                             seed=seed)
    max_seq_length = 128 if max_seq_length is None else max_seq_length
    bucket_lengths = bucket_lengths or default_bucket_lengths(max_seq_length)

    def add_padding_mask(example):
        return {**example, "padding_mask": tf.ones_like(example["input_ids"])}

    dataset = dataset.map(add_padding_mask, num_parallel_calls=AUTOTUNE)
    if shuffle_buffer_size:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = _bucketed_batches(
        dataset,
        lambda e: tf.shape(e["input_ids"])[0],
        bucket_lengths,
        batch_size,
        drop_remainder,
    )

    if isinstance(examples, PretrainingExamples) and not repeat:
        # Bucketing hides the batch count; Keras and schedules want it.
        count = _bucketed_batch_count(examples.lengths(), bucket_lengths, batch_size,
                                      drop_remainder)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))

    def mask_batch(batch):
        lengths = tf.reduce_sum(batch["padding_mask"], axis=1)
        ids = tf.RaggedTensor.from_tensor(batch["input_ids"], lengths=lengths)
        masked = masker.mask(ids)
        padded_shape = tf.shape(batch["input_ids"], out_type=tf.int64)
        return {
            **batch,
            "input_ids": masked.pop("input_ids").to_tensor(pad_token_id, shape=padded_shape),
            **masked,
        }

    return dataset.map(mask_batch, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def text_dataset(
    texts,
    preprocessor: BertPreprocessor,
    labels=None,
    text_pairs=None,
    sample_weights=None,
    batch_size: int = 32,
    bucket_lengths=None,
    shuffle_buffer_size: int = 0,
    repeat: bool = False,
    drop_remainder: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of preprocessed text (and labels) for `fit`, `evaluate` and `predict`.

    Texts (and `text_pairs`) are tokenized in parallel inside the pipeline.
    With `bucket_lengths` (e.g. `(32, 64, 128)`, the largest at most the
    preprocessor's `sequence_length`), examples are grouped by length and
    padded to their bucket; without, each batch is padded as the preprocessor
    says. Elements are `features` dicts, or `(features, labels)` with labels,
    or `(features, labels, sample_weights)` with both.
    """
    _check_batch_size(batch_size)
    texts = list(texts) if not isinstance(texts, (tf.Tensor, np.ndarray)) else texts
    columns = {"text": tf.constant(texts, tf.string)}
    if text_pairs is not None:
        columns["text_pair"] = tf.constant(list(text_pairs), tf.string)
    if labels is not None:
        columns["label"] = tf.constant(np.asarray(labels))
    if sample_weights is not None:
        if labels is None:
            raise ValueError("`sample_weights` need `labels`.")
        columns["sample_weight"] = tf.constant(np.asarray(sample_weights, "float32"))
    sizes = {name: int(value.shape[0]) for name, value in columns.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            f"texts, text_pairs, labels and sample_weights differ in length: {sizes}."
        )
    if not sizes["text"]:
        raise ValueError("`texts` is empty.")
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle_buffer_size:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    def preprocess(batch, packer):
        segments = (batch["text"], batch["text_pair"]) if "text_pair" in batch else batch["text"]
        features = packer(segments)
        if "label" not in batch:
            return features
        if "sample_weight" not in batch:
            return features, batch["label"]
        return features, batch["label"], batch["sample_weight"]

    if bucket_lengths is None:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        dataset = dataset.map(lambda b: preprocess(b, preprocessor), num_parallel_calls=AUTOTUNE)
        return dataset.prefetch(AUTOTUNE)

    if max(bucket_lengths) > preprocessor.sequence_length:
        raise ValueError(
            f"The largest bucket ({max(bucket_lengths)}) exceeds the preprocessor's "
            f"sequence_length ({preprocessor.sequence_length})."
        )
    # Unpadded per example, so that bucketing decides the padding.
    unpadded = BertPreprocessor(
        preprocessor.tokenizer, sequence_length=max(bucket_lengths), padding="longest"
    )
    dataset = dataset.map(lambda e: preprocess(e, unpadded), num_parallel_calls=AUTOTUNE)
    features_of = (lambda f, *_: f) if labels is not None else (lambda f: f)
    dataset = _bucketed_batches(
        dataset,
        lambda *e: tf.shape(features_of(*e)["input_ids"])[0],
        bucket_lengths,
        batch_size,
        drop_remainder,
    )
    if not repeat:
        # Bucketing hides the batch count from tf.data; learning-rate schedules
        # that span the run need it, and it follows from the lengths.
        lengths = _packed_lengths(unpadded, columns["text"], columns.get("text_pair"))
        dataset = dataset.apply(
            tf.data.experimental.assert_cardinality(
                _bucketed_batch_count(lengths, bucket_lengths, batch_size, drop_remainder)
            )
        )
    return dataset.prefetch(AUTOTUNE)


def _packed_lengths(packer, texts, text_pairs, chunk=4096):
    """The packed length ([CLS], [SEP]s included) of every example, computed in chunks."""
    lengths = []
    for begin in range(0, int(texts.shape[0]), chunk):
        segments = texts[begin:begin + chunk]
        if text_pairs is not None:
            segments = (segments, text_pairs[begin:begin + chunk])
        mask = packer(segments)["padding_mask"]
        lengths.append(tf.reduce_sum(mask, axis=1).numpy())
    return np.concatenate(lengths)


def _bucketed_batch_count(lengths, bucket_lengths, batch_size, drop_remainder):
    """How many batches `_bucketed_batches` makes of examples of these lengths."""
    bounds = sorted(set(int(b) for b in bucket_lengths))
    buckets = np.searchsorted(bounds, lengths, side="left")
    counts = np.bincount(buckets, minlength=len(bounds))
    full, rest = counts // batch_size, counts % batch_size
    return int(full.sum() + (0 if drop_remainder else np.count_nonzero(rest)))
