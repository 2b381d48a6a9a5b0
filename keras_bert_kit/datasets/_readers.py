"""Reading the users' files: UTF-8 text, CSV with a header row, JSON Lines.

Shared by `files`, `tagged` and `qa`. A missing file is a `FileNotFoundError`;
any problem inside a file is a `ValueError` whose message starts with
`path:line:` (the line where the offending record starts).
"""

from __future__ import annotations

import csv
import errno
import io
import math
import os
import re

from keras_bert_kit.json_files import parse_json

_BOM = b"\xef\xbb\xbf"
INTEGER = re.compile(r"[+-]?[0-9]+")  # not \d: it also matches other scripts' digits
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number",
               bool: "boolean", type(None): "null"}


def json_type(value) -> str:
    """The JSON name of a decoded value's type ("object", "array", ...), for messages."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "No such file or directory", path)


def read_text(path) -> tuple[str, str]:
    """(path as a string, whole file decoded); bad UTF-8 is reported with its line."""
    path = os.fsdecode(path)
    if not os.path.isfile(path):
        raise missing(path)
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


def physical_lines(text: str) -> list[str]:
    # Only \n, \r\n and \r end a line. str.splitlines() would also split at
    # U+2028, form feeds etc., which JSON strings may contain and editors do
    # not count, so the line numbers in errors would drift.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def check_label_names(label_names, label_column, argument="label_names"):
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


# Digits of the longest id a string may spell. Longer strings of digits are
# not converted (int() refuses beyond 4300 digits, and takes quadratic time
# before that); they stand for a number beyond any id, so range checks refuse them.
_MAX_ID_DIGITS = 18


def as_integer(value):
    """The integer a label stands for, or None when it is a name.

    A string of more than 18 digits (after any leading zeros) is not converted:
    it comes back as an infinity of its sign, which every id range refuses.
    """
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str) and INTEGER.fullmatch(value):
        if len(value.lstrip("+-").lstrip("0")) > _MAX_ID_DIGITS:
            return -math.inf if value.startswith("-") else math.inf
        return int(value)
    return None



def text_value(value, path, line, column, kind):
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


def require(available, wanted, path, line, kind):
    """Every wanted column/key must be available; the error lists those that are."""
    for role, name in wanted:
        if name not in available:
            raise ValueError(
                f"{path}:{line}: no {kind} {name!r} ({role}); available {kind}s: "
                f"{', '.join(map(repr, available)) or 'none'}."
            )


def read_csv(path, wanted, delimiter):
    """(path as a string, (line, {column: field}) pairs) for a CSV file with a header row.

    wanted: (role, column) pairs that the header must name, once each. Empty
    lines are skipped; no data rows is an error.
    """
    path, text = read_text(path)
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
            require(header, wanted, path, start, "column")
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


def read_jsonl(path, wanted):
    """(path as a string, (line, object) pairs) for a JSON Lines file.

    wanted: (role, key) pairs that every object must have. Blank lines are
    skipped; no objects is an error.
    """
    path, text = read_text(path)
    records = []
    for line, content in enumerate(physical_lines(text), start=1):
        if not content.strip():
            continue
        record = parse_json(content, path, ValueError, line=line)
        if not isinstance(record, dict):
            raise ValueError(
                f"{path}:{line}: expected a JSON object ({{...}}), got a JSON "
                f"{json_type(record)}; JSON Lines "
                "holds one object per line."
            )
        require(list(record), wanted, path, line, "key")
        records.append((line, record))
    if not records:
        raise ValueError(f"{path}:1: the file is empty; expected one JSON object per line.")
    return path, records
