"""Documents to BERT pretraining examples: `[CLS] A [SEP] B [SEP]` with an NSP label.

The recipe is Google's `create_pretraining_data.py`: sentences of a document
are gathered until a target length, split at a random sentence boundary into
A and B, and half the time B is replaced by text from another document. Two
changes keep the labels balanced at 50/50 (the original drifts towards
"random", since a single-segment chunk could only become a random pair): the
label is drawn first, and a chunk of one long segment that must become an
actual-next pair takes the document's next segment as B (the last segment is
paired with the one before it, which is then used twice). Both sides are then
truncated by the same rule as every other pair. (Cutting the long segment in
two instead, as this module once did, gave actual-next pairs a tell: B began
mid-sentence only when it followed A. A bert_mini learnt that cue, not
coherence.) Labels follow `NextSentenceHead`: 0 = B follows A, 1 = B is random.

Masking is not done here: it is redone every epoch by the input pipeline
(`MaskedLMMasker`), so these examples can be created, or written to TFRecords,
once.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from keras_bert_kit.data.sentences import split_sentences
from keras_bert_kit.tokenization import BertTokenizer
from keras_bert_kit.validation import check_int, check_number

NEXT, RANDOM = 0, 1

# Sentences go through the tokenizer in batches of this many.
_TOKENIZE_BATCH = 8192


@dataclasses.dataclass(frozen=True)
class PretrainingExamples:
    """Unmasked NSP examples in ragged form (numpy).

    `input_ids[row_splits[i]:row_splits[i + 1]]` is example i's packed
    `[CLS] A [SEP] B [SEP]`; `segment_ids` is laid out the same way.
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray
    row_splits: np.ndarray
    nsp_labels: np.ndarray

    def __len__(self) -> int:
        return len(self.nsp_labels)

    def lengths(self) -> np.ndarray:
        return np.diff(self.row_splits)

    def example(self, i: int) -> dict[str, np.ndarray]:
        start, end = self.row_splits[i], self.row_splits[i + 1]
        return {
            "input_ids": self.input_ids[start:end],
            "segment_ids": self.segment_ids[start:end],
            "nsp_label": self.nsp_labels[i],
        }

    def to_dataset(self) -> tf.data.Dataset:
        """One element per example: `input_ids`, `segment_ids` (int32 `[len]`), `nsp_label`."""
        ragged = lambda values: tf.RaggedTensor.from_row_splits(  # noqa: E731
            tf.constant(values, tf.int32), tf.constant(self.row_splits, tf.int64)
        )
        return tf.data.Dataset.from_tensor_slices(
            {
                "input_ids": ragged(self.input_ids),
                "segment_ids": ragged(self.segment_ids),
                "nsp_label": tf.constant(self.nsp_labels, tf.int32),
            }
        )

    @classmethod
    def concatenate(cls, parts: Sequence["PretrainingExamples"]) -> "PretrainingExamples":
        offsets = np.cumsum([0] + [len(p.input_ids) for p in parts])
        return cls(
            input_ids=np.concatenate([p.input_ids for p in parts]),
            segment_ids=np.concatenate([p.segment_ids for p in parts]),
            row_splits=np.concatenate(
                [[0]] + [p.row_splits[1:] + o for p, o in zip(parts, offsets)]
            ).astype(np.int64),
            nsp_labels=np.concatenate([p.nsp_labels for p in parts]),
        )


def _check_options(max_seq_length, short_seq_prob, dupe_factor):
    check_int("max_seq_length", max_seq_length, minimum=5, hint="[CLS] A [SEP] B [SEP]")
    check_number("short_seq_prob", short_seq_prob, 0.0, 1.0)
    check_int("dupe_factor", dupe_factor, minimum=1)


def tokenize_documents(documents, tokenizer: BertTokenizer) -> list[list[np.ndarray]]:
    """Each document as a list of token-id arrays, one per non-empty sentence.

    A document is a string (split with `split_sentences`) or a list of
    sentences. All sentences go through the tokenizer in large batches.
    """
    sentence_lists = []
    for i, document in enumerate(documents):
        if isinstance(document, str):
            sentence_lists.append(split_sentences(document))
        elif isinstance(document, Iterable) and all(isinstance(s, str) for s in document):
            sentence_lists.append([s for s in document if s.strip()])
        else:
            raise ValueError(
                f"Document {i} must be a string or a list of sentence strings; "
                f"got {type(document).__name__}."
            )
    flat = [s for sentences in sentence_lists for s in sentences]
    ids, lengths = [np.zeros(0, np.int32)], [np.zeros(0, np.int64)]
    for start in range(0, len(flat), _TOKENIZE_BATCH):
        tokens = tokenizer.tokenize(tf.constant(flat[start : start + _TOKENIZE_BATCH]))
        ids.append(tokens.flat_values.numpy())
        lengths.append(tokens.row_lengths().numpy())
    ids = np.concatenate(ids)
    bounds = np.concatenate([[0], np.cumsum(np.concatenate(lengths))])
    tokenized, k = [], 0
    for sentences in sentence_lists:
        spans = zip(bounds[k : k + len(sentences)], bounds[k + 1 : k + len(sentences) + 1])
        tokenized.append([ids[a:b] for a, b in spans if b > a])
        k += len(sentences)
    return tokenized


