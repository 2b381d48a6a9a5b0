import keras
import numpy as np
import pytest

from keras_bert_kit.layers import MultiHeadSelfAttention
from keras_bert_kit.layers.attention import MASK_VALUE


def _reference(layer, x, padding_mask):
    """Plain NumPy multi-head attention with separate Q, K, V slices."""
    hidden = x.shape[-1]
    heads, size = layer.num_heads, hidden // layer.num_heads
    kernel, bias = layer.qkv_dense.kernel.numpy(), layer.qkv_dense.bias.numpy()
    q, k, v = (x @ kernel[:, i * hidden : (i + 1) * hidden] + bias[i * hidden : (i + 1) * hidden]
               for i in range(3))

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, size).transpose(0, 2, 1, 3)

    scores = split(q) @ split(k).transpose(0, 1, 3, 2) / np.sqrt(size)
    scores = np.where(padding_mask[:, None, None, :] == 1, scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ split(v)).transpose(0, 2, 1, 3).reshape(x.shape)
    out = context @ layer.output_dense.kernel.numpy() + layer.output_dense.bias.numpy()
    return out, probs


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 12)).astype("float32")
    padding_mask = np.array([[1] * 7, [1] * 4 + [0] * 3], "int32")
    layer = MultiHeadSelfAttention(num_heads=3, dropout_rate=0.0)
    out, probs = layer(x, padding_mask)
    expected_out, expected_probs = _reference(layer, x, padding_mask)
    np.testing.assert_allclose(probs, expected_probs, atol=1e-6)
    np.testing.assert_allclose(out, expected_out, atol=1e-5)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_fully_padded_row_is_uniform_not_nan(policy):
    layer = MultiHeadSelfAttention(num_heads=2, dtype=policy)
    x = np.ones((1, 5, 8), "float32")
    out, probs = layer(x, np.zeros((1, 5), "int32"))
    np.testing.assert_allclose(probs, 0.2, atol=1e-6)
    assert np.isfinite(np.asarray(out, "float32")).all()


def test_mask_value_fits_half_precision():
    for dtype in ("float16", "bfloat16"):
        value = keras.ops.cast(MASK_VALUE, dtype)
        assert np.isfinite(float(value)) and float(value) < -1e4


def test_width_not_divisible_by_heads():
    with pytest.raises(ValueError, match="Input width 10 is not divisible by num_heads=4"):
        MultiHeadSelfAttention(num_heads=4)(np.ones((1, 3, 10), "float32"), np.ones((1, 3)))
