import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from tests.conftest import encoder_inputs, random_inputs, tiny_bert_config


def test_output_shapes(architecture):
    config, encoder_class, _ = architecture
    encoder = encoder_class(config)
    outputs = encoder(encoder_inputs(random_inputs(config, batch_size=3, seq_len=12)))
    assert set(outputs) == {"sequence_output", "pooled_output", "hidden_states"}
    assert outputs["sequence_output"].shape == (3, 12, 32)
    assert outputs["pooled_output"].shape == (3, 32)
    assert len(outputs["hidden_states"]) == config.num_layers + 1
    assert all(h.shape == (3, 12, 32) for h in outputs["hidden_states"])
    np.testing.assert_array_equal(outputs["hidden_states"][-1], outputs["sequence_output"])


def test_attentions_on_request(architecture):
    config, encoder_class, _ = architecture
    encoder = encoder_class(config, output_attentions=True)
    inputs = random_inputs(config, batch_size=2, seq_len=10, lengths=[10, 6])
    attentions = encoder(encoder_inputs(inputs))["attentions"]
    assert len(attentions) == config.num_layers
    for probabilities in attentions:
        assert probabilities.shape == (2, config.num_heads, 10, 10)
        assert probabilities.dtype == tf.float32
        np.testing.assert_allclose(np.sum(probabilities, axis=-1), 1.0, atol=1e-5)
        # Nothing attends to padding keys.
        np.testing.assert_array_equal(probabilities[1, :, :, 6:], 0.0)


def test_distilbert_pooled_output_is_cls_state():
    config = kbk.DistilBertConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2)
    outputs = kbk.DistilBertEncoder(config)(encoder_inputs(random_inputs(config)))
    np.testing.assert_array_equal(outputs["pooled_output"], outputs["sequence_output"][:, 0])


def test_bert_pooled_output_is_tanh_dense_on_cls():
    config = tiny_bert_config()
    encoder = kbk.BertEncoder(config)
    outputs = encoder(encoder_inputs(random_inputs(config)))
    dense = encoder.pooler.dense
    expected = np.tanh(outputs["sequence_output"][:, 0] @ dense.kernel + dense.bias)
    np.testing.assert_allclose(outputs["pooled_output"], expected, atol=1e-6)


def test_padding_does_not_change_real_tokens(architecture):
    config, encoder_class, _ = architecture
    encoder = encoder_class(config)
    inputs = encoder_inputs(random_inputs(config, batch_size=2, seq_len=8, lengths=[8, 8]))
    padded = {k: np.pad(v, ((0, 0), (0, 5))) for k, v in inputs.items()}
    # Garbage ids under padding must not matter either.
    padded["input_ids"][:, 8:] = 7
    short_out = encoder(inputs)
    padded_out = encoder(padded)
    np.testing.assert_allclose(
        padded_out["sequence_output"][:, :8], short_out["sequence_output"], atol=1e-6
    )
    np.testing.assert_allclose(padded_out["pooled_output"], short_out["pooled_output"], atol=1e-6)


def test_dropout_only_in_training(architecture):
    config, encoder_class, _ = architecture
    encoder = encoder_class(config.replace(dropout_rate=0.3, attention_dropout_rate=0.3))
    inputs = encoder_inputs(random_inputs(config))
    first = encoder(inputs)["sequence_output"]
    np.testing.assert_array_equal(first, encoder(inputs)["sequence_output"])
    # predict runs a traced graph: same maths, float rounding may differ.
    np.testing.assert_allclose(
        first, encoder.predict(inputs, verbose=0)["sequence_output"], atol=1e-5
    )
    trained = encoder(inputs, training=True)["sequence_output"]
    assert np.abs(trained - first).max() > 1e-3


