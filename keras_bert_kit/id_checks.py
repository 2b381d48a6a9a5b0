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


def check_id_range(ids, limit, name, owner):
    """`ids` (an integer tensor or array), checked to lie in `[0, limit)`.

    Returns a tensor of the same dtype and values that, in a graph, runs only
    after the check has passed. The check is made in the ids' own dtype, so an
    int64 id of 2**32 + 5 is refused, not read as 5 after a cast.

    Raises:
        InvalidIdsError: eagerly, naming `owner`, `name`, the range and an
            offending value.
        tf.errors.InvalidArgumentError: in a graph, when it runs.
    """
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
    below_limit = high < limit if limit <= ids.dtype.max else tf.constant(True)
    in_range = tf.logical_or(empty, tf.logical_and(low >= 0, below_limit))
    check = tf.debugging.Assert(
        in_range,
        [f"{range_message(owner, name, limit)}; it holds values from", low, "to", high],
        name=f"check_{name}",
    )
    with tf.control_dependencies([check]):
        ids = tf.identity(ids)
    if limit <= np.iinfo(np.int32).max:
        # TFLite keeps this and drops the assertion; elsewhere it is the identity.
        ids = tf.gather(tf.range(limit, dtype=ids.dtype), ids)
    return ids
