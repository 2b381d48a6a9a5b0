"""Users' own data: plain-text documents, and labelled texts from CSV or JSON Lines.

Files are UTF-8; a byte-order mark (as Excel writes) is ignored. A missing file
is a `FileNotFoundError`. Any problem inside a file is a `ValueError` whose
message starts with `path:line:` (the line where the offending record starts),
so that editors and terminals can jump to it.

Labels (`load_csv`, `load_jsonl`) become integer ids into `label_names`:

- With `label_names`, a label is one of the names, or an integer id in
  `range(len(label_names))` (a JSON number or, since CSV has no types, a
  string of digits such as "1"). A name match wins over reading digits.
- Without them, if every label is an integer (or a string of digits), ids are
  the integers themselves, which must be >= 0, and `label_names` is
  ("0", "1", ..., str(max)). Otherwise labels are names and `label_names` is
  the sorted unique names, so the ids do not depend on row order; a JSON
  number among string labels is an error.

Labels are stripped of surrounding spaces; texts are kept as written but must
not be empty or whitespace only. true/false labels are refused rather than
guessed at.
"""

from __future__ import annotations

import json
import os

from keras_bert_kit.datasets._readers import (
    as_integer,
    check_label_names,
    missing,
    physical_lines,
    read_csv,
    read_jsonl,
    read_text,
    text_value,
)
from keras_bert_kit.datasets.labeled import LabeledTexts
from keras_bert_kit.json_files import describe

# Integer labels without label_names become ids 0..max; a code like 40213 would
# make 40,214 classes, which is never what was meant.
_MAX_IMPLICIT_ID = 9_999


# -- plain-text documents -----------------------------------------------------


def _text_files(paths) -> list[str]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    files = []
    for path in paths:
        path = os.fsdecode(path)
        if os.path.isdir(path):
            # Only *.txt: a folder also tends to hold .DS_Store, READMEs, archives.
            names = sorted(n for n in os.listdir(path) if n.endswith(".txt"))
            found = [os.path.join(path, n) for n in names]
            found = [f for f in found if os.path.isfile(f)]
            if not found:
                raise ValueError(f"{path}: the folder has no .txt files.")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise missing(path)
    if not files:
        raise ValueError("No paths given.")
    return files


def load_text_documents(paths) -> list[str]:
    """Documents from plain-text files; one or more blank lines end a document.

    `paths` is a file, a folder (its `*.txt` files, sorted by name, not
    recursive) or a list of files and folders. A document's lines are stripped
    and joined with "\\n": each line is a sentence or paragraph, and the line
    break is kept as a sentence boundary. A line of only whitespace is blank.
    Documents never continue from one file into the next. An empty file adds
    nothing, but no documents at all is a `ValueError`.
    """
    files = _text_files(paths)
    documents = []
    for path in files:
        _, text = read_text(path)
        current = []
        for line in physical_lines(text):
            line = line.strip()
            if line:
                current.append(line)
            elif current:
                documents.append("\n".join(current))
                current = []
        if current:
            documents.append("\n".join(current))
    if not documents:
        where = f"{files[0]}:1" if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"
        raise ValueError(f"{where}: no documents; the text is empty or blank.")
    return documents


# -- labelled records ---------------------------------------------------------


def _encode_labels(raw, label_names, path, column, kind):
    """raw: (line, value) pairs -> (ids, label_names); see the module docstring."""

    def where(line):
        return f"{path}:{line}: label {kind} {column!r}"

    if label_names is not None:
        ids = []
        for line, value in raw:
            if isinstance(value, str) and value in label_names:
                ids.append(label_names.index(value))
                continue
            number = as_integer(value)
            if number is None:
                raise ValueError(
                    f"{where(line)}: unknown label {describe(value)}; label_names are "
                    f"{list(label_names)}."
                )
            if not 0 <= number < len(label_names):
                raise ValueError(
                    f"{where(line)}: label {describe(value)} is out of range for the "
                    f"{len(label_names)} label_names {list(label_names)} "
                    f"(ids 0..{len(label_names) - 1})."
                )
            ids.append(number)
        return ids, label_names

    numbers = [as_integer(value) for _, value in raw]
    if all(n is not None for n in numbers):
        for (line, value), number in zip(raw, numbers):
            if number < 0:
                raise ValueError(
                    f"{where(line)}: label {describe(value)} is negative; integer labels are ids "
                    ">= 0 (or pass label_names)."
                )
            if number > _MAX_IMPLICIT_ID:
                raise ValueError(
                    f"{where(line)}: label {describe(value)} is too large to be a class id "
                    f"(ids 0..{_MAX_IMPLICIT_ID} without label_names); use names or small ids."
                )
        return numbers, tuple(str(i) for i in range(max(numbers) + 1))
    for line, value in raw:
        if not isinstance(value, str):
            first = next(v for _, v in raw if isinstance(v, str))
            raise ValueError(
                f"{where(line)}: label {describe(value)} is a number, but other labels are names "
                f"(e.g. {first!r}); use one kind."
            )
    names = tuple(sorted({value for _, value in raw}))
    return [names.index(value) for _, value in raw], names


