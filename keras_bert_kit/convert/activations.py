"""Tells which of our activations another implementation's activation function is.

Serialized configs do not say: Model Garden stores both its default tanh GELU
and a user's exact-GELU lambda as "<lambda>". So the function is evaluated on a
grid and compared with each of ours. The two GELU flavours differ by up to
4.7e-4 (near |x| = 2.7), far above float32 rounding, so the answer is unambiguous.
"""

import keras
import numpy as np

from keras_bert_kit.configs import ACTIVATIONS
from keras_bert_kit.layers.activations import get_activation

# Covers the region where exact and tanh GELU differ most.
_PROBE = np.linspace(-6.0, 6.0, 241, dtype="float32")
_TOLERANCE = 1e-5


def detect_activation(fn, owner: str) -> str:
    """The name in `ACTIVATIONS` of the activation that `fn` computes.

    Args:
        fn: an activation callable (Keras 3, tf_keras or plain TensorFlow),
            applied to a float32 tensor.
        owner: what `fn` belongs to, for the error message.

    Raises:
        ValueError: when `fn` matches none of our activations; the caller can
            then name one explicitly.
    """
    x = keras.ops.convert_to_tensor(_PROBE)
    got = np.asarray(keras.ops.convert_to_numpy(fn(x)), dtype="float64")
    errors = {}
    for name in ACTIVATIONS:
        want = keras.ops.convert_to_numpy(get_activation(name)(x)).astype("float64")
        errors[name] = float(np.max(np.abs(got - want)))
    best = min(errors, key=errors.get)
    if errors[best] > _TOLERANCE:
        raise ValueError(
            f"The activation of {owner} ({fn!r}) matches none of {ACTIVATIONS} "
            f"(max abs difference from each: {errors}). Pass `hidden_activation` "
            "explicitly if you know which it should be."
        )
    return best
