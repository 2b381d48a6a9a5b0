"""Checks on the dict of id tensors a model is called with.

Errors name the input, the problem and the limit, before TensorFlow would fail
deep inside a gather (or, on GPU and under XLA, silently read a wrong row).
Structure, dtype and static shapes are checked always; values only where they
are concrete (eager calls), since a traced graph has none to look at.
"""

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf
from keras import ops


def _dtype_name(x):
    return keras.backend.standardize_dtype(x.dtype)


def _concrete_values(x):
    """A numpy view of `x` when its values exist now, else None."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, tf.Tensor) and tf.executing_eagerly() and hasattr(x, "numpy"):
        return x.numpy()
    return None


def check_input_keys(inputs, expected, owner):
    """Raises unless `inputs` is a dict holding every name in `expected`."""
    if not isinstance(inputs, Mapping):
        raise ValueError(
            f"{owner} expects a dict with keys {expected}; got {type(inputs).__name__}."
        )
    missing = [name for name in expected if name not in inputs]
    if missing:
        raise ValueError(
            f"{owner} is missing input(s) {missing}; it expects keys {expected}, "
            f"got {sorted(inputs)}."
        )


def static_sequence_length(x):
    """The second dimension of `x` when it is known before running, else None."""
    shape = x.shape if hasattr(x, "shape") else np.shape(x)
    return shape[1] if len(shape) > 1 else None


def check_id_inputs(inputs, limits, owner, max_sequence_length=None):
    """Validates and normalises a dict of `[batch, seq]` integer inputs.

    Args:
        inputs: what the model was called with.
        limits: ordered mapping input name -> exclusive upper bound of its values
            (`None`: only the shape is checked, the values are not).
        owner: the model's name, for messages.
        max_sequence_length: largest allowed `seq`, if bounded.

    Returns:
        A new dict holding exactly the names in `limits`, as int32 tensors.
        Other keys (e.g. `segment_ids` given to DistilBERT) are dropped, so one
        preprocessor's output can feed either architecture.
    """
    check_input_keys(inputs, list(limits), owner)
    checked = {}
    seq_lens = {}
    for name, limit in limits.items():
        x = inputs[name]
        if not hasattr(x, "dtype"):
            try:
                x = np.asarray(x)
            except ValueError as e:
                raise ValueError(f"{owner}: `{name}` is not a rectangular array: {e}") from e
        dtype = _dtype_name(x)
        if dtype == "bool":
            x = ops.cast(x, "int32")
        elif "int" not in dtype:
            hint = " Tokenize text first (BertPreprocessor)." if dtype == "string" else ""
            raise ValueError(
                f"{owner}: `{name}` must hold integer ids (int32); got dtype {dtype}.{hint}"
            )
        shape = tuple(x.shape)
        if len(shape) != 2:
            raise ValueError(
                f"{owner}: `{name}` must have shape [batch, sequence_length]; got shape {shape}."
            )
        seq_len = shape[1]
        if seq_len is not None:
            seq_lens[name] = seq_len
            if max_sequence_length is not None and seq_len > max_sequence_length:
                raise ValueError(
                    f"{owner}: sequence length {seq_len} of `{name}` exceeds the position "
                    f"table of {max_sequence_length} positions; truncate inputs to at most "
                    f"{max_sequence_length} tokens."
                )
        values = _concrete_values(x)
        if values is not None and limit is not None and values.size:
            low, high = int(values.min()), int(values.max())
            if low < 0 or high >= limit:
                bad = low if low < 0 else high
                raise ValueError(
                    f"{owner}: `{name}` holds {bad}, outside the valid range [0, {limit})."
                )
        checked[name] = x if dtype == "int32" else ops.cast(x, "int32")
    if len(set(seq_lens.values())) > 1:
        raise ValueError(f"{owner}: inputs disagree on sequence length: {seq_lens}.")
    return checked
