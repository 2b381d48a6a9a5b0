"""Model Garden BertEncoderV2 (tf_keras) -> our BertEncoder: same weights, same outputs."""

import numpy as np
import pytest
import tf_keras
from official.nlp.modeling import networks

import keras_bert_kit as kbk
from keras_bert_kit.convert import from_model_garden
from keras_bert_kit.convert.model_garden import load_model_garden_weights
from tests.conftest import max_abs_diff, randomize_weights


SIZES = dict(
    vocab_size=1000,
    hidden_size=64,
    num_layers=2,
    num_attention_heads=2,
    inner_dim=128,
    max_sequence_length=64,
    output_dropout=0.0,
    attention_dropout=0.0,
)
# Model Garden's default type_vocab_size is 16 (not BERT's 2); keep it, so the
# config mapping is exercised.
TYPE_VOCAB_SIZE = 16
ATOL = 1e-5


def exact_gelu(x):
    return tf_keras.activations.gelu(x, approximate=False)


def model_garden_encoder(version="v2", **overrides):
    """A tiny Model Garden encoder, built, with every variable randomised."""
    kwargs = dict(SIZES, type_vocab_size=TYPE_VOCAB_SIZE, **overrides)
    if version == "v2":
        encoder = networks.BertEncoderV2(**kwargs)
        ids = np.zeros((1, 2), "int32")
        encoder(dict(input_word_ids=ids, input_mask=ids + 1, input_type_ids=ids))
    else:
        encoder = networks.BertEncoder(dict_outputs=True, **kwargs)
    randomize_weights(encoder)
    return encoder


def id_inputs(batch_size=4, seq_len=16, seed=1):
    """Random ids and segments; rows 1-3 end in padding (mask 0), junk ids under it."""
    rng = np.random.default_rng(seed)
    lengths = np.array([seq_len, 11, 5, 1])[:batch_size]
    padding_mask = (np.arange(seq_len)[None] < lengths[:, None]).astype("int32")
    input_ids = rng.integers(1, SIZES["vocab_size"], (batch_size, seq_len)).astype("int32")
    segment_ids = rng.integers(0, TYPE_VOCAB_SIZE, (batch_size, seq_len)).astype("int32")
    return input_ids, segment_ids, padding_mask


def outputs_of_both(mg_encoder, encoder):
    input_ids, segment_ids, padding_mask = id_inputs()
    theirs = mg_encoder(
        dict(input_word_ids=input_ids, input_type_ids=segment_ids, input_mask=padding_mask)
    )
    ours = encoder(
        {"input_ids": input_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
    )
    return ours, theirs


@pytest.mark.parametrize(
    "version, overrides, activation",
    [
        ("v2", {}, "gelu_approximate"),  # Model Garden's default inner activation.
        ("v2", {"inner_activation": exact_gelu}, "gelu"),
        ("v1", {}, "gelu_approximate"),  # The older functional BertEncoder.
    ],
    ids=["v2-default-gelu", "v2-exact-gelu", "v1-default-gelu"],
)
def test_parity(version, overrides, activation):
    mg_encoder = model_garden_encoder(version, **overrides)
    encoder = from_model_garden(mg_encoder)

    assert encoder.config.hidden_activation == activation
    assert encoder.config.layer_norm_epsilon == 1e-12
    assert encoder.config.type_vocab_size == TYPE_VOCAB_SIZE

    ours, theirs = outputs_of_both(mg_encoder, encoder)
    # All positions, padding included: both let padding queries attend to real keys.
    assert max_abs_diff(ours["sequence_output"], theirs["sequence_output"]) <= ATOL
    assert max_abs_diff(ours["pooled_output"], theirs["pooled_output"]) <= ATOL


def test_wrong_gelu_flavour_is_visible():
    """The tolerance is tight enough to tell the GELU flavours apart."""
    mg_encoder = model_garden_encoder()
    encoder = from_model_garden(mg_encoder, hidden_activation="gelu")
    ours, theirs = outputs_of_both(mg_encoder, encoder)
    assert max_abs_diff(ours["sequence_output"], theirs["sequence_output"]) > 10 * ATOL


def test_unbuilt_encoder_is_built_and_converted():
    mg_encoder = networks.BertEncoderV2(type_vocab_size=TYPE_VOCAB_SIZE, **SIZES)
    assert not mg_encoder.weights
    encoder = from_model_garden(mg_encoder)
    ours, theirs = outputs_of_both(mg_encoder, encoder)
    assert max_abs_diff(ours["sequence_output"], theirs["sequence_output"]) <= ATOL


def test_shape_mismatch_names_the_tensor():
    mg_encoder = model_garden_encoder()
    config = kbk.BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        intermediate_size=128,
        max_sequence_length=64,
        type_vocab_size=2,
    )
    with pytest.raises(ValueError) as info:
        load_model_garden_weights(kbk.BertEncoder(config), mg_encoder)
    message = str(info.value)
    assert "type_embeddings/embeddings" in message
    assert f"({TYPE_VOCAB_SIZE}, 64)" in message and "(2, 64)" in message


def test_unsupported_activation_asks_for_hidden_activation():
    mg_encoder = model_garden_encoder(inner_activation="swish")
    with pytest.raises(ValueError, match="hidden_activation"):
        from_model_garden(mg_encoder)


def test_factorized_embeddings_are_rejected():
    mg_encoder = networks.BertEncoderV2(type_vocab_size=2, embedding_width=32, **SIZES)
    with pytest.raises(ValueError, match="embedding_width=32"):
        from_model_garden(mg_encoder)


# -- TF2 checkpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["encoder", "pretrainer/encoder"])
def test_tf2_checkpoint_sizes_are_inferred_and_weights_load(tmp_path, layout):
    import tensorflow as tf

    mg_encoder = model_garden_encoder()
    root = mg_encoder
    for part in reversed(layout.split("/")):
        root = tf.train.Checkpoint(**{part: root})
    root.write(str(tmp_path / "ckpt"))

    encoder = from_model_garden(str(tmp_path / "ckpt"))
    assert encoder.config.num_heads == SIZES["num_attention_heads"]
    assert encoder.config.type_vocab_size == TYPE_VOCAB_SIZE
    assert encoder.config.intermediate_size == SIZES["inner_dim"]
    # A checkpoint does not record the activation: Model Garden's default.
    assert encoder.config.hidden_activation == "gelu_approximate"
    ours, theirs = outputs_of_both(mg_encoder, encoder)
    assert max_abs_diff(ours["sequence_output"], theirs["sequence_output"]) <= ATOL
    assert max_abs_diff(ours["pooled_output"], theirs["pooled_output"]) <= ATOL


def test_tf2_checkpoint_errors(tmp_path):
    import tensorflow as tf

    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        from_model_garden(str(tmp_path))
    tf.train.Checkpoint(something=tf.Variable([1.0])).write(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="expected one BertEncoderV2 in the checkpoint"):
        from_model_garden(str(tmp_path / "other"))
