"""Training a WordPiece vocabulary from a corpus.

The learner is tensorflow-text's `bert_vocab_from_dataset`. It sees text
normalised exactly as `BertTokenizer` normalises it, so the pieces it learns
are the ones the tokenizer will look for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab.bert_vocab_from_dataset import (
    bert_vocab_from_dataset,
)

from keras_bert_kit.tokenization.tokenizer import normalize_text
from keras_bert_kit.tokenization.vocabulary import (
    SPECIAL_TOKENS,
    save_vocabulary,
    standard_reserved_tokens,
)
from keras_bert_kit.validation import check_int


def train_wordpiece_vocabulary(
    texts: Iterable[str] | tf.data.Dataset,
    vocab_size: int,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    reserved_tokens: list[str] | None = None,
    min_frequency: int = 10,
    max_unique_chars: int = 1000,
    output_path: str | os.PathLike | None = None,
) -> list[str]:
    """Learns a WordPiece vocabulary of exactly `vocab_size` tokens.

    Args:
        texts: the corpus: strings (documents, sentences, any length) or a
            `tf.data.Dataset` of scalar strings.
        vocab_size: size of the result, reserved tokens included.
        lowercase, strip_accents: as for the `BertTokenizer` that will use it.
        reserved_tokens: tokens placed first, in order. The default is BERT's
            layout: [PAD] at 0, [unused0]..[unused98], then [UNK] [CLS] [SEP]
            [MASK] at 100-103. Custom lists must hold all five special tokens.
        min_frequency: lowest piece count the learner searches down to.
        max_unique_chars: alphabet cap; words with rarer characters are dropped
            from learning (they tokenize to [UNK] or other pieces later).
        output_path: also write the vocabulary there as vocab.txt.

    The learner lands at or a little under `vocab_size`; the remaining slots
    are filled with further [unusedN] tokens so that the size matches an
    encoder's `vocab_size` exactly.
    """
    check_int("vocab_size", vocab_size, minimum=1)
    reserved = standard_reserved_tokens() if reserved_tokens is None else list(reserved_tokens)
    missing = [token for token in SPECIAL_TOKENS if token not in reserved]
    if missing:
        raise ValueError(f"`reserved_tokens` lacks the special tokens {missing}.")
    if vocab_size <= len(reserved):
        raise ValueError(
            f"`vocab_size` {vocab_size} leaves no room beyond the {len(reserved)} reserved tokens."
        )
    strip = lowercase if strip_accents is None else strip_accents

    if isinstance(texts, tf.data.Dataset):
        if texts.element_spec != tf.TensorSpec([], tf.string):
            raise ValueError(
                f"`texts` must be a dataset of scalar strings; got {texts.element_spec}."
            )
        dataset = texts
    else:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("`texts` is empty: a vocabulary needs a corpus.")
        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))
    dataset = dataset.batch(256).map(
        lambda t: normalize_text(t, lowercase=lowercase, strip_accents=strip),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    vocabulary = bert_vocab_from_dataset(
        dataset,
        vocab_size=vocab_size,
        reserved_tokens=reserved,
        # The text is normalised already; the learner only splits words.
        bert_tokenizer_params=dict(lower_case=False),
        learn_params=dict(lower_thresh=min_frequency, max_unique_chars=max_unique_chars),
    )
    if len(vocabulary) > vocab_size:
        # The learner can overshoot. Its tokens are ranked by count, and the
        # "##c" piece it adds for every character comes last (count 1): cutting
        # the tail would drop those, and every word with "c" inside would become
        # [UNK]. The least frequent longer pieces go instead.
        def essential(i, token):
            return i < len(reserved) or len(token.removeprefix("##")) == 1

        droppable = [i for i, t in enumerate(vocabulary) if not essential(i, t)]
        excess = len(vocabulary) - vocab_size
        dropped = set(droppable[max(0, len(droppable) - excess) :])
        vocabulary = [t for i, t in enumerate(vocabulary) if i not in dropped]
    vocabulary = vocabulary[:vocab_size]
    taken = set(vocabulary)
    spare = (f"[unused{i}]" for i in range(len(reserved) + vocab_size))
    vocabulary += [t for t in spare if t not in taken][: vocab_size - len(vocabulary)]
    if output_path is not None:
        save_vocabulary(vocabulary, output_path)
    return vocabulary
