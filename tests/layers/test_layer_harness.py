"""Every registered layer of keras_bert_kit.layers through the shared harness."""

import numpy as np
import pytest

from keras_bert_kit import layers
from tests.harness import run_layer_test

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 5, 8)).astype("float32")
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], "int32")
IDS = RNG.integers(0, 50, (2, 5)).astype("int32")
SEGMENTS = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]], "int32")

CASES = {
    "FusedDense": (layers.FusedDense, dict(units=6, activation="gelu"), (X,), {}, (2, 5, 6)),
    "LayerNormalization": (layers.LayerNormalization, dict(epsilon=1e-12), (X,), {}, (2, 5, 8)),
    "Dropout": (layers.Dropout, dict(rate=0.1, seed=1), (X,), {}, (2, 5, 8)),
    "MeanPooler": (layers.MeanPooler, {}, (X, MASK), {}, (2, 8)),
    "CLSPooler": (layers.CLSPooler, dict(initializer_range=0.02), (X,), {}, (2, 8)),
    "NextSentenceHead": (layers.NextSentenceHead, {}, (X[:, 0],), {}, (2, 2)),
    "MultiHeadSelfAttention": (layers.MultiHeadSelfAttention, dict(num_heads=2), (X, MASK), {},
                               ((2, 5, 8), (2, 2, 5, 5))),
    "TransformerBlock": (layers.TransformerBlock, dict(num_heads=2, intermediate_size=16),
                         (X, MASK), {}, ((2, 5, 8), (2, 2, 5, 5))),
    "TransformerEmbeddings": (layers.TransformerEmbeddings, dict(
        vocab_size=50, hidden_size=8, max_sequence_length=16, type_vocab_size=2),
        (IDS, SEGMENTS), {}, (2, 5, 8)),
}

# Float outputs under mixed_bfloat16 other than the compute dtype: logits and
# attention probabilities stay float32 (softmax and losses want the range).
MIXED_OUTPUT_DTYPES = {
    "MultiHeadSelfAttention": ("bfloat16", "float32"),
    "TransformerBlock": ("bfloat16", "float32"),
    "NextSentenceHead": "float32",
}


def test_every_registered_layer_has_a_case():
    import inspect

    import keras

    registered = {
        name for name, obj in inspect.getmembers(layers, inspect.isclass)
        if issubclass(obj, keras.layers.Layer)
        and keras.saving.get_registered_name(obj).startswith("keras_bert_kit>")
    }
    assert registered - {"MaskedLMHead"} <= set(CASES), registered - set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_harness(name, tmp_path):
    cls, init_kwargs, args, call_kwargs, shape = CASES[name]
    run_layer_test(cls, init_kwargs, args, tmp_path, call_kwargs, expected_output_shape=shape,
                   mixed_output_dtype=MIXED_OUTPUT_DTYPES.get(name, "bfloat16"))


def test_masked_lm_head_harness(tmp_path):
    # The head ties to an embedding layer it is given: built here from a tiny table.
    import keras

    embedding = keras.layers.Embedding(50, 8)
    embedding.build((None,))
    run_layer_test(layers.MaskedLMHead, dict(token_embedding=embedding), (X,), tmp_path,
                   expected_output_shape=(2, 5, 50), run_save=False,
                   mixed_output_dtype="float32")
