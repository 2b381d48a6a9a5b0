"""Checks of user-supplied arguments, with errors that name the argument and the value.

`check_int("batch_size", 0, minimum=1)` raises
ValueError("`batch_size` must be a positive integer; got 0.").
A bool is never accepted as a number (True == 1 would otherwise pass); numpy
integers and floats are. `check_choice` does the same for a value that must be
one of a few names.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """An int (Python's or numpy's) that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _bound(value) -> str:
    # 1.0 reads as "1", so messages match however the caller spelt the bound.
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _requirement(noun, minimum, maximum, include_minimum, include_maximum) -> str:
    """"a positive integer", "a number in [0, 1)", "an integer >= 5", ..."""
    minimum = None if minimum is None else _bound(minimum)
    maximum = None if maximum is None else _bound(maximum)
    if minimum is not None and maximum is not None:
        low = "[" if include_minimum else "("
        high = "]" if include_maximum else ")"
        return f"{_article(noun)} {noun} in {low}{minimum}, {maximum}{high}"
    if maximum is not None:
        return f"{_article(noun)} {noun} {'<=' if include_maximum else '<'} {maximum}"
    if minimum is None:
        return f"{_article(noun)} {noun}"
    if noun in ("integer", "number", "finite number") and (
        minimum == "0" and not include_minimum
        or minimum == "1" and include_minimum and noun == "integer"
    ):
        return f"a positive {noun}"
    if noun in ("integer", "number") and minimum == "0":
        return f"a non-negative {noun}"
    return f"{_article(noun)} {noun} {'>=' if include_minimum else '>'} {minimum}"


def _in_range(value, minimum, maximum, include_minimum, include_maximum) -> bool:
    # Written as what holds, not what fails, so that NaN (all comparisons false) is refused.
    above = minimum is None or (value >= minimum if include_minimum else value > minimum)
    below = maximum is None or (value <= maximum if include_maximum else value < maximum)
    return above and below


def _check(name, value, type_ok, noun, minimum, maximum, include_minimum, include_maximum,
           hint):
    if type_ok(value) and _in_range(value, minimum, maximum, include_minimum, include_maximum):
        return value
    requirement = _requirement(noun, minimum, maximum, include_minimum, include_maximum)
    suffix = f" ({hint})" if hint else ""
    raise ValueError(f"`{name}` must be {requirement}{suffix}; got {value!r}.")


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None,
              *, include_maximum: bool = True, noun: str = "integer",
              hint: str | None = None) -> int:
    """`value` if it is an int (not a bool) within the bounds, else a ValueError naming `name`.

    Args:
        name: the argument's name, as the caller spells it.
        minimum, maximum: inclusive bounds; None for none.
        include_maximum: False makes `maximum` exclusive (e.g. ids below a size).
        noun: what the value is, for the message ("integer", "id").
        hint: a few words on why the bound is what it is, appended in parentheses.
    """
    return _check(name, value, is_int, noun, minimum, maximum, True, include_maximum, hint)


def check_number(name: str, value: Any, minimum: float | None = None,
                 maximum: float | None = None, *, include_minimum: bool = True,
                 include_maximum: bool = True, finite: bool = False,
                 hint: str | None = None) -> float:
    """`value` if it is an int or float (not a bool) within the bounds, else a ValueError.

    Args:
        name: the argument's name, as the caller spells it.
        minimum, maximum: bounds; None for none.
        include_minimum, include_maximum: whether each bound itself is allowed.
        finite: refuse infinities too (NaN is always refused).
        hint: a few words appended to the message in parentheses.
    """
    if finite:
        return _check(name, value, lambda v: _is_number(v) and math.isfinite(v),
                      "finite number", minimum, maximum, include_minimum, include_maximum, hint)
    return _check(name, value, _is_number, "number", minimum, maximum, include_minimum,
                  include_maximum, hint)


def check_choice(name: str, value: Any, choices) -> Any:
    """`value` if it is one of `choices`, else a ValueError naming `name` and the choices."""
    try:
        known = value in choices
    except TypeError:  # an unhashable value tested against a set or dict
        known = False
    if not known:
        raise ValueError(f"`{name}` must be one of {choices}; got {value!r}.")
    return value
