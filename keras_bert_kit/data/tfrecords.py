"""Pretraining examples on disk: TFRecord shards of unmasked NSP examples.

Each record is a `tf.train.Example` with int64 lists `input_ids`,
`segment_ids` and an int64 `nsp_label`. Masking stays in the input pipeline,
so one set of shards serves every epoch with fresh masks.

`create_pretraining_tfrecords` streams a corpus that does not fit in memory:
documents are read a block at a time, each block becomes one shard (random B
segments come from other documents of the same block), and only one block is
ever held in memory. Shards are written to a temporary name and renamed when
complete, so an interrupted run never leaves a truncated shard behind.
"""

from __future__ import annotations

import glob
import itertools
import json
import os

import numpy as np
import tensorflow as tf

from keras_bert_kit.data.pretraining_examples import (
    PretrainingExamples,
    create_pretraining_examples,
)
from keras_bert_kit.validation import check_int

_FEATURES = {
    "input_ids": tf.io.RaggedFeature(tf.int64),
    "segment_ids": tf.io.RaggedFeature(tf.int64),
    "nsp_label": tf.io.FixedLenFeature([], tf.int64),
}
INFO_FILE = "dataset_info.json"


def _int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values).tolist()))


def _write_shard(examples: PretrainingExamples, path: str) -> None:
    partial = path + ".partial"
    with tf.io.TFRecordWriter(partial) as writer:
        for i in range(len(examples)):
            example = examples.example(i)
            record = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "input_ids": _int64_feature(example["input_ids"]),
                        "segment_ids": _int64_feature(example["segment_ids"]),
                        "nsp_label": _int64_feature([example["nsp_label"]]),
                    }
                )
            )
            writer.write(record.SerializeToString())
    os.replace(partial, path)


def _shard_path(output_dir, index):
    return os.path.join(output_dir, f"examples-{index:05d}.tfrecord")


def write_pretraining_tfrecords(
    examples: PretrainingExamples, output_dir, num_shards: int = 1
) -> list[str]:
    """Writes `examples` into `num_shards` TFRecord files in `output_dir`."""
    check_int("num_shards", num_shards, minimum=1)
    os.makedirs(output_dir, exist_ok=True)
    bounds = np.linspace(0, len(examples), num_shards + 1).astype(int)
    paths = []
    for shard, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = PretrainingExamples(
            input_ids=examples.input_ids,
            segment_ids=examples.segment_ids,
            row_splits=examples.row_splits[start : end + 1],
            nsp_labels=examples.nsp_labels[start:end],
        )
        paths.append(_shard_path(output_dir, shard))
        _write_shard(part, paths[-1])
    _write_info(output_dir, paths, len(examples), int(examples.lengths().max(initial=0)))
    return paths


def _write_info(output_dir, paths, num_examples, max_length):
    info = {
        "num_examples": num_examples,
        "max_example_length": max_length,
        "shards": [os.path.basename(p) for p in paths],
    }
    with open(os.path.join(output_dir, INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)


def create_pretraining_tfrecords(
    documents,
    tokenizer,
    output_dir,
    documents_per_shard: int = 1000,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 1,
    seed: int = 0,
) -> list[str]:
    """Streams `documents` (any iterable) into TFRecord shards, a block at a time.

    Returns the shard paths. A last block too small to pair on its own (fewer
    than two non-empty documents) joins the block before it.
    """
    check_int("documents_per_shard", documents_per_shard, minimum=2)
    os.makedirs(output_dir, exist_ok=True)
    iterator = iter(documents)

    def next_block():
        return list(itertools.islice(iterator, documents_per_shard))

    def pairable(block):
        return sum(1 for d in block if (d.strip() if isinstance(d, str) else d)) >= 2

    paths, total, longest = [], 0, 0
    block = next_block()
    while block:
        following = next_block()
        # Runs of empty documents can leave several blocks in a row unpairable.
        while following and not pairable(following):
            block, following = block + following, next_block()
        if not pairable(block):
            if not following:
                break  # the whole corpus is one block; the error below names it
            block = block + following  # only the first block gets here
            continue
        examples = create_pretraining_examples(
            block,
            tokenizer,
            max_seq_length=max_seq_length,
            short_seq_prob=short_seq_prob,
            dupe_factor=dupe_factor,
            seed=seed + len(paths),
        )
        paths.append(_shard_path(output_dir, len(paths)))
        _write_shard(examples, paths[-1])
        total += len(examples)
        longest = max(longest, int(examples.lengths().max(initial=0)))
        block = following
    if not paths:
        raise ValueError("The corpus gave no examples: it needs at least 2 non-empty documents.")
    _write_info(output_dir, paths, total, longest)
    return paths


def _resolve_files(files) -> list[str]:
    patterns = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    paths = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "*.tfrecord")
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"No TFRecord files match {pattern}.")
        paths.extend(matches)
    return paths


def read_pretraining_tfrecords(files, shuffle_files: bool = False, seed=None) -> tf.data.Dataset:
    """Examples from TFRecord shards: a directory, a glob pattern, or a list of either.

    Elements are dicts like `PretrainingExamples.to_dataset()`'s. Shards are
    read in parallel, their records interleaved: in a fixed order unless
    `shuffle_files`, though not shard after shard.
    """
    paths = _resolve_files(files)
    dataset = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle_files:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(paths), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle_files,
    )

    def parse(record):
        parsed = tf.io.parse_single_example(record, _FEATURES)
        return {name: tf.cast(value, tf.int32) for name, value in parsed.items()}

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
