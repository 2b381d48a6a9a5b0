"""keras-hub BertBackbone / DistilBertBackbone -> our encoders: same weights, same outputs."""

import keras_hub
import numpy as np
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.convert import from_keras_hub
from keras_bert_kit.convert.keras_hub import load_keras_hub_weights
from keras_bert_kit.convert.weights import WeightAssignment, assign_weights
from tests.conftest import max_abs_diff, randomize_weights


SIZES = dict(
    vocabulary_size=1000,
    num_layers=2,
    num_heads=2,
    hidden_dim=64,
    intermediate_dim=128,
    max_sequence_length=64,
    dropout=0.0,
)
ATOL = 1e-5


def id_inputs(vocab_size, batch_size=4, seq_len=16, seed=1):
    """Random ids; rows 1-3 end in padding (mask 0), with junk ids under it."""
    rng = np.random.default_rng(seed)
    lengths = np.array([seq_len, 11, 5, 1])[:batch_size]
    padding_mask = (np.arange(seq_len)[None] < lengths[:, None]).astype("int32")
    input_ids = rng.integers(1, vocab_size, (batch_size, seq_len)).astype("int32")
    segment_ids = (np.arange(seq_len)[None] >= lengths[:, None] // 2).astype("int32")
    return input_ids, segment_ids * padding_mask, padding_mask


def test_bert_backbone_parity():
    backbone = keras_hub.models.BertBackbone(**SIZES)
    randomize_weights(backbone)
    encoder = from_keras_hub(backbone)

    assert isinstance(encoder, kbk.BertEncoder)
    assert encoder.config.hidden_activation == "gelu_approximate"
    assert encoder.config.layer_norm_epsilon == 1e-12
    assert encoder.config.type_vocab_size == 2

    input_ids, segment_ids, padding_mask = id_inputs(SIZES["vocabulary_size"])
    theirs = backbone(
        {"token_ids": input_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
    )
    ours = encoder(
        {"input_ids": input_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
    )
    # Padding positions match too: both let padding queries attend to real keys.
    assert max_abs_diff(ours["sequence_output"], theirs["sequence_output"]) <= ATOL
    assert max_abs_diff(ours["pooled_output"], theirs["pooled_output"]) <= ATOL


def test_distil_bert_backbone_parity():
    backbone = keras_hub.models.DistilBertBackbone(**SIZES)
    randomize_weights(backbone, seed=2)
    encoder = from_keras_hub(backbone)

    assert isinstance(encoder, kbk.DistilBertEncoder)
    # Keras' "gelu" defaults to approximate=False: the exact form.
    assert encoder.config.hidden_activation == "gelu"
    assert encoder.config.layer_norm_epsilon == 1e-12

    input_ids, _, padding_mask = id_inputs(SIZES["vocabulary_size"], seed=3)
    theirs = backbone({"token_ids": input_ids, "padding_mask": padding_mask})
    ours = encoder({"input_ids": input_ids, "padding_mask": padding_mask})
    assert max_abs_diff(ours["sequence_output"], theirs) <= ATOL
    assert max_abs_diff(ours["pooled_output"], np.asarray(theirs)[:, 0]) <= ATOL


def test_shape_mismatch_names_the_tensor_and_changes_nothing():
    backbone = keras_hub.models.BertBackbone(**SIZES)
    wrong = kbk.BertEncoder(
        kbk.BertConfig(
            vocab_size=500,
            hidden_size=64,
            num_layers=2,
            num_heads=2,
            intermediate_size=128,
            max_sequence_length=64,
        )
    )
    before = [np.array(w) for w in wrong.weights]
    with pytest.raises(ValueError) as info:
        load_keras_hub_weights(wrong, backbone)
    message = str(info.value)
    assert "token_embedding/embeddings" in message
    assert "(1000, 64)" in message and "(500, 64)" in message
    # Only the mismatched tensor is reported; the check ran before any assignment.
    assert message.count("shape mismatch") == 1
    for old, new in zip(before, wrong.weights):
        np.testing.assert_array_equal(old, np.array(new))


def test_layer_count_mismatch():
    backbone = keras_hub.models.DistilBertBackbone(**SIZES)
    config = kbk.DistilBertConfig(
        vocab_size=1000, hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128
    )
    with pytest.raises(ValueError, match="2 transformer layers"):
        load_keras_hub_weights(kbk.DistilBertEncoder(config), backbone)


def test_assign_weights_lists_every_unassigned_variable():
    config = kbk.BertConfig(vocab_size=50, hidden_size=8, num_layers=1, num_heads=2)
    encoder = kbk.BertEncoder(config)
    kernel = encoder.pooler.dense.kernel
    with pytest.raises(ValueError) as info:
        assign_weights(encoder, [WeightAssignment(kernel, np.zeros((8, 8)), "pooler/kernel")])
    message = str(info.value)
    unassigned = [w.path for w in encoder.weights if w is not kernel]
    assert f"{len(unassigned)} variable(s) would be left at their initial values" in message
    for path in unassigned:
        assert path in message
    assert "pooler/dense/kernel" not in message


def test_assign_weights_rejects_a_target_assigned_twice():
    config = kbk.DistilBertConfig(vocab_size=50, hidden_size=8, num_layers=1, num_heads=2)
    encoder = kbk.DistilBertEncoder(config)
    assignments = [(w, np.zeros(w.shape), w.path) for w in encoder.weights]
    beta = encoder.embeddings.layer_norm.beta
    assignments.append((beta, np.zeros(beta.shape), "again"))
    with pytest.raises(ValueError, match="assigned twice"):
        assign_weights(encoder, assignments)


# -- to_keras_hub ----------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["bert", "distilbert"])
def test_round_trip_through_keras_hub_is_exact(architecture):
    if architecture == "bert":
        config = kbk.BertConfig(
            vocab_size=1000, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
            max_sequence_length=64, type_vocab_size=3, hidden_activation="gelu_approximate",
            dropout_rate=0.0, attention_dropout_rate=0.0,
        )
        encoder = kbk.BertEncoder(config)
    else:
        config = kbk.DistilBertConfig(
            vocab_size=1000, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
            max_sequence_length=64, dropout_rate=0.0, attention_dropout_rate=0.0,
        )
        encoder = kbk.DistilBertEncoder(config)
    randomize_weights(encoder, seed=5)

    backbone = kbk.to_keras_hub(encoder)
    back = from_keras_hub(backbone)
    assert back.config == encoder.config
    for ours, theirs in zip(encoder.weights, back.weights):
        np.testing.assert_array_equal(np.array(ours), np.array(theirs))

    input_ids, segment_ids, padding_mask = id_inputs(1000, seed=6)
    inputs = {"token_ids": input_ids, "padding_mask": padding_mask}
    ours = {"input_ids": input_ids, "padding_mask": padding_mask}
    if architecture == "bert":
        inputs["segment_ids"] = ours["segment_ids"] = segment_ids
    theirs = backbone(inputs)
    theirs = theirs["sequence_output"] if architecture == "bert" else theirs
    assert max_abs_diff(encoder(ours)["sequence_output"], theirs) <= ATOL


def test_to_keras_hub_warns_about_a_fixed_activation_and_refuses_relu():
    config = kbk.BertConfig(vocab_size=100, hidden_size=16, num_layers=1, num_heads=2)
    with pytest.warns(UserWarning, match="always uses 'gelu_approximate'"):
        kbk.to_keras_hub(kbk.BertEncoder(config))
    with pytest.raises(ValueError, match="'relu'"):
        kbk.to_keras_hub(kbk.BertEncoder(config.replace(hidden_activation="relu")))
    with pytest.raises(ValueError, match="epsilon"):
        kbk.to_keras_hub(kbk.BertEncoder(config.replace(layer_norm_epsilon=1e-5)))
