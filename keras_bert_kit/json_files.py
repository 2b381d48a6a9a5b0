"""Reading JSON from files nobody vetted: bounded in size, strict, one error type.

Python's `json` module accepts what RFC 8259 does not (`NaN`, `Infinity`), turns
`1e400` into an infinity, raises `RecursionError` on deeply nested brackets and
a bare `ValueError` on integers longer than Python converts (4300 digits). Here
every one of those, like malformed JSON or bad UTF-8, becomes `error_type` with a
message that names the file (and the line where known):

    read_json(path, CheckpointFormatError, 16 * MB, "Hugging Face config")
    parse_json(line_text, path, ValueError, line=12)   # a JSON Lines record

Messages quote at most a key name (shortened), with line and column, so they
stay short and one line however large or strange the input. `describe(value)`
renders a decoded value for a message the same way: its repr when it is a short
scalar (`is_short_scalar`), else what it is ("an array of 3 values").
"""

from __future__ import annotations

import json
import math
import os
import re
import sys

import numpy as np

MB = 2**20


class _RefusedNumber(Exception):
    """Raised inside the decoder by the hooks below; turned into `error_type`."""


def _refuse_constant(name):
    raise _RefusedNumber


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise _RefusedNumber
    return value


def _not_finite(token):
    unsigned = token.lstrip("-")
    if unsigned in ("NaN", "Infinity"):
        return True
    # An integer token is an int, never a float, however long.
    return not unsigned.isdigit() and not math.isfinite(float(token))


def _too_many_digits(token):
    return token.lstrip("-").isdigit() and len(token.lstrip("-")) > sys.get_int_max_str_digits()


# A string (whole, so that nothing inside one is taken for a number), and
# whether a colon follows (a key); or a number or JSON-like constant.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"(\s*:)?|(-?(?:Infinity|NaN|[0-9][0-9.eE+-]*))')


def _locate(data, bad):
    """(offset, key) of the first number token `bad(token)` refuses; key: the object
    key it is the value of, or None (in an array, or not found).

    Only called after the decoder refused such a token, so everything before it
    is valid JSON and tokenizes as the decoder read it.
    """
    key, key_end = None, None
    for match in _TOKEN.finditer(data):
        number = match.group(2)
        if number is None:
            if match.group(1):
                key, key_end = match.group(0)[: -len(match.group(1))], match.end()
            continue
        if bad(number):
            direct = key_end is not None and not data[key_end:match.start()].strip()
            return match.start(), (json.loads(key) if direct else None)
    return None, None


def _where(source, line):
    return source if line is None else f"{source}:{line}"


def _refusal(data, source, line, bad, problem):
    """The message for the first token `bad` refuses: "source:line: the value of 'key'
    at column 9 <problem>" (what is known of the place)."""
    offset, key = _locate(data, bad)
    if offset is None:
        return f"{_where(source, line)}: a number {problem}"
    at = _where(source, (line or 1) + data.count("\n", 0, offset))
    column = offset - data.rfind("\n", 0, offset)
    subject = f"the value of {describe(key)}" if key is not None else "a number"
    return f"{at}: {subject} at column {column} {problem}"


def parse_json(data: bytes | str, source: str, error_type: type[Exception],
               *, line: int | None = None):
    """The JSON value in `data`, or `error_type` naming `source` and what is wrong.

    Args:
        data: the document (bytes are decoded as UTF-8).
        source: what `data` came from (a path), for messages.
        error_type: the exception class raised for any problem (a ValueError
            subclass, or ValueError).
        line: the line of `source` that `data` starts on, when it is one
            record of a line-oriented file (JSON Lines). Messages start
            "source:line:" where the line is known (counted from `line`, or
            from 1 within `data`), and "source:" where it is not.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data)
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            at = _where(source, (line or 1) + data.count(b"\n", 0, e.start))
            raise error_type(f"{at}: not valid UTF-8 (at byte {e.start}: {e.reason}).") from None
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        at = _where(source, (line or 1) + e.lineno - 1)
        raise error_type(f"{at}: invalid JSON at column {e.colno}: {e.msg}.") from None
    except _RefusedNumber:
        problem = "is NaN or infinite (or too large for a float); JSON numbers are finite."
        raise error_type(_refusal(data, source, line, _not_finite, problem)) from None
    except RecursionError:
        raise error_type(
            f"{_where(source, line)}: JSON nested too deeply (more than about "
            f"{sys.getrecursionlimit()} arrays or objects inside one another)."
        ) from None
    except ValueError:
        # The only other ValueError json.loads raises on a str: an integer literal
        # longer than int() converts.
        problem = f"has more than {sys.get_int_max_str_digits()} digits."
        raise error_type(_refusal(data, source, line, _too_many_digits, problem)) from None


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
        return f"an array of {len(value)} value{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"an object of {len(value)} key{'' if len(value) == 1 else 's'}"
    return f"a {type(value).__name__}"
