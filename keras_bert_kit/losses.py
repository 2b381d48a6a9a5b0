"""Loss reductions that stay exact under `tf.distribute`."""

import keras
import tensorflow as tf


def global_weighted_mean(values, weights):
    """`sum(values * weights) / sum(weights)` over the global batch, as this replica's share.

    Under a multi-replica strategy the weights are summed over all replicas,
    so replicas that hold different amounts of real data (padding
    predictions, padding tokens) still train exactly as one device would:
    the replicas' returns add up to the global mean, which is what Keras'
    summed gradients expect. Zero total weight gives 0, not NaN.
    """
    values = keras.ops.convert_to_tensor(values)
    weights = keras.ops.cast(weights, values.dtype)
    total_weight = keras.ops.sum(weights)
    replica_context = tf.distribute.get_replica_context()
    if replica_context is not None and replica_context.num_replicas_in_sync > 1:
        total_weight = replica_context.all_reduce("SUM", total_weight)
    return tf.math.divide_no_nan(keras.ops.sum(values * weights), total_weight)


def unscaled(loss):
    """A replica's share of a global loss, back as the global value (for logging)."""
    return loss * tf.distribute.get_strategy().num_replicas_in_sync
