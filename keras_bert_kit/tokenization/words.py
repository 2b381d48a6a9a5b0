"""BERT's basic tokenization (whitespace, punctuation, CJK characters) with character offsets.

WordPiece runs on these words, so tokenizing each word on its own gives the
same pieces as tokenizing the whole text, and every piece can be traced back
to the characters of the original text it came from. Extractive QA uses this
to turn predicted token spans into character spans of the context.
"""

from __future__ import annotations

import unicodedata

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
