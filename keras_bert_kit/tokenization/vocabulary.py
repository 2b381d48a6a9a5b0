"""WordPiece vocabularies: reading, writing, checking, and the special tokens.

A vocabulary is a list of tokens whose index is the token id. Continuation
pieces carry the `##` prefix. The special tokens keep their BERT names; their
ids are wherever the vocabulary puts them (0 and 100-103 in Google's vocabs, and
in the vocabularies `train_wordpiece_vocabulary` builds).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from keras_bert_kit.validation import check_int

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
MASK_TOKEN = "[MASK]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)

# Google's BERT vocabularies: [PAD] at 0, 99 spare [unusedN] slots, then
# [UNK] [CLS] [SEP] [MASK] at 100-103. Trained vocabularies keep these ids so
# that configs and checkpoints written for BERT (pad_token_id=0, ...) hold.
NUM_UNUSED_TOKENS = 99


def standard_reserved_tokens(num_unused: int = NUM_UNUSED_TOKENS) -> list[str]:
    """[PAD], `num_unused` [unusedN] slots, [UNK], [CLS], [SEP], [MASK]."""
    check_int("num_unused", num_unused, minimum=0)
    return [PAD_TOKEN, *(f"[unused{i}]" for i in range(num_unused)), *SPECIAL_TOKENS[1:]]


def load_vocabulary(vocabulary: str | os.PathLike | Iterable[str]) -> list[str]:
    """Reads a vocab.txt (one token per line, id = line number) or checks a token list.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an empty vocabulary, an empty or duplicated token (named with
            its line), or a token that is not a string.
    """
    if isinstance(vocabulary, (str, os.PathLike)):
        path = os.fspath(vocabulary)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No vocabulary file at {path}.")
        with open(path, encoding="utf-8") as f:
            # Only the line break is stripped: a token may contain other whitespace.
            tokens = [line.rstrip("\r\n") for line in f]
        source = path
    else:
        tokens = list(vocabulary)
        source = "the vocabulary list"
        for i, token in enumerate(tokens):
            if not isinstance(token, str):
                raise ValueError(
                    f"{source}: token {i} is a {type(token).__name__}, not a string."
                )
    if not tokens:
        raise ValueError(f"{source} holds no tokens.")
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if not token:
            raise ValueError(f"{source}: token {i} (line {i + 1}) is empty.")
        if token in seen:
            raise ValueError(
                f"{source}: token {token!r} appears twice, at lines {seen[token] + 1} "
                f"and {i + 1}; every token needs a single id."
            )
        seen[token] = i
    return tokens


def save_vocabulary(tokens: Iterable[str], path: str | os.PathLike) -> str:
    """Writes `tokens` as a vocab.txt that `load_vocabulary` (and Hugging Face) read."""
    tokens = load_vocabulary(tokens)
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(tokens) + "\n")
    return path
