"""`TaggedSentences` (a tag per word, as for named entities) and loaders for them.

Three file formats, each with errors that start `path:line:` like the other
loaders (see `keras_bert_kit.datasets.files`):

- `load_tagged_jsonl`: one JSON object per line with an array of words and
  an array of tags.
- `load_tagged_csv`: one sentence per row, words and tags as
  whitespace-separated strings in two columns.
- `load_conll`: CoNLL-2003 style, one word per line.

Tags become integer ids into `tag_names`:

- With `tag_names`, a tag is one of the names, or an integer id in
  `range(len(tag_names))` (a JSON number, or a string of digits). A name
  match wins over reading digits.
- Without them, tags must be names. `tag_names` is the sorted unique names,
  with "O" (outside any entity) first when present, so that id 0 means
  "no entity" and the ids do not depend on the order of the sentences. An
  integer tag (or a string of digits) is an error: ids only mean something
  with the names they stand for, so pass `tag_names`.

Words are kept as written; a word must not be empty or whitespace only.
"""

from __future__ import annotations

import dataclasses
import json
import operator

from keras_bert_kit.datasets._readers import (
    as_integer,
    check_label_names,
    json_type,
    physical_lines,
    read_csv,
    read_jsonl,
    read_text,
)
from keras_bert_kit.datasets.labeled import as_tuple, row_picker
from keras_bert_kit.json_files import describe
from keras_bert_kit.validation import is_int

_DOCSTART = "-DOCSTART-"
_OUTSIDE = "O"


@dataclasses.dataclass(frozen=True)
class TaggedSentences:
    """Sentences as words, each word with a tag: `words[i][j]` is tagged `tags[i][j]`.

    `tags[i][j]` is an index into `tag_names`; both are None for untagged
    sentences. Lists (or other sequences) are accepted and stored as tuples,
    so an instance never changes after it is checked.
    """

    words: tuple[tuple[str, ...], ...]
    tags: tuple[tuple[int, ...], ...] | None = None
    tag_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.words is None:
            raise TypeError("`words` is required.")
        words = as_tuple(self.words, "words")
        words = tuple(as_tuple(sentence, f"words[{i}]") for i, sentence in enumerate(words))
        for i, sentence in enumerate(words):
            if not sentence:
                raise ValueError(f"`words[{i}]` is empty; a sentence needs at least one word.")
            for j, word in enumerate(sentence):
                if not isinstance(word, str):
                    raise TypeError(f"`words[{i}][{j}]` must be a str, got {type(word).__name__}.")
                if not word.strip():
                    raise ValueError(f"`words[{i}][{j}]` is empty or whitespace: {word!r}.")
        object.__setattr__(self, "words", words)

        if (self.tags is None) != (self.tag_names is None):
            raise ValueError("`tags` and `tag_names` go together: give both or neither.")
        if self.tag_names is None:
            return
        names = as_tuple(self.tag_names, "tag_names")
        if not names:
            raise ValueError("`tag_names` is empty.")
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise TypeError(f"`tag_names[{i}]` must be a str, got {type(name).__name__}.")
            if not name.strip():
                raise ValueError(f"`tag_names[{i}]` is empty or whitespace: {name!r}.")
        if len(set(names)) != len(names):
            raise ValueError(f"`tag_names` has duplicates: {names}.")
        object.__setattr__(self, "tag_names", names)

        tags = as_tuple(self.tags, "tags")
        if len(tags) != len(words):
            raise ValueError(f"{len(words)} sentences but {len(tags)} tags; they must match.")
        checked = []
        for i, (sentence, sentence_tags) in enumerate(zip(words, tags)):
            sentence_tags = as_tuple(sentence_tags, f"tags[{i}]")
            if len(sentence_tags) != len(sentence):
                raise ValueError(
                    f"`words[{i}]` has {len(sentence)} words but `tags[{i}]` has "
                    f"{len(sentence_tags)} tags; give one tag per word."
                )
            ids = []
            for j, tag in enumerate(sentence_tags):
                # bool is an int subclass, but True/False as tag ids is almost surely a mistake.
                if isinstance(tag, bool):
                    raise TypeError(f"`tags[{i}][{j}]` is a bool; tags are integer tag ids.")
                try:
                    tag = operator.index(tag)  # also accepts numpy integers
                except TypeError:
                    raise TypeError(
                        f"`tags[{i}][{j}]` must be an int, got {type(tag).__name__}."
                    ) from None
                if not 0 <= tag < len(names):
                    raise ValueError(
                        f"`tags[{i}][{j}]` is {tag}, outside [0, {len(names)}) "
                        f"for tag_names {names}."
                    )
                ids.append(tag)
            checked.append(tuple(ids))
        object.__setattr__(self, "tags", tuple(checked))

    def __len__(self) -> int:
        return len(self.words)

    def subset(self, indices) -> TaggedSentences:
        """The sentences at `indices` (any iterable of ints, repeats allowed), same tag names."""
        pick = row_picker(indices)
        return TaggedSentences(
            words=pick(self.words), tags=pick(self.tags), tag_names=self.tag_names
        )


