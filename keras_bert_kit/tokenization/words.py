"""BERT's basic tokenization (whitespace, punctuation, CJK characters) with character offsets.

WordPiece runs on these words, so tokenizing each word on its own gives the
same pieces as tokenizing the whole text, and every piece can be traced back
to the characters of the original text it came from. Extractive QA uses this
to turn predicted token spans into character spans of the context, and the
tagger to tag the words of raw text.

`split_words` is the Python reference; `split_words_with_offsets` does the same
in TensorFlow ops, for `tf.data` and SavedModels. Both classify characters by
Unicode category, Python through `unicodedata`, TensorFlow through RE2's
tables; where those follow different Unicode versions, punctuation newer than
the older one splits in one and not in the other (Python 3.11 knows Unicode 14).
"""

from __future__ import annotations

import unicodedata

import tensorflow as tf

# CJK Unified Ideographs and their extensions: BERT splits around each one.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_whitespace(char):
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _stands_alone(char):
    """Punctuation (BERT counts every non-alphanumeric ASCII symbol) and CJK ideographs."""
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    if unicodedata.category(char).startswith("P"):
        return True
    return any(low <= cp <= high for low, high in _CJK_RANGES)


def split_words(text: str) -> list[tuple[int, int]]:
    """The `(start, end)` character spans of BERT's basic tokens in `text`.

    Whitespace separates words and is dropped; each punctuation character and
    CJK ideograph is a word of its own. Other characters (control characters
    included, which the tokenizer later deletes) stay in their word.
    """
    spans, start = [], None
    for i, char in enumerate(text):
        if _is_whitespace(char):
            if start is not None:
                spans.append((start, i))
                start = None
        elif _stands_alone(char):
            if start is not None:
                spans.append((start, i))
                start = None
            spans.append((i, i + 1))
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans


# The same rules as regular expressions over single characters, for the graph.
_WHITESPACE_PATTERN = r"[ \t\n\r]|\p{Zs}"
_STANDS_ALONE_PATTERN = "[!-/:-@\\[-`{-~]|\\p{P}|[" + "".join(
    f"\\x{{{low:X}}}-\\x{{{high:X}}}" for low, high in _CJK_RANGES
) + "]"


def split_words_with_offsets(texts):
    """`split_words` in TensorFlow ops: BERT's basic tokens of a batch of texts.

    Runs eagerly, in a `tf.function`, in `tf.data` and in a SavedModel.

    Args:
        texts: a string or 1-D batch of strings (tensor, list or array).

    Returns:
        `(words, starts, ends)`: ragged `[batch, (words)]` tensors (`[(words)]`
        for a single string) of the words (UTF-8 strings) and their int64
        character (Unicode code point) offsets, so that for a Python string
        `text[start:end] == word`, exactly as `split_words(text)` gives them.
        Invalid UTF-8 is read as Python's `bytes.decode("utf-8", "replace")`
        does: each bad sequence is one U+FFFD character, inside a word.
    """
    texts = tf.convert_to_tensor(texts, tf.string)
    if texts.shape.rank not in (0, 1):
        raise ValueError(f"Texts must be a string or a 1-D batch of strings; got {texts.shape}.")
    if texts.shape.rank == 0:
        words, starts, ends = split_words_with_offsets(texts[tf.newaxis])
        return words[0], starts[0], ends[0]
    characters = tf.strings.unicode_split(texts, "UTF-8", errors="replace")
    flat = characters.flat_values
    is_space = tf.strings.regex_full_match(flat, _WHITESPACE_PATTERN)
    alone = tf.strings.regex_full_match(flat, _STANDS_ALONE_PATTERN)
    positions = tf.ragged.range(characters.row_lengths()).flat_values
    in_run = ~is_space & ~alone  # characters that join their neighbours into a word
    continues = tf.concat([[False], in_run[:-1]], axis=0) & in_run & (positions > 0)
    starts_word = alone | (in_run & ~continues)
    in_word = ~is_space
    word_of_character = tf.boolean_mask(tf.cumsum(tf.cast(starts_word, tf.int64)) - 1, in_word)
    word_count = tf.reduce_sum(tf.cast(starts_word, tf.int64))
    words = tf.strings.unsorted_segment_join(
        tf.boolean_mask(flat, in_word), word_of_character, word_count
    )
    starts = tf.boolean_mask(positions, starts_word)
    ends = tf.math.unsorted_segment_max(
        tf.boolean_mask(positions, in_word), word_of_character, word_count
    ) + 1
    words_per_text = tf.reduce_sum(
        characters.with_flat_values(tf.cast(starts_word, tf.int64)), axis=1
    )
    return tuple(
        tf.RaggedTensor.from_row_lengths(values, words_per_text, validate=False)
        for values in (words, starts, ends)
    )
