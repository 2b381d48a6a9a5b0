"""Reading JSON from files nobody vetted: bounded in size, strict, one error type.

Python's `json` module accepts what RFC 8259 does not (`NaN`, `Infinity`), turns
`1e400` into an infinity, raises `RecursionError` on deeply nested brackets and
a bare `ValueError` on integers longer than Python converts (4300 digits). Here
every one of those, like malformed JSON or bad UTF-8, becomes `error_type` with a
message that names the file (and the line where known):

    read_json(path, CheckpointFormatError, 16 * MB, "Hugging Face config")
    parse_json(line_text, path, ValueError, line=12)   # a JSON Lines record

Messages never quote the document, only positions, so they stay short however
large or strange the input.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

MB = 2**20


class _RefusedNumber(Exception):
    """Raised inside the decoder by the hooks below; turned into `error_type`."""


def _refuse_constant(name):
    raise _RefusedNumber(f"{name} is not a JSON number")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 30 else text[:27] + "..."
        raise _RefusedNumber(f"the number {shown} is too large for a float")
    return value


def _where(source, line):
    return source if line is None else f"{source}:{line}"


def parse_json(data: bytes | str, source: str, error_type: type[Exception],
               *, line: int | None = None):
    """The JSON value in `data`, or `error_type` naming `source` and what is wrong.

    Args:
        data: the document (bytes are decoded as UTF-8).
        source: what `data` came from (a path), for messages.
        error_type: the exception class raised for any problem (a ValueError
            subclass, or ValueError).
        line: the line of `source` that `data` starts on, when it is one
            record of a line-oriented file (JSON Lines): messages then start
            "source:line:", as the dataset loaders' do. When None, syntax
            errors still say "source:line:" with the line inside `data`, and
            problems without a position say "source:".
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            at = _where(source, (line or 1) + data.count(b"\n", 0, e.start))
            raise error_type(f"{at}: not valid UTF-8 (at byte {e.start}: {e.reason}).") from None
    where = _where(source, line)
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        at = _where(source, (line or 1) + e.lineno - 1)
        raise error_type(f"{at}: invalid JSON at column {e.colno}: {e.msg}.") from None
    except _RefusedNumber as e:
        raise error_type(f"{where}: {e}; JSON has no NaN or infinities.") from None
    except RecursionError:
        raise error_type(
            f"{where}: JSON nested too deeply (arrays or objects inside one another "
            f"{sys.getrecursionlimit()} or more levels down)."
        ) from None
    except ValueError:
        # The only other ValueError json.loads raises on a str: an integer literal
        # longer than int() converts (sys.get_int_max_str_digits()).
        raise error_type(
            f"{where}: an integer has more than {sys.get_int_max_str_digits()} digits."
        ) from None


def read_json(path: str | os.PathLike, error_type: type[Exception], max_bytes: int, what: str):
    """The JSON value in the file at `path`, read only if it has at most `max_bytes`.

    Args:
        path: the file.
        error_type: the exception class for a file that is too large or not
            JSON (see `parse_json`). A missing file is a FileNotFoundError.
        max_bytes: the largest file accepted; never more is read.
        what: what the file is ("Hugging Face config"), for the size message.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error_type(
            f"{path}: larger than {max_bytes} bytes, the most a {what} file may have."
        )
    return parse_json(data, path, error_type)


def is_short_scalar(value, limit: int = 60) -> bool:
    """Whether `value` is None, a bool, a number or a string that a message may show whole."""
    if value is None or isinstance(value, (bool, float, np.generic)):
        return True
    if isinstance(value, int):
        return value.bit_length() <= 128
    return isinstance(value, str) and len(value) <= limit


def describe(value, limit: int = 60) -> str:
    """`value` (a decoded JSON value) for a message: its repr when short, else what it is.

    Never formats a container (a crafted one can be megabytes, or nested deep
    enough to overflow `repr`) nor an integer too long for `str`.
    """
    if is_short_scalar(value, limit):
        return repr(value)
    if isinstance(value, int):
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, str):
        return f"{value[:limit - 3]!r}... ({len(value)} characters)"
    if isinstance(value, list):
        return f"an array of {len(value)} values"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    return f"a {type(value).__name__}"
