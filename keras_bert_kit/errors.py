"""The package's own error types for untrusted input.

- `CheckpointFormatError`: a file of a model directory (weights, `config.json`,
  a shard index) is malformed, truncated, oversized, or holds something other
  than what its format allows. A `ValueError`, so callers catching that keep
  working.
- `InvalidIdsError`: integer ids (token ids, segment ids, a padding mask,
  positions) outside their valid range, found eagerly. It is both a
  `ValueError` and TensorFlow's `InvalidArgumentError`, the type the same check
  raises inside a graph, a SavedModel or TF Serving (which answers
  INVALID_ARGUMENT): one `except` catches both.
"""

import tensorflow as tf


class CheckpointFormatError(ValueError):
    """A model file is malformed, truncated, oversized, or holds something it may not."""


class InvalidIdsError(tf.errors.InvalidArgumentError, ValueError):
    """Ids outside their valid range (raised eagerly; graphs raise `InvalidArgumentError`)."""

    def __init__(self, *args):
        # Raised with the message alone; Keras re-raises an `OpError` from a
        # layer's call, with context added, as `type(e)(node_def, op, message,
        # error_code)`.
        node_def, op, message = (None, None, *args) if len(args) == 1 else args[:3]
        super().__init__(node_def, op, message)

    def __reduce__(self):
        return type(self), (self.message,)
