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

import csv
import errno
import io
import json
import os
import re

from keras_bert_kit.datasets.labeled import LabeledTexts

_BOM = b"\xef\xbb\xbf"
_INTEGER = re.compile(r"[+-]?[0-9]+")  # not \d: it also matches other scripts' digits
# Integer labels without label_names become ids 0..max; a code like 40213 would
# make 40,214 classes, which is never what was meant.
_MAX_IMPLICIT_ID = 9_999
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


def _missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "No such file or directory", path)


def _read_text(path) -> tuple[str, str]:
    """(path as a string, whole file decoded); bad UTF-8 is reported with its line."""
    path = os.fsdecode(path)
    if not os.path.isfile(path):
        raise _missing(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        return path, raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        bad = raw[e.start:e.end]
        raise ValueError(
            f"{path}:{line}: not valid UTF-8 (byte {bad!r}: {e.reason}); "
            "re-save the file as UTF-8."
        ) from None


def _physical_lines(text: str) -> list[str]:
    # Only \n, \r\n and \r end a line. str.splitlines() would also split at
    # U+2028, form feeds etc., which JSON strings may contain and editors do
    # not count, so the line numbers in errors would drift.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


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
            raise _missing(path)
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
        _, text = _read_text(path)
        current = []
        for line in _physical_lines(text):
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


def _check_label_names(label_names, label_column, argument="label_names"):
    """label_names as a tuple, checked; `argument` is the name errors use (e.g. "tag_names")."""
    if label_names is None:
        return None
    if label_column is None:
        raise ValueError(f"`{argument}` was given without a label column/key.")
    if isinstance(label_names, str):
        raise TypeError(
            f"`{argument}` must be a sequence of names, not a string: {label_names!r}."
        )
    names = tuple(label_names)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"`{argument}` must be non-empty strings: {names!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"`{argument}` has duplicates: {names!r}.")
    return names


def _as_integer(value):
    """The integer a label stands for, or None when it is a name."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    return None


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
            number = _as_integer(value)
            if number is None:
                raise ValueError(
                    f"{where(line)}: unknown label {value!r}; label_names are {list(label_names)}."
                )
            if not 0 <= number < len(label_names):
                raise ValueError(
                    f"{where(line)}: label {value!r} is out of range for the "
                    f"{len(label_names)} label_names {list(label_names)} "
                    f"(ids 0..{len(label_names) - 1})."
                )
            ids.append(number)
        return ids, label_names

    numbers = [_as_integer(value) for _, value in raw]
    if all(n is not None for n in numbers):
        for (line, value), number in zip(raw, numbers):
            if number < 0:
                raise ValueError(
                    f"{where(line)}: label {value!r} is negative; integer labels are ids >= 0 "
                    "(or pass label_names)."
                )
            if number > _MAX_IMPLICIT_ID:
                raise ValueError(
                    f"{where(line)}: label {value!r} is too large to be a class id "
                    f"(ids 0..{_MAX_IMPLICIT_ID} without label_names); use names or small ids."
                )
        return numbers, tuple(str(i) for i in range(max(numbers) + 1))
    for line, value in raw:
        if not isinstance(value, str):
            first = next(v for _, v in raw if isinstance(v, str))
            raise ValueError(
                f"{where(line)}: label {value!r} is a number, but other labels are names "
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
        f"{path}:{line}: label {kind} {column!r} must be a name or an integer id, got {value!r}."
    )


def _text_value(value, path, line, column, kind):
    if value is None:
        raise ValueError(f"{path}:{line}: text {kind} {column!r} is null.")
    if not isinstance(value, str):
        raise ValueError(
            f"{path}:{line}: text {kind} {column!r} must be a string, got "
            f"{type(value).__name__} {value!r}."
        )
    if not value.strip():
        raise ValueError(f"{path}:{line}: text {kind} {column!r} is empty.")
    return value


def _labeled_texts(path, kind, records, text_column, label_column, text_pair_column, label_names):
    """records: (line, dict) pairs whose keys were already checked."""
    texts, pairs, raw_labels = [], [], []
    for line, record in records:
        texts.append(_text_value(record[text_column], path, line, text_column, kind))
        if text_pair_column is not None:
            pairs.append(_text_value(record[text_pair_column], path, line, text_pair_column, kind))
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


def _require(available, wanted, path, line, kind):
    """Every wanted column/key must be available; the error lists those that are."""
    for role, name in wanted:
        if name not in available:
            raise ValueError(
                f"{path}:{line}: no {kind} {name!r} ({role}); available {kind}s: "
                f"{', '.join(map(repr, available)) or 'none'}."
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
    label_names = _check_label_names(label_names, label_column)
    path, records = _read_csv(path, wanted, delimiter)
    return _labeled_texts(
        path, "column", records, text_column, label_column, text_pair_column, label_names
    )


def _read_csv(path, wanted, delimiter):
    """(path as a string, (line, {column: field}) pairs) for a CSV file with a header row.

    wanted: (role, column) pairs that the header must name, once each. Empty
    lines are skipped; no data rows is an error.
    """
    path, text = _read_text(path)
    if not text.strip():
        raise ValueError(f"{path}:1: the file is empty; expected a header row, then data rows.")
    # strict: an unclosed quote is an error, not a field swallowing the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records, header = [], None
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise ValueError(f"{path}:{start}: malformed CSV: {e}.") from None
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if header is None:
            header, header_line = fields, start
            # Only the columns we read must be unique; spreadsheets often export
            # several unnamed ("") trailing columns, which are harmless.
            duplicates = sorted({name for _, name in wanted if header.count(name) > 1})
            if duplicates:
                raise ValueError(
                    f"{path}:{start}: the header names column {duplicates[0]!r} more than once."
                )
            _require(header, wanted, path, start, "column")
            continue
        if len(fields) != len(header):
            raise ValueError(
                f"{path}:{start}: {len(fields)} fields, but the header has {len(header)} "
                f"({', '.join(map(repr, header))}); quote fields that contain {delimiter!r}."
            )
        records.append((start, dict(zip(header, fields))))
    if not records:
        raise ValueError(f"{path}:{header_line}: no data rows after the header.")
    return path, records


def load_jsonl(path, text_key, label_key=None, text_pair_key=None,
               label_names=None) -> LabeledTexts:
    """Labelled texts from JSON Lines: one JSON object per line.

    Blank lines are skipped and keys other than the ones named are ignored.
    Labels may be strings or integers; see the module docstring for how they
    become ids.
    """
    wanted = _wanted(text_key, label_key, text_pair_key, "key")
    label_names = _check_label_names(label_names, label_key)
    path, records = _read_jsonl(path, wanted)
    return _labeled_texts(path, "key", records, text_key, label_key, text_pair_key, label_names)


def _read_jsonl(path, wanted):
    """(path as a string, (line, object) pairs) for a JSON Lines file.

    wanted: (role, key) pairs that every object must have. Blank lines are
    skipped; no objects is an error.
    """
    path, text = _read_text(path)
    records = []
    for line, content in enumerate(_physical_lines(text), start=1):
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line}: invalid JSON at column {e.colno}: {e.msg}.") from None
        if not isinstance(record, dict):
            raise ValueError(
                f"{path}:{line}: expected a JSON object ({{...}}), got a JSON "
                f"{_JSON_TYPES.get(type(record), type(record).__name__)}; JSON Lines "
                "holds one object per line."
            )
        _require(list(record), wanted, path, line, "key")
        records.append((line, record))
    if not records:
        raise ValueError(f"{path}:1: the file is empty; expected one JSON object per line.")
    return path, records

