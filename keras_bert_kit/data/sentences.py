"""Splitting documents into sentences for next-sentence-prediction pairs.

A rule-based splitter: a line break always ends a sentence; inside a line a
sentence ends at `.`, `!`, `?` or `…` (with any closing quotes or brackets)
followed by space and a capital letter, digit or opening quote, unless the word
before the full stop is a known abbreviation or a single capital (initials,
"U.S."). NSP only needs roughly right boundaries; a missed split makes one long
segment, never lost text.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft gen col lt sgt capt cmdr adm gov sen rep
    pres rev hon no vs etc inc ltd co corp dept univ jan feb mar apr jun jul aug
    sep sept oct nov dec approx est fig al e.g i.e""".split()
)

# End punctuation, optional closing quotes/brackets, whitespace, then the start
# of a new sentence (kept in the next sentence by the lookahead).
_BOUNDARY = re.compile(r"""([.!?…]+["'”’)\]]*)\s+(?=["'“‘(\[]?[A-Z0-9])""")
_LAST_WORD = re.compile(r"(\S+)$")


def _ends_with_abbreviation(text: str) -> bool:
    match = _LAST_WORD.search(text)
    if not match:
        return False
    word = match.group(1).rstrip(".").lstrip("(\"'“‘").lower()
    # "U.S", "J", "a.m": initials and dotted abbreviations.
    return word in _ABBREVIATIONS or len(word) == 1 or "." in word


def split_sentences(document: str) -> list[str]:
    """The sentences of `document`, stripped, empty ones dropped."""
    sentences = []
    for line in document.splitlines():
        start = 0
        for match in _BOUNDARY.finditer(line):
            end = match.end(1)
            if match.group(1) == "." and _ends_with_abbreviation(line[start : end - 1]):
                continue
            sentences.append(line[start:end])
            start = match.end()
        sentences.append(line[start:])
    return [s.strip() for s in sentences if s.strip()]
