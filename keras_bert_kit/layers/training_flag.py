"""One way for layers to branch on `training`, whether it is a Python flag or a tensor.

Keras passes `training` as a Python bool (or None) from `fit` and `predict`,
but a caller may pass a boolean tensor, e.g. a symbolic flag of a
`tf.function`. `bool()` of a graph tensor fails, so such a flag picks the
branch with a graph conditional, as Keras' own layers do.
"""

import numpy as np
import tensorflow as tf


def by_training(training, in_training, at_inference):
    """`in_training()` when `training` is true, else `at_inference()`.

    A Python or numpy flag (None counts as False) picks statically, so the
    graph holds one branch; a tensor flag builds a `tf.cond` over both.
    """
    if training is None or isinstance(training, (bool, int, np.bool_, np.integer)):
        return in_training() if training else at_inference()
    return tf.cond(tf.cast(training, tf.bool), in_training, at_inference)