def test_dynamic_batch_and_sequence_length(architecture):
    config, encoder_class, _ = architecture
    encoder = encoder_class(config)
    forward = tf.function(lambda x: encoder(x)["sequence_output"], reduce_retracing=True)
    for batch_size, seq_len in [(1, 5), (4, 17), (2, config.max_sequence_length)]:
        inputs = encoder_inputs(random_inputs(config, batch_size=batch_size, seq_len=seq_len))
        assert forward(inputs).shape == (batch_size, seq_len, 32)


def test_xla_matches_eager(architecture):
    config, encoder_class, _ = architecture
    encoder = encoder_class(config)
    inputs = encoder_inputs(random_inputs(config))
    compiled = tf.function(lambda x: encoder(x)["sequence_output"], jit_compile=True)
    np.testing.assert_allclose(compiled(inputs), encoder(inputs)["sequence_output"], atol=1e-5)


def test_int64_and_bool_inputs_are_accepted():
    config = tiny_bert_config()
    encoder = kbk.BertEncoder(config)
    inputs = encoder_inputs(random_inputs(config))
    wide = {k: v.astype("int64") for k, v in inputs.items()}
    wide["padding_mask"] = inputs["padding_mask"].astype(bool)
    np.testing.assert_array_equal(
        encoder(wide)["sequence_output"], encoder(inputs)["sequence_output"]
    )


def test_distilbert_ignores_segment_ids():
    config = kbk.DistilBertConfig(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2)
    encoder = kbk.DistilBertEncoder(config)
    inputs = encoder_inputs(random_inputs(tiny_bert_config()))
    assert "segment_ids" in inputs
    without = {k: v for k, v in inputs.items() if k != "segment_ids"}
    np.testing.assert_array_equal(
        encoder(inputs)["sequence_output"], encoder(without)["sequence_output"]
    )


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(architecture, policy):
    config, encoder_class, pretrainer_class = architecture
    keras.mixed_precision.set_dtype_policy(policy)
    pretrainer = pretrainer_class(encoder_class(config, output_attentions=True))
    # One row entirely padding: the mask value must not overflow into NaN.
    inputs = random_inputs(config, batch_size=2, seq_len=10, lengths=[10, 4])
    inputs["padding_mask"][1] = 0
    outputs = pretrainer.encoder(encoder_inputs(inputs))
    compute_dtype = policy.split("_")[1]
    assert outputs["sequence_output"].dtype == compute_dtype
    assert all(v.dtype == "float32" for v in pretrainer.weights)
    for name in ("sequence_output", "pooled_output"):
        assert np.isfinite(np.asarray(outputs[name], "float32")).all()
    # Softmax is computed in float32.
    assert all(a.dtype == tf.float32 for a in outputs["attentions"])
    logits = pretrainer(inputs)["mlm_logits"]
    assert logits.dtype == tf.float32 and np.isfinite(logits).all()


def test_mixed_precision_close_to_float32():
    config = tiny_bert_config()
    reference = kbk.BertEncoder(config)
    inputs = encoder_inputs(random_inputs(config))
    expected = reference(inputs)["sequence_output"]
    mixed = kbk.BertEncoder(config, dtype="mixed_bfloat16")
    mixed.set_weights(reference.get_weights())
    actual = np.asarray(mixed(inputs)["sequence_output"], "float32")
    assert np.abs(actual - expected).max() < 0.1


def test_config_from_preset_name_and_wrong_type():
    assert kbk.BertEncoder("bert_tiny").config == kbk.BertConfig.from_preset("bert_tiny")
    with pytest.raises(ValueError, match="BertEncoder needs a BertConfig"):
        kbk.BertEncoder(kbk.DistilBertConfig())
    with pytest.raises(ValueError, match="Unknown DistilBertConfig preset 'bert_tiny'"):
        kbk.DistilBertEncoder("bert_tiny")


def test_token_embedding_matches_ids():
    config = tiny_bert_config(dropout_rate=0.0)
    encoder = kbk.BertEncoder(config)
    assert encoder.token_embedding.embeddings.shape == (config.vocab_size, config.hidden_size)
    assert encoder.input_names == ["input_ids", "segment_ids", "padding_mask"]
