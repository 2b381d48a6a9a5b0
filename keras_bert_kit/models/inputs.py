"""Checks on the dict of id tensors a model is called with.

Errors name the model, the input, the problem and the limit, before
TensorFlow would fail deep inside a gather or an attention mask (or, on GPU
and under XLA, silently read a wrong row; or, with a negative id, read a row
counted from the end). What can be known before running (structure, dtype,
rank, static shapes) is checked when the model is called or traced, with a
`ValueError`. Values, and shapes known only at run time, are checked where
they exist:

- eagerly, on the values: `InvalidIdsError` (a `ValueError` and an
  `InvalidArgumentError`) for ids out of range;
- in a graph (`predict`, `tf.data`, `tf.function`, a SavedModel, TF
  Serving): assertion ops the ids depend on, raising `InvalidArgumentError`
  naming the model, the input and the range;
- in TFLite, which drops assertion ops: through gathers that TFLite
  bounds-checks (see `keras_bert_kit.id_checks`).

Values are checked in the dtype they come in, before the cast to int32, so an
int64 id of 2**32 + 5 is refused rather than read as 5.

XLA compiles assertion ops to nothing, so `IdInputsModel` builds `predict`
and `evaluate` steps without XLA (training keeps it when compiled with it).
"""

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from keras_bert_kit.id_checks import check_id_range

# Integer dtypes whose every value an int32 holds: cast before checking.
_WIDENED_TO_INT32 = ("bool", "int8", "int16", "uint8", "uint16")
# uint32 ids are checked as int64, which holds them all; int64 and uint64
# ones in their own dtype.
_WIDENED_TO_INT64 = ("uint32",)
_AXIS_NAMES = ("batch size", "sequence length")


def _dtype_name(x, name="ids", owner="model"):
    if isinstance(x, np.ndarray) and x.dtype.kind in "SU":  # numpy's bytes and str
        return "string"
    try:
        return keras.backend.standardize_dtype(x.dtype)
    except ValueError as e:  # a dtype Keras has no name for (complex, datetime, ...)
        raise ValueError(
            f"{owner}: `{name}` must hold integer ids (int32); got dtype {x.dtype}."
        ) from e


def dense_array(value, name, owner):
    """`value` as an array or tensor Keras can take, or a `ValueError` naming the input.

    Python lists, tuples and numbers become numpy arrays. Keras would
    otherwise take a dict holding a list as a structure of many inputs, and
    fail on a numpy array of dtype object, a ragged or sparse tensor, or a
    tensor of unknown rank, without naming the input.
    """
    if isinstance(value, (tf.RaggedTensor, tf.SparseTensor)):
        raise ValueError(
            f"{owner}: `{name}` must be a dense [batch, sequence_length] tensor; got a "
            f"{type(value).__name__} (pad it first, e.g. with `.to_tensor()`)."
        )
    if not hasattr(value, "dtype"):
        try:
            value = np.asarray(value)
        except ValueError as e:
            raise ValueError(
                f"{owner}: `{name}` is not a rectangular array (rows of different "
                f"lengths?): {e}"
            ) from e
    if isinstance(value, np.ndarray) and value.dtype == object:
        raise ValueError(
            f"{owner}: `{name}` is a numpy array of dtype object (mixed types, or rows of "
            "different lengths); it must be a rectangular array of integer ids (int32)."
        )
    if isinstance(value.shape, tf.TensorShape) and value.shape.rank is None:
        raise ValueError(
            f"{owner}: `{name}` must have shape [batch, sequence_length]; got a tensor of "
            "unknown rank."
        )
    return value


def dense_inputs(inputs, owner):
    """A dict of inputs with its lists and tuples as arrays (see `dense_array`); else `inputs`."""
    if not isinstance(inputs, Mapping):
        return inputs
    return {name: dense_array(value, name, owner) for name, value in inputs.items()}


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