def create_pretraining_examples(
    documents,
    tokenizer: BertTokenizer,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 1,
    seed: int = 0,
) -> PretrainingExamples:
    """NSP examples from `documents` (strings, or lists of sentences).

    Args:
        max_seq_length: the most tokens per example, [CLS] and [SEP]s included.
        short_seq_prob: how often a chunk aims at a random shorter length
            (2 to max), so the model also sees short inputs.
        dupe_factor: passes over the corpus; each splits documents differently.
        seed: the same seed, corpus and tokenizer give the same examples.

    Needs at least two non-empty documents (random B segments come from a
    different document).
    """
    _check_options(max_seq_length, short_seq_prob, dupe_factor)
    tokenized = [d for d in tokenize_documents(documents, tokenizer) if d]
    if len(tokenized) < 2:
        raise ValueError(
            "Next-sentence pairs need at least 2 non-empty documents (random B segments "
            f"come from another document); got {len(tokenized)}."
        )
    builder = _ExampleBuilder(tokenizer, tokenized, max_seq_length, short_seq_prob, seed)
    for _ in range(dupe_factor):
        for index in range(len(tokenized)):
            builder.add_document(index)
    return builder.finish()


class _ExampleBuilder:
    def __init__(self, tokenizer, documents, max_seq_length, short_seq_prob, seed):
        self.cls = np.array([tokenizer.cls_token_id], np.int32)
        self.sep = np.array([tokenizer.sep_token_id], np.int32)
        self.documents = documents
        self.max_num_tokens = max_seq_length - 3
        self.short_seq_prob = short_seq_prob
        self.rng = random.Random(seed)
        self.ids, self.segments, self.lengths, self.labels = [], [], [], []

    def _target_length(self):
        if self.rng.random() < self.short_seq_prob:
            return self.rng.randint(2, self.max_num_tokens)
        return self.max_num_tokens

    def _random_segment(self, exclude, length):
        """Tokens from a random sentence on of another document, about `length` long."""
        other = self.rng.randrange(len(self.documents) - 1)
        document = self.documents[other + (other >= exclude)]
        start = self.rng.randrange(len(document))
        pieces, total = [], 0
        for sentence in document[start:]:
            pieces.append(sentence)
            total += len(sentence)
            if total >= length:
                break
        return np.concatenate(pieces)

    def add_document(self, index):
        document = self.documents[index]
        target = self._target_length()
        chunk, chunk_length, i = [], 0, 0
        while i < len(document):
            chunk.append(document[i])
            chunk_length += len(document[i])
            if i == len(document) - 1 or chunk_length >= target:
                is_random = self.rng.random() < 0.5
                if len(chunk) == 1 and not is_random:
                    # One segment: pair it with the one after it, or at the end
                    # of the document with the one before it (used twice).
                    if i < len(document) - 1:
                        i += 1
                        chunk.append(document[i])
                    elif i > 0:
                        chunk.insert(0, document[i - 1])
                    else:
                        is_random = True  # a one-segment document has no next pair
                a_end = self.rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                if is_random:
                    a = np.concatenate(chunk[:a_end])
                    b = self._random_segment(index, max(1, target - len(a)))
                    # The unused rest of the chunk starts the next one.
                    i -= len(chunk) - a_end
                else:
                    a, b = np.concatenate(chunk[:a_end]), np.concatenate(chunk[a_end:])
                self._add(*self._truncate(a, b), RANDOM if is_random else NEXT)
                chunk, chunk_length = [], 0
                target = self._target_length()
            i += 1

    def _truncate(self, a, b):
        """Shortens the longer side, from a random end, until A + B fits (BERT's rule)."""
        a_start, a_end, b_start, b_end = 0, len(a), 0, len(b)
        while (a_end - a_start) + (b_end - b_start) > self.max_num_tokens:
            if a_end - a_start > b_end - b_start:
                if self.rng.random() < 0.5:
                    a_start += 1
                else:
                    a_end -= 1
            elif self.rng.random() < 0.5:
                b_start += 1
            else:
                b_end -= 1
        return a[a_start:a_end], b[b_start:b_end]

    def _add(self, a, b, label):
        self.ids.append(np.concatenate([self.cls, a, self.sep, b, self.sep]))
        segments = np.ones(len(a) + len(b) + 3, np.int32)
        segments[: len(a) + 2] = 0
        self.segments.append(segments)
        self.lengths.append(len(a) + len(b) + 3)
        self.labels.append(label)

    def finish(self) -> PretrainingExamples:
        empty = np.zeros(0, np.int32)
        return PretrainingExamples(
            input_ids=np.concatenate(self.ids).astype(np.int32) if self.ids else empty,
            segment_ids=np.concatenate(self.segments) if self.segments else empty,
            row_splits=np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64),
            nsp_labels=np.array(self.labels, np.int32),
        )
