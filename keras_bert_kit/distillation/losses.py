"""Distillation losses between a teacher's and a student's outputs.

Each is averaged over the real items of the global batch (examples, masked
predictions or tokens), never over padding, and returns this replica's
share of that mean (`keras_bert_kit.losses.global_weighted_mean`). Inputs
are cast to float32, so mixed-precision models compare at full precision.
"""

import keras
import tensorflow as tf

from keras_bert_kit.losses import global_weighted_mean


def _float32(*tensors):
    return [keras.ops.cast(t, "float32") for t in tensors]


def soft_target_loss(teacher_logits, student_logits, temperature, weights):
    """KL(teacher || student) of the temperature-softened distributions, times T².

    Hinton et al. (2015): the T² factor keeps the gradients' scale when T
    changes, so the weight of this loss against the hard loss need not.

    Args:
        teacher_logits, student_logits: `[..., classes]`.
        temperature: T > 0.
        weights: `teacher_logits.shape[:-1]`; 0 drops an item (padding).
    """
    teacher_logits, student_logits = _float32(teacher_logits, student_logits)
    teacher_log_probs = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    kl = keras.ops.sum(
        keras.ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1
    )
    return global_weighted_mean(kl, weights) * (temperature**2)


def hidden_cosine_loss(teacher_states, student_states, padding_mask):
    """1 - cos(teacher state, student state), averaged over real tokens (DistilBERT's L_cos)."""
    teacher_states, student_states = _float32(teacher_states, student_states)
    cosine = keras.ops.sum(
        tf.math.l2_normalize(teacher_states, axis=-1)
        * tf.math.l2_normalize(student_states, axis=-1),
        axis=-1,
    )
    return global_weighted_mean(1.0 - cosine, padding_mask)


def hidden_mse_loss(teacher_states, student_states, padding_mask):
    """Mean squared difference of hidden states at real tokens (TinyBERT's hidden loss)."""
    teacher_states, student_states = _float32(teacher_states, student_states)
    squared = keras.ops.mean(keras.ops.square(teacher_states - student_states), axis=-1)
    return global_weighted_mean(squared, padding_mask)


def attention_kl_loss(teacher_probs, student_probs, padding_mask):
    """KL(teacher || student) of attention distributions (MiniLM's attention transfer).

    Args:
        teacher_probs, student_probs: `[batch, heads, seq, seq]` probabilities
            (0 at padding keys).
        padding_mask: `[batch, seq]`; averaged over heads and real queries.
    """
    teacher_probs, student_probs = _float32(teacher_probs, student_probs)
    # xlogy(0, .) is 0: padding keys, where both distributions are exactly
    # 0, add nothing (and no NaN gradient). A real key whose student
    # probability underflowed to 0 gives a large finite term, not inf.
    student_probs = keras.ops.maximum(student_probs, 1e-30)
    kl = keras.ops.sum(
        tf.math.xlogy(teacher_probs, teacher_probs) - tf.math.xlogy(teacher_probs, student_probs),
        axis=-1,
    )
    heads = keras.ops.shape(kl)[1]
    query_weights = keras.ops.repeat(keras.ops.expand_dims(padding_mask, 1), heads, axis=1)
    return global_weighted_mean(kl, query_weights)
