"""Activation functions by the names `EncoderConfig.hidden_activation` accepts."""

import keras


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


def get_activation(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; supported: {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]
