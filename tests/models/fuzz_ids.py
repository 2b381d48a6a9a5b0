"""Fuzz target: random id arrays fed to a tiny encoder, eagerly and through one tf.function.

Each case draws one integer dtype (int8 ... uint64) for the three inputs,
shapes with zero, small and too-long dimensions (sometimes disagreeing
between the inputs), and values that are mostly valid ids with extremes
mixed in (-1, the table size, 2**31, 2**32 + 5, the dtype's limits). Every
run must either answer (when the ids are valid: finite outputs of the right
shape, the same eagerly and traced) or refuse with the package's errors
(when they are not: `InvalidIdsError` or `ValueError` eagerly,
`InvalidArgumentError` or `ValueError` traced) naming an input. Anything
else, or an answer for invalid ids, or a refusal of valid ones, fails.

Run by `tests/models/test_untrusted_ids.py` (few examples) and by
`bench/fuzz_untrusted.py` (many).
"""

import functools

import numpy as np
import tensorflow as tf
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.isolation import FuzzTarget

VOCAB_SIZE, TYPE_VOCAB_SIZE, MAX_SEQUENCE_LENGTH, HIDDEN_SIZE = 300, 2, 16, 16
LIMITS = {"input_ids": VOCAB_SIZE, "segment_ids": TYPE_VOCAB_SIZE, "padding_mask": 2}
DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
SPECIAL_VALUES = (-1, 2**31 - 1, 2**31, 2**32 + 5, 2**63 - 1)


@functools.cache
def encoder_and_traced():
    """The tiny encoder, and one tf.function over it (retraced per dtype, shapes relaxed)."""
    import keras_bert_kit as kbk

    encoder = kbk.BertEncoder(
        kbk.BertConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=HIDDEN_SIZE,
            num_layers=1,
            num_heads=2,
            intermediate_size=32,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
            type_vocab_size=TYPE_VOCAB_SIZE,
        )
    )
    traced = tf.function(
        lambda inputs: encoder(inputs, training=False), reduce_retracing=True
    )
    return encoder, traced


def _valid_values(dtype, limit):
    return st.integers(0, min(limit, np.iinfo(dtype).max + 1) - 1)


def _any_values(dtype, limit):
    info = np.iinfo(dtype)
    extremes = [v for v in (*SPECIAL_VALUES, limit, limit - 1, info.min, info.max)
                if info.min <= v <= info.max]  # fmt: skip
    return st.one_of(_valid_values(dtype, limit), st.sampled_from(extremes))


@st.composite
def id_arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    batch = draw(st.sampled_from([0, 1, 2, 3]))
    length = draw(st.sampled_from([0, 1, 4, MAX_SEQUENCE_LENGTH, MAX_SEQUENCE_LENGTH + 1]))
    inputs = {}
    for name, limit in LIMITS.items():
        shape = (batch, length)
        if draw(st.integers(0, 9)) == 0:  # now and then, a shape that disagrees
            shape = (draw(st.integers(0, 3)), draw(st.integers(0, 5)))
        valid_only = draw(st.integers(0, 2)) > 0
        elements = (_valid_values if valid_only else _any_values)(dtype, limit)
        inputs[name] = draw(hnp.arrays(dtype, shape, elements=elements))
    return inputs


def _problems(inputs):
    """What is wrong with `inputs`: ("shape" and/or "values"), empty when they are valid."""
    shapes = {array.shape for array in inputs.values()}
    (batch, length), *_ = shapes
    problems = set()
    if len(shapes) > 1 or not 1 <= length <= MAX_SEQUENCE_LENGTH:
        problems.add("shape")
    for name, limit in LIMITS.items():
        values = inputs[name].astype(object)  # exact comparisons, whatever the dtype
        if values.size and (values.min() < 0 or values.max() >= limit):
            problems.add("values")
    return problems


def _names_an_input(message):
    return any(f"`{name}`" in message for name in LIMITS)


def _run(call, inputs, problems, refusals, mode):
    """The outputs, or None when refused as `problems` allow; raises AssertionError otherwise."""
    try:
        outputs = call(inputs)
    except refusals as e:
        message = getattr(e, "message", None) or str(e)
        assert problems, f"{mode}: valid ids refused with {type(e).__name__}: {message}"
        assert _names_an_input(message), f"{mode}: the error names no input: {message}"
        return None
    assert not problems, f"{mode}: answered for inputs with {sorted(problems)} problems"
    batch, length = inputs["input_ids"].shape
    sequence_output = np.asarray(outputs["sequence_output"])
    assert sequence_output.shape == (batch, length, HIDDEN_SIZE), sequence_output.shape
    assert np.all(np.isfinite(sequence_output)), f"{mode}: non-finite outputs"
    return sequence_output


def run_encoder_ids(inputs):
    from keras_bert_kit.errors import InvalidIdsError

    encoder, traced = encoder_and_traced()
    problems = _problems(inputs)
    # Eagerly, right shapes with wrong values get the package's own error.
    eager_refusals = InvalidIdsError if problems == {"values"} else ValueError
    eager = _run(encoder, inputs, problems, eager_refusals, "eager")
    tensors = {name: tf.constant(array) for name, array in inputs.items()}
    graph = _run(traced, tensors, problems, (tf.errors.InvalidArgumentError, ValueError), "graph")
    if eager is None:
        return "refused"
    np.testing.assert_allclose(graph, eager, atol=1e-5, err_msg="traced differs from eager")
    return "answered"


FUZZ_TARGETS = {"encoder_ids": FuzzTarget(id_arrays(), run_encoder_ids, allowed=())}
