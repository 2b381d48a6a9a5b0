"""Range checks on integer ids that hold eagerly, in graphs, SavedModels and TFLite.

An id outside its table is never an error TensorFlow reports reliably: a
gather on GPU returns zeros for it, XLA clamps it, and a negative index
counts from the end in numpy-style slicing. So ids are checked before use:

- eagerly, on the values, raising `InvalidIdsError`;
- in a graph, with an assertion op the ids then depend on, which raises
  `InvalidArgumentError` naming the input and the range (what TF Serving
  answers as INVALID_ARGUMENT);
- in TFLite, which drops assertion ops, through a gather of the ids from the
  identity table `[0, limit)`: TFLite's GATHER refuses an index outside it.

XLA compiles assertion ops to nothing (tf2xla's Assert kernel is a no-op) and
cannot raise at run time; see `README.md`, "Loading untrusted checkpoints",
for what that means for `jit_compile=True`.
"""

import numpy as np
import tensorflow as tf

from keras_bert_kit.errors import InvalidIdsError


def range_message(owner, name, limit):
    return f"{owner}: `{name}` must hold values in [0, {limit})"


# The dtypes TensorFlow's (and TFLite's) gather takes as indices.
GATHER_INDEX_DTYPES = (tf.int32, tf.int64)


def check_id_range(ids, limit, name, owner, limit_name="limit"):
    """`ids` (an integer tensor or array), checked to lie in `[0, limit)`.

    Returns a tensor of the same dtype and values that, in a graph, runs only
    after the check has passed. The check is made in the ids' own dtype, so an
    int64 id of 2**32 + 5 is refused, not read as 5 after a cast.

    Args:
        ids: integer ids, of any shape and integer dtype.
        limit: the exclusive upper bound: a Python int, or (for a bound known
            only when the graph runs, such as a sequence length) a scalar
            integer tensor, named `limit_name` in messages.
        name, owner: the input and the model (or function), for messages.

    Raises:
        InvalidIdsError: eagerly, naming `owner`, `name`, the range and an
            offending value.
        tf.errors.InvalidArgumentError: in a graph, when it runs.
    """
    if not isinstance(limit, tf.Tensor) or tf.executing_eagerly():
        limit = int(limit)
    if isinstance(ids, np.ndarray) or (tf.executing_eagerly() and hasattr(ids, "numpy")):
        values = np.asarray(ids)
        if values.size:
            low, high = values.min(), values.max()
            if low < 0 or high >= limit:
                bad = int(low) if low < 0 else int(high)
                raise InvalidIdsError(
                    f"{range_message(owner, name, limit)}; it holds {bad}."
                )
        return tf.convert_to_tensor(ids)
    ids = tf.convert_to_tensor(ids)
    flat = tf.reshape(ids, [-1])
    empty = tf.equal(tf.size(flat), 0)
    low = tf.reduce_min(flat)
    high = tf.reduce_max(flat)
    if isinstance(limit, int):
        below_limit = high < limit if limit <= ids.dtype.max else tf.constant(True)
        message = f"{range_message(owner, name, limit)}; it holds values from"
    else:
        # Compared in a dtype holding every value of both.
        wide = tf.uint64 if ids.dtype.is_unsigned else tf.int64
        below_limit = tf.cast(high, wide) < tf.cast(limit, wide)
        message = [f"{range_message(owner, name, limit_name)}, {limit_name} =", limit,
                   "; it holds values from"]  # fmt: skip
    in_range = tf.logical_or(empty, tf.logical_and(low >= 0, below_limit))
    check = tf.debugging.Assert(
        in_range,
        [*tf.nest.flatten(message), low, "to", high],
        name=f"check_{name}",
    )
    with tf.control_dependencies([check]):
        ids = tf.identity(ids)
    if ids.dtype in GATHER_INDEX_DTYPES and (
        not isinstance(limit, int) or limit <= np.iinfo(np.int32).max
    ):
        # TFLite keeps this and drops the assertion; elsewhere it is the identity.
        ids = tf.gather(tf.range(tf.cast(limit, ids.dtype)), ids)
    return ids
