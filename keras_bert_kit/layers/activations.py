"""Activation functions by the names `EncoderConfig.hidden_activation` accepts."""

import keras

from keras_bert_kit.layers import training_kernels


def gelu(x):
    """Exact GELU, x * Phi(x) with the erf form: original BERT and Hugging Face."""
    return keras.activations.gelu(x, approximate=False)


def gelu_approximate(x):
    """tanh-approximated GELU: keras-hub's BertBackbone, Model Garden, HF `gelu_new`."""
    return keras.activations.gelu(x, approximate=True)


_ACTIVATIONS = {
    "gelu": gelu,
    "gelu_approximate": gelu_approximate,
    "relu": keras.activations.relu,
    "tanh": keras.activations.tanh,
}


# The same functions as fused XLA kernels with hand-written gradients, for
# training steps outside XLA (see `training_kernels`).
_TRAINING_KERNELS = {"gelu": training_kernels.gelu}


def get_activation(name, training=False):
    """The activation called `name`; with `training`, its training kernel where one exists."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; supported: {sorted(_ACTIVATIONS)}.")
    if training:
        return _TRAINING_KERNELS.get(name, _ACTIVATIONS[name])
    return _ACTIVATIONS[name]