def _label_value(value, path, line, column, kind):
    """A raw label, checked: a non-empty stripped string or a (float) number."""
    if isinstance(value, str):
        value = value.strip()
        if value:
            return value
        raise ValueError(f"{path}:{line}: label {kind} {column!r} is empty.")
    if value is None:
        raise ValueError(f"{path}:{line}: label {kind} {column!r} is null.")
    if isinstance(value, bool):
        raise ValueError(
            f"{path}:{line}: label {kind} {column!r} is {json.dumps(value)}; "
            "use names or integer ids, not booleans."
        )
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return value
    raise ValueError(
        f"{path}:{line}: label {kind} {column!r} must be a name or an integer id, got "
        f"{describe(value)}."
    )


def _labeled_texts(path, kind, records, text_column, label_column, text_pair_column, label_names):
    """records: (line, dict) pairs whose keys were already checked."""
    texts, pairs, raw_labels = [], [], []
    for line, record in records:
        texts.append(text_value(record[text_column], path, line, text_column, kind))
        if text_pair_column is not None:
            pairs.append(text_value(record[text_pair_column], path, line, text_pair_column, kind))
        if label_column is not None:
            value = _label_value(record[label_column], path, line, label_column, kind)
            raw_labels.append((line, value))
    labels = names = None
    if label_column is not None:
        labels, names = _encode_labels(raw_labels, label_names, path, label_column, kind)
    return LabeledTexts(
        texts=texts,
        labels=labels,
        label_names=names,
        text_pairs=pairs if text_pair_column is not None else None,
    )


def _wanted(text_column, label_column, text_pair_column, kind):
    if not isinstance(text_column, str):
        raise TypeError(f"The text {kind} must be a string, got {text_column!r}.")
    wanted = [(f"text_{kind}", text_column)]
    if text_pair_column is not None:
        wanted.append((f"text_pair_{kind}", text_pair_column))
    if label_column is not None:
        wanted.append((f"label_{kind}", label_column))
    return wanted


def load_csv(path, text_column, label_column=None, text_pair_column=None,
             label_names=None, delimiter=",") -> LabeledTexts:
    """Labelled texts from a CSV file whose first row names the columns.

    Standard CSV quoting applies: a quoted field may hold the delimiter, quotes
    (doubled) and line breaks. `delimiter="\\t"` reads TSV. Empty lines are
    skipped. Columns other than the ones named are ignored. Without
    `label_column` the result is unlabelled; see the module docstring for
    how labels become ids.
    """
    wanted = _wanted(text_column, label_column, text_pair_column, "column")
    label_names = check_label_names(label_names, label_column)
    path, records = read_csv(path, wanted, delimiter)
    return _labeled_texts(
        path, "column", records, text_column, label_column, text_pair_column, label_names
    )


def load_jsonl(path, text_key, label_key=None, text_pair_key=None,
               label_names=None) -> LabeledTexts:
    """Labelled texts from JSON Lines: one JSON object per line.

    Blank lines are skipped and keys other than the ones named are ignored.
    Labels may be strings or integers; see the module docstring for how they
    become ids.
    """
    wanted = _wanted(text_key, label_key, text_pair_key, "key")
    label_names = check_label_names(label_names, label_key)
    path, records = read_jsonl(path, wanted)
    return _labeled_texts(path, "key", records, text_key, label_key, text_pair_key, label_names)