# -- tags ---------------------------------------------------------------------


def _check_tag_names(tag_names, tags_field, argument_for_field):
    if tag_names is not None and tags_field is None:
        raise ValueError(f"`tag_names` was given, but `{argument_for_field}` is None.")
    return check_label_names(tag_names, tags_field, "tag_names")


def _json_value(value) -> str:
    """A value as the file shows it, with its JSON type: 'JSON number 3'."""
    kind = json_type(value)
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        shown = describe(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"JSON {kind} {shown}"


def _tag(value, tag_names, where, at):
    """One raw tag, checked: its id when `tag_names` are given, else its (stripped) name.

    where: "path:line: tags key 'tags'"; at: " at word 3 ('Berlin')" or "".
    """
    if isinstance(value, str):
        name = value.strip()
        if not name:
            raise ValueError(f"{where}: the tag{at} is empty.")
        if tag_names is not None and name in tag_names:
            return tag_names.index(name)
        number = as_integer(name)  # a string of digits is an id
        if number is None:
            if tag_names is None:
                return name
            raise ValueError(
                f"{where}: unknown tag {name!r}{at}; tag_names are {list(tag_names)}."
            )
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = as_integer(value)
        if number is None:
            raise ValueError(
                f"{where}: the tag{at} must be a tag name or an integer id, got {describe(value)}."
            )
    else:
        raise ValueError(
            f"{where}: the tag{at} must be a tag name or an integer id, "
            f"got {_json_value(value)}."
        )
    if tag_names is None:
        raise ValueError(
            f"{where}: tag {describe(value)}{at} is an integer id, but no tag_names were given; "
            "pass tag_names, the names of ids 0, 1, ... in order (e.g. ['O', 'B-PER', ...])."
        )
    if not 0 <= number < len(tag_names):
        raise ValueError(
            f"{where}: tag {describe(value)}{at} is out of range for the {len(tag_names)} "
            f"tag_names {list(tag_names)} (ids 0..{len(tag_names) - 1})."
        )
    return number


def _tagged_sentences(words, tags, tag_names) -> TaggedSentences:
    """tags: per sentence, ids (with tag_names) or names (without), or None for untagged."""
    if tags is None:
        return TaggedSentences(words)
    if tag_names is None:
        found = {name for sentence in tags for name in sentence}
        tag_names = sorted(found - {_OUTSIDE})
        if _OUTSIDE in found:
            tag_names.insert(0, _OUTSIDE)
        tag_names = tuple(tag_names)
        index = {name: i for i, name in enumerate(tag_names)}
        tags = [[index[name] for name in sentence] for sentence in tags]
    return TaggedSentences(words, tags, tag_names)


def _at(position, word):
    return f" at word {position} ({word!r})"


# -- loaders ------------------------------------------------------------------


def _word_list(value, path, line, key):
    where = f"{path}:{line}: words key {key!r}"
    if not isinstance(value, list):
        raise ValueError(
            f"{where} must be a JSON array of strings such as [\"EU\", \"rejects\"], "
            f"got a {_json_value(value)}."
        )
    if not value:
        raise ValueError(f"{where} is an empty array; a sentence needs at least one word.")
    for position, word in enumerate(value, start=1):
        if not isinstance(word, str):
            raise ValueError(f"{where}: word {position} must be a string, got {_json_value(word)}.")
        if not word.strip():
            raise ValueError(f"{where}: word {position} is empty or whitespace: {word!r}.")
    return tuple(value)


def load_tagged_jsonl(path, words_key="tokens", tags_key="tags",
                      tag_names=None) -> TaggedSentences:
    """Tagged sentences from JSON Lines: one object per line, words and tags as arrays.

    For example `{"tokens": ["EU", "rejects", "German"], "tags": ["B-ORG", "O", "B-MISC"]}`.
    Tags are names or, with `tag_names`, integer ids (as the Hugging Face
    `conll2003` data set stores them); see the module docstring. Blank lines
    are skipped and other keys ignored. `tags_key=None` reads untagged sentences.
    """
    if not isinstance(words_key, str):
        raise TypeError(f"`words_key` must be a string, got {words_key!r}.")
    tag_names = _check_tag_names(tag_names, tags_key, "tags_key")
    wanted = [("words_key", words_key)]
    if tags_key is not None:
        wanted.append(("tags_key", tags_key))
    path, records = read_jsonl(path, wanted)
    words = []
    tags = [] if tags_key is not None else None
    for line, record in records:
        sentence = _word_list(record[words_key], path, line, words_key)
        words.append(sentence)
        if tags_key is None:
            continue
        raw = record[tags_key]
        where = f"{path}:{line}: tags key {tags_key!r}"
        if not isinstance(raw, list):
            raise ValueError(
                f"{where} must be a JSON array with one tag per word, got a {_json_value(raw)}."
            )
        if len(raw) != len(sentence):
            raise ValueError(
                f"{path}:{line}: {len(sentence)} words (key {words_key!r}) but {len(raw)} tags "
                f"(key {tags_key!r}); give one tag per word."
            )
        tags.append([
            _tag(value, tag_names, where, _at(position, word))
            for position, (word, value) in enumerate(zip(sentence, raw), start=1)
        ])
    return _tagged_sentences(words, tags, tag_names)


def load_tagged_csv(path, words_column="tokens", tags_column="tags", tag_names=None,
                    delimiter=",") -> TaggedSentences:
    """Tagged sentences from a CSV file with a header row, one sentence per row.

    Words and tags are whitespace-separated strings in their columns, e.g.
    `"EU rejects German","B-ORG O B-MISC"`; the n-th tag goes with the n-th
    word. CSV quoting, skipped empty lines and errors are as for `load_csv`;
    tags are as in the module docstring. `tags_column=None` reads untagged
    sentences.
    """
    if not isinstance(words_column, str):
        raise TypeError(f"`words_column` must be a string, got {words_column!r}.")
    tag_names = _check_tag_names(tag_names, tags_column, "tags_column")
    wanted = [("words_column", words_column)]
    if tags_column is not None:
        wanted.append(("tags_column", tags_column))
    path, records = read_csv(path, wanted, delimiter)
    words = []
    tags = [] if tags_column is not None else None
    for line, row in records:
        sentence = tuple(row[words_column].split())
        if not sentence:
            raise ValueError(f"{path}:{line}: words column {words_column!r} is empty.")
        words.append(sentence)
        if tags_column is None:
            continue
        raw = row[tags_column].split()
        where = f"{path}:{line}: tags column {tags_column!r}"
        if not raw:
            raise ValueError(f"{where} is empty.")
        if len(raw) != len(sentence):
            raise ValueError(
                f"{path}:{line}: {len(sentence)} words in column {words_column!r} but "
                f"{len(raw)} tags in column {tags_column!r}; give one tag per word."
            )
        tags.append([
            _tag(value, tag_names, where, _at(position, word))
            for position, (word, value) in enumerate(zip(sentence, raw), start=1)
        ])
    return _tagged_sentences(words, tags, tag_names)


def _columns(n):
    return "1 column" if n == 1 else f"{n} columns"


def _conll_columns(fields, word_column, tag_column, path, line):
    """The word and tag columns as indices >= 0, checked against the first word line."""
    indices = []
    for name, index in (("word_column", word_column), ("tag_column", tag_column)):
        if index is None:
            continue
        if not -len(fields) <= index < len(fields):
            raise ValueError(
                f"{path}:{line}: {_columns(len(fields))}, so there is no {name} {index}; "
                f"the line is {' '.join(fields)!r} (columns are whitespace-separated)."
            )
        indices.append(index % len(fields))
    if len(indices) == 2 and indices[0] == indices[1]:
        raise ValueError(
            f"{path}:{line}: word_column {word_column} and tag_column {tag_column} are the same "
            f"column of the {_columns(len(fields))} in {' '.join(fields)!r}."
        )
    return indices[0], indices[1] if len(indices) == 2 else None


def load_conll(path, word_column=0, tag_column=-1, tag_names=None) -> TaggedSentences:
    """Tagged sentences in the CoNLL-2003 format: one word per line, blank lines between.

    A line holds whitespace-separated columns, e.g. `EU NNP B-NP B-ORG`;
    `word_column` and `tag_column` pick the word and its tag (negative counts
    from the end, so the default tag is the last column). `tag_column=None`
    reads untagged sentences. Every word line must have as many columns as
    the first (a short line is an error, not a word without its tag). Lines
    of only whitespace end a sentence, and `-DOCSTART-` lines (document
    boundaries) are skipped. Tags are as in the module docstring.
    """
    for name, value in (("word_column", word_column), ("tag_column", tag_column)):
        if value is not None and not is_int(value):
            raise TypeError(f"`{name}` must be a column index (an int), got {value!r}.")
    if word_column is None:
        raise TypeError("`word_column` must be a column index (an int), got None.")
    tag_names = _check_tag_names(tag_names, tag_column, "tag_column")
    path, text = read_text(path)
    words = []
    tags = [] if tag_column is not None else None
    sentence, sentence_tags = [], []
    width = None  # columns of the first word line, with its line number

    def end_sentence():
        if sentence:
            words.append(tuple(sentence))
            if tags is not None:
                tags.append(list(sentence_tags))
        sentence.clear()
        sentence_tags.clear()

    for line, content in enumerate(physical_lines(text), start=1):
        fields = content.split()
        if not fields:
            end_sentence()
            continue
        if fields[0] == _DOCSTART:
            end_sentence()
            continue
        if width is None:
            width = len(fields), line
            word_index, tag_index = _conll_columns(fields, word_column, tag_column, path, line)
        elif len(fields) != width[0]:
            raise ValueError(
                f"{path}:{line}: {_columns(len(fields))} in {' '.join(fields)!r}, but line "
                f"{width[1]} has {width[0]}; every word line needs the same columns."
            )
        word = fields[word_index]
        sentence.append(word)
        if tag_column is not None:
            value = fields[tag_index]
            where = f"{path}:{line}: tag column {tag_column}"
            sentence_tags.append(_tag(value, tag_names, where, f" for word {word!r}"))
    end_sentence()
    if not words:
        raise ValueError(
            f"{path}:1: no sentences; the file is empty or has only blank and "
            f"{_DOCSTART} lines."
        )
    return _tagged_sentences(words, tags, tag_names)
