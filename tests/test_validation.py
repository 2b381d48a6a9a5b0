import pytest

import numpy as np

from keras_bert_kit.validation import check_choice, check_int, check_number, is_int


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("batch_size", 0, 1), {}, "`batch_size` must be a positive integer; got 0."),
        (("batch_size", True, 1), {}, "`batch_size` must be a positive integer; got True."),
        (("batch_size", 2.0, 1), {}, "`batch_size` must be a positive integer; got 2.0."),
        (("num_unused", -1, 0), {}, "`num_unused` must be a non-negative integer; got -1."),
        (("length", 4, 5), dict(hint="why"), "`length` must be an integer >= 5 (why); got 4."),
        (("pad_token_id", 9, 0, 9), dict(include_maximum=False, noun="id"),
         "`pad_token_id` must be an id in [0, 9); got 9."),
        (("top", 11, None, 10), {}, "`top` must be an integer <= 10; got 11."),
    ],
)
def test_check_int_refuses_with_the_name_and_value(args, kwargs, message):
    with pytest.raises(ValueError) as raised:
        check_int(*args, **kwargs)
    assert str(raised.value) == message


def test_check_int_returns_good_values():
    assert check_int("n", 5, minimum=5, maximum=5) == 5
    assert check_int("n", -3) == -3
    assert is_int(3) and not is_int(True) and not is_int(3.0)


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (1.0, dict(include_maximum=False), "`rate` must be a number in [0, 1); got 1.0."),
        (0, dict(include_minimum=False), "`rate` must be a number in (0, 1]; got 0."),
        (False, {}, "`rate` must be a number in [0, 1]; got False."),
        ("0.5", {}, "`rate` must be a number in [0, 1]; got '0.5'."),
        (float("nan"), {}, "`rate` must be a number in [0, 1]; got nan."),
    ],
)
def test_check_number_refuses_with_the_name_and_value(value, kwargs, message):
    with pytest.raises(ValueError) as raised:
        check_number("rate", value, 0.0, 1.0, **kwargs)
    assert str(raised.value) == message


def test_check_number_accepts_the_included_bounds():
    assert check_number("rate", 0.0, 0.0, 1.0) == 0.0
    assert check_number("rate", 1, 0.0, 1.0) == 1
    assert check_number("scale", 0.5, 0.0, include_minimum=False) == 0.5


def test_check_number_positive_finite_and_numpy():
    assert check_number("rate", np.float32(0.5), 0.0, 1.0) == np.float32(0.5)
    with pytest.raises(ValueError) as raised:
        check_number("learning_rate", float("inf"), 0, include_minimum=False, finite=True)
    assert str(raised.value) == "`learning_rate` must be a positive finite number; got inf."


def test_check_choice():
    assert check_choice("decay", "linear", ("linear", "constant")) == "linear"
    with pytest.raises(ValueError) as raised:
        check_choice("decay", "cosine", ("linear", "constant"))
    assert str(raised.value) == "`decay` must be one of ('linear', 'constant'); got 'cosine'."
    with pytest.raises(ValueError, match=r"`pooling` must be one of \{'cls'\}; got \['cls'\]"):
        check_choice("pooling", ["cls"], {"cls"})