def _integer_matrix(x, name, owner):
    """`x` as a `[batch, seq]` integer array or tensor, in a dtype its values can be checked in."""
    x = dense_array(x, name, owner)
    dtype = _dtype_name(x, name, owner)
    if "int" not in dtype and dtype != "bool":
        hint = " Tokenize text first (BertPreprocessor)." if dtype == "string" else ""
        raise ValueError(
            f"{owner}: `{name}` must hold integer ids (int32); got dtype {dtype}.{hint}"
        )
    shape = tuple(x.shape)
    if len(shape) != 2:
        raise ValueError(
            f"{owner}: `{name}` must have shape [batch, sequence_length]; got shape {shape}."
        )
    if dtype in _WIDENED_TO_INT32:
        return tf.cast(x, tf.int32)
    if dtype in _WIDENED_TO_INT64:
        return tf.cast(x, tf.int64)
    return x


def _shape_agreement(named, axes, owner):
    """An assertion that the `[batch, seq]` inputs in `named` agree on `axes`, or None.

    Raises a `ValueError` naming two inputs and their shapes when the static
    shapes already disagree; the assertion covers what only the graph knows.
    """
    (first, x), *others = named.items()
    dynamic = []
    for name, other in others:
        for axis in axes:
            size, other_size = x.shape[axis], other.shape[axis]
            if size is not None and other_size is not None:
                if size != other_size:
                    raise ValueError(
                        f"{owner}: inputs disagree on {_AXIS_NAMES[axis]}: `{first}` has "
                        f"shape {tuple(x.shape)}, `{name}` has shape {tuple(other.shape)}."
                    )
            else:
                dynamic.append((name, other, axis))
    if not dynamic:
        return None
    shape = tf.shape(x)
    agree = tf.reduce_all(
        tf.stack([tf.equal(shape[axis], tf.shape(other)[axis]) for _, other, axis in dynamic])
    )
    disagreeing = sorted({name for name, _, _ in dynamic})
    what = " and ".join(_AXIS_NAMES[axis] for axis in axes)
    data = [f"{owner}: inputs must agree on {what}; `{first}` has shape", shape]
    for name in disagreeing:
        data += [f"`{name}` has shape", tf.shape(named[name])]
    return tf.debugging.Assert(agree, data, name="check_input_shapes")


def _sequence_length_check(x, name, owner, max_sequence_length, allow_empty_batch):
    """An assertion that `x`'s sequence length lies in [1, max_sequence_length], or None.

    With `allow_empty_batch`, a batch of no sequences may have length 0.
    Raises a `ValueError` when the static shape is already outside.
    """
    batch, seq_len = x.shape
    upper = max_sequence_length if max_sequence_length is not None else np.iinfo(np.int32).max
    if seq_len is not None and seq_len > upper:
        raise ValueError(
            f"{owner}: sequence length {seq_len} of `{name}` exceeds the position "
            f"table of {max_sequence_length} positions; truncate inputs to at most "
            f"{max_sequence_length} tokens."
        )
    if seq_len == 0 and not (allow_empty_batch and batch in (0, None)):
        raise ValueError(
            f"{owner}: `{name}` has sequence length 0; every sequence needs at least "
            "one token (its [CLS])."
        )
    if seq_len is not None and (seq_len > 0 or batch == 0):
        return None
    shape = tf.shape(x)
    long_enough = shape[1] > 0
    if allow_empty_batch:
        long_enough = tf.logical_or(long_enough, tf.equal(shape[0], 0))
    return tf.debugging.Assert(
        tf.logical_and(long_enough, shape[1] <= upper),
        [f"{owner}: the sequence length of `{name}` must lie in [1, {upper}] (a [CLS] token, "
         "and no more than the position table holds); its shape is", shape],
        name=f"check_{name}_length",
    )  # fmt: skip


def _checked_int32(named, limits, assertions, owner, limit_name="limit"):
    """Each input range-checked in its own dtype, then cast to int32, after `assertions`."""
    checked = {}
    for name, x in named.items():
        if limits[name] is not None:
            x = check_id_range(x, limits[name], name, owner, limit_name=limit_name)
        checked[name] = tf.cast(x, tf.int32) if _dtype_name(x) != "int32" else x
    assertions = [op for op in assertions if op is not None]
    if not assertions:
        return checked
    with tf.control_dependencies(assertions):
        return {name: tf.identity(x) for name, x in checked.items()}


