"""User data: plain-text documents, and labelled texts from CSV or JSON Lines.

Files are UTF-8 (a byte-order mark is fine). Every problem in a file is a
`ValueError` that starts with `path:line:`, so it can be found and fixed.
"""

from __future__ import annotations

import csv
import json
import os

from keras_bert_kit.datasets.labeled import LabeledTexts


def _open_text(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such file: {path}")
    return open(path, encoding="utf-8-sig", newline="")


def _read_lines(path):
    """(line number, line) pairs; invalid UTF-8 names its line."""
    with open(os.fspath(path), "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            yield number, line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{number}: not valid UTF-8 ({e.reason}).") from None


def load_text_documents(paths) -> list[str]:
    """Documents from plain-text files: blank lines separate documents.

    `paths` is a file, a directory (its `*.txt` files, sorted) or a list of
    either. Lines of a document are kept, joined by "\\n" (a line break ends a
    sentence). Documents never span files.
    """
    files = []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else list(paths):
        path = os.fspath(path)
        if os.path.isdir(path):
            files += sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".txt"))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"No such file or directory: {path}")
    documents = []
    for path in files:
        current = []
        for _, line in _read_lines(path):
            if line.strip():
                current.append(line.rstrip())
            elif current:
                documents.append("\n".join(current))
                current = []
        if current:
            documents.append("\n".join(current))
    return documents


def _labels(raw, label_names, path, column):
    """Turns (line, value) pairs into label ids and names."""
    if label_names is not None:
        names = tuple(str(n) for n in label_names)
        ids = []
        for line, value in raw:
            if isinstance(value, int) and not isinstance(value, bool):
                if not 0 <= value < len(names):
                    raise ValueError(
                        f"{path}:{line}: label {value} in {column!r} is outside "
                        f"[0, {len(names)}) for label_names {names}."
                    )
                ids.append(value)
            elif str(value) in names:
                ids.append(names.index(str(value)))
            else:
                raise ValueError(
                    f"{path}:{line}: unknown label {value!r} in {column!r}; "
                    f"label_names are {names}."
                )
        return ids, names
    if all(isinstance(v, int) and not isinstance(v, bool) for _, v in raw):
        for line, value in raw:
            if value < 0:
                raise ValueError(f"{path}:{line}: label {value} in {column!r} is negative.")
        return [v for _, v in raw], tuple(str(i) for i in range(max(v for _, v in raw) + 1))
    names = tuple(sorted({str(v) for _, v in raw}))
    return [names.index(str(v)) for _, v in raw], names


def _build(path, rows, text_column, label_column, text_pair_column, label_names):
    """rows: (line, record dict) pairs."""
    if not rows:
        raise ValueError(f"{path}: no rows.")
    texts, pairs, raw_labels = [], [], []
    for line, record in rows:
        for column in filter(None, (text_column, text_pair_column, label_column)):
            if column not in record:
                raise ValueError(
                    f"{path}:{line}: no column {column!r}; available: {sorted(record)}."
                )
        for column, out in ((text_column, texts), (text_pair_column, pairs)):
            if column is None:
                continue
            value = record[column]
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{path}:{line}: {column!r} is empty or not text: {value!r}.")
            out.append(value)
        if label_column is not None:
            value = record[label_column]
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ValueError(f"{path}:{line}: label {label_column!r} is empty.")
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            raw_labels.append((line, value))
    labels = names = None
    if label_column is not None:
        labels, names = _labels(raw_labels, label_names, path, label_column)
    return LabeledTexts(
        texts=texts, labels=labels, label_names=names,
        text_pairs=pairs if text_pair_column is not None else None,
    )


def load_csv(path, text_column, label_column=None, text_pair_column=None,
             label_names=None, delimiter=",") -> LabeledTexts:
    """Labelled texts from a CSV file with a header row.

    Labels may be names (mapped to `label_names`' order, or sorted names when
    none are given) or non-negative integers (`label_names` "0".."max").
    """
    rows = []
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: the file is empty.")
            for fields in reader:
                line = reader.line_num
                if not any(field.strip() for field in fields):
                    continue
                if len(fields) != len(header):
                    raise ValueError(
                        f"{path}:{line}: {len(fields)} fields, but the header has "
                        f"{len(header)} ({header})."
                    )
                rows.append((line, dict(zip(header, fields))))
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV: {e}.") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}:{reader.line_num + 1}: not valid UTF-8 ({e.reason}).") from None
    return _build(path, rows, text_column, label_column, text_pair_column, label_names)


def load_jsonl(path, text_key, label_key=None, text_pair_key=None,
               label_names=None) -> LabeledTexts:
    """Labelled texts from JSON Lines: one object per line; blank lines skipped."""
    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"No such file: {path}")
    rows = []
    for line, text in _read_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line}: invalid JSON: {e.msg}.") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{line}: expected a JSON object, got {type(record).__name__}.")
        rows.append((line, record))
    return _build(path, rows, text_key, label_key, text_pair_key, label_names)