def check_id_inputs(inputs, limits, owner, max_sequence_length=None, allow_empty_batch=False):
    """Validates and normalises a dict of `[batch, seq]` integer inputs of one shape.

    Args:
        inputs: what the model was called with.
        limits: ordered mapping input name -> exclusive upper bound of its values
            (`None`: only the shape is checked, the values are not).
        owner: the model's name, for messages.
        max_sequence_length: largest allowed `seq`, if bounded.
        allow_empty_batch: whether `[0, 0]` inputs (no sequences at all) pass;
            otherwise `seq` must be at least 1 even in an empty batch.

    Returns:
        A new dict holding exactly the names in `limits`, as int32 tensors
        that (in a graph) depend on every check. Other keys (e.g.
        `segment_ids` given to DistilBERT) are dropped, so one preprocessor's
        output can feed either architecture.

    Raises:
        ValueError: for a missing input, a non-integer dtype, a wrong rank,
            ragged or object data, inputs of different shapes, or a
            sequence length of 0 (see `allow_empty_batch`) or beyond
            `max_sequence_length`, when known.
        InvalidIdsError: eagerly, for values out of range.
        tf.errors.InvalidArgumentError: in a graph, when it runs, for values
            out of range or shapes that prove wrong.
    """
    check_input_keys(inputs, list(limits), owner)
    named = {name: _integer_matrix(inputs[name], name, owner) for name in limits}
    first = next(iter(named))
    assertions = [
        _sequence_length_check(
            named[first], first, owner, max_sequence_length, allow_empty_batch
        ),
        _shape_agreement(named, (0, 1), owner),
    ]
    return _checked_int32(named, limits, assertions, owner)


def check_position_inputs(inputs, names, ids, owner):
    """Validates `[batch, n]` positions into the sequences of the checked `[batch, seq]` `ids`.

    Each input in `names` must agree with `ids` on the batch size and hold
    values in `[0, seq)`; `seq` is checked when the graph runs if it is not
    known before. Returns {name: int32 tensor}, as `check_id_inputs` does.
    """
    check_input_keys(inputs, list(names), owner)
    named = {name: _integer_matrix(inputs[name], name, owner) for name in names}
    seq_len = ids.shape[1] if ids.shape[1] is not None else tf.shape(ids)[1]
    assertions = [
        _shape_agreement({"input_ids": ids, name: x}, (0,), owner) for name, x in named.items()
    ]
    limits = dict.fromkeys(names, seq_len)
    return _checked_int32(named, limits, assertions, owner, limit_name="sequence_length")


class IdInputsModel:
    """Mixin of the package's `keras.Model`s that are called on dicts of ids.

    - Lists in the input dict become arrays, and ragged or object-dtype data
      gets an error naming the input, before Keras reads them.
    - `predict` and `evaluate` build their step functions without XLA, even
      when compiled with `jit_compile=True` (or "auto" on GPU): XLA compiles
      the id checks' assertions to nothing (tf2xla: "Ignoring Assert
      operator") and clamps out-of-range gathers, so a compiled forward pass
      would answer for ids it should refuse. Training keeps XLA: its data
      comes from the package's own pipelines. `jit_compile` keeps its value.
    - `fit` on a `tf.data.Dataset` does not pass Keras's default
      `shuffle=True`, which Keras cannot apply to a dataset (it warns on every
      fit that it ignores it): a dataset is shuffled by whoever makes it.

    Put it before `keras.Model` in the bases.
    """

    def __call__(self, *args, **kwargs):
        if args:
            args = (dense_inputs(args[0], self.name), *args[1:])
        elif "inputs" in kwargs:
            kwargs["inputs"] = dense_inputs(kwargs["inputs"], self.name)
        return super().__call__(*args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)
        return super().fit(dense_inputs(x, self.name), *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        return super().evaluate(dense_inputs(x, self.name), *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        return super().predict(dense_inputs(x, self.name), *args, **kwargs)

    def make_predict_function(self, force=False):
        return self._make_without_xla(super().make_predict_function, force)

    def make_test_function(self, force=False):
        return self._make_without_xla(super().make_test_function, force)

    def _make_without_xla(self, make_function, force):
        jit_compile = self.jit_compile
        self.jit_compile = False
        try:
            return make_function(force)
        finally:
            self.jit_compile = jit_compile
