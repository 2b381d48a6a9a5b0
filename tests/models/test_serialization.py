import inspect
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_bert_kit as kbk
from keras_bert_kit import layers as kbk_layers
from tests.conftest import (
    encoder_inputs,
    random_inputs,
    tiny_bert_config,
    tiny_distilbert_config,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LAYER_CASES = {
    kbk_layers.TransformerEmbeddings: dict(
        vocab_size=50, hidden_size=8, max_sequence_length=16, type_vocab_size=2,
        layer_norm_epsilon=1e-6, dropout_rate=0.2, initializer_range=0.05,
    ),
    kbk_layers.MultiHeadSelfAttention: dict(num_heads=2, dropout_rate=0.2, initializer_range=0.05),
    kbk_layers.TransformerBlock: dict(
        num_heads=2, intermediate_size=12, activation="gelu_approximate", dropout_rate=0.2,
        attention_dropout_rate=0.3, layer_norm_epsilon=1e-6, initializer_range=0.05,
    ),
    kbk_layers.CLSPooler: dict(initializer_range=0.05),
    kbk_layers.FusedDense: dict(units=5, activation="gelu"),
    kbk_layers.NextSentenceHead: dict(initializer_range=0.05),
}


@pytest.mark.parametrize("layer_class", list(LAYER_CASES), ids=lambda c: c.__name__)
def test_layer_config_mirrors_constructor(layer_class):
    kwargs = LAYER_CASES[layer_class]
    layer = layer_class(**kwargs, name="x")
    config = layer.get_config()
    parameters = set(inspect.signature(layer_class.__init__).parameters) - {"self", "kwargs"}
    assert parameters <= set(config)
    assert {k: config[k] for k in kwargs} == kwargs
    clone = layer_class.from_config(config)
    assert clone.get_config() == config
    registered = keras.saving.get_registered_name(layer_class)
    assert registered == f"keras_bert_kit>{layer_class.__name__}"


def test_masked_lm_head_config():
    embedding = keras.layers.Embedding(50, 8)
    head = kbk.MaskedLMHead(embedding, activation="relu", layer_norm_epsilon=1e-5, name="h")
    config = head.get_config()
    assert config["activation"] == "relu" and config["layer_norm_epsilon"] == 1e-5
    clone = kbk.MaskedLMHead.from_config(config)
    assert clone.token_embedding.input_dim == 50 and clone.get_config() == config


@pytest.mark.parametrize("cls", [kbk.BertEncoder, kbk.BertPretrainer], ids=lambda c: c.__name__)
def test_model_config_round_trip(cls):
    encoder = kbk.BertEncoder(tiny_bert_config(), output_attentions=True, name="enc")
    model = encoder if cls is kbk.BertEncoder else cls(encoder, name="pre")
    clone = cls.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert keras.saving.get_registered_name(cls) == f"keras_bert_kit>{cls.__name__}"


def _run_fresh(script):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_keras_files_load_in_fresh_process(tmp_path):
    # Both architectures in one fresh process: one TensorFlow import, not two.
    architectures = {
        "bert": (tiny_bert_config(), kbk.BertEncoder, kbk.BertPretrainer),
        "distilbert": (tiny_distilbert_config(), kbk.DistilBertEncoder, kbk.DistilBertPretrainer),
    }
    expected = {}
    for name, (config, encoder_class, pretrainer_class) in architectures.items():
        model = pretrainer_class(encoder_class(config))
        inputs = random_inputs(config)
        expected[name] = {k: np.asarray(v) for k, v in model(inputs).items()}
        np.savez(tmp_path / f"{name}_inputs.npz", **inputs)
        model.save(tmp_path / f"{name}.keras")

    _run_fresh(f"""
        import os, keras, numpy as np
        import keras_bert_kit  # registers the classes, as for any Keras extension
        for name in {list(architectures)!r}:
            path = os.path.join({str(tmp_path)!r}, name)
            model = keras.models.load_model(path + ".keras")
            assert type(model).__module__.startswith("keras_bert_kit"), type(model)
            head, encoder = model.masked_lm_head, model.encoder
            assert head.token_embedding.embeddings is encoder.token_embedding.embeddings
            inputs = dict(np.load(path + "_inputs.npz"))
            outputs = {{k: np.asarray(v) for k, v in model(inputs).items()}}
            np.savez(path + "_outputs.npz", **outputs)
    """)
    for name in architectures:
        actual = dict(np.load(tmp_path / f"{name}_outputs.npz"))
        assert set(actual) == set(expected[name])
        for key in expected[name]:
            np.testing.assert_allclose(actual[key], expected[name][key], atol=1e-6, rtol=0)


def test_tied_weights_survive_save_and_load(tmp_path):
    config = tiny_bert_config()
    model = kbk.BertPretrainer(kbk.BertEncoder(config))
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    embeddings = restored.encoder.token_embedding.embeddings
    assert restored.masked_lm_head.token_embedding.embeddings is embeddings
    # One variable, not two copies: a change shows up in the MLM logits.
    inputs = random_inputs(config)
    before = restored(inputs)["mlm_logits"]
    embeddings.assign(embeddings * 2.0)
    assert np.abs(restored(inputs)["mlm_logits"] - before).max() > 1e-3
    paths = [w.path for w in restored.weights]
    assert len(paths) == len(set(paths))


def test_weight_only_checkpoint(architecture, tmp_path):
    config, encoder_class, pretrainer_class = architecture
    model = pretrainer_class(encoder_class(config))
    inputs = random_inputs(config)
    expected = model(inputs)["mlm_logits"]
    model.save_weights(tmp_path / "pretrainer.weights.h5")
    model.encoder.save_weights(tmp_path / "encoder.weights.h5")

    fresh = pretrainer_class(encoder_class(config))
    assert np.abs(fresh(inputs)["mlm_logits"] - expected).max() > 1e-4
    fresh.load_weights(tmp_path / "pretrainer.weights.h5")
    np.testing.assert_allclose(fresh(inputs)["mlm_logits"], expected, atol=1e-6)

    # An encoder's weights move into a pretrainer built around a fresh encoder.
    encoder = encoder_class(config)
    encoder.load_weights(tmp_path / "encoder.weights.h5")
    np.testing.assert_allclose(
        encoder(encoder_inputs(inputs))["sequence_output"],
        model.encoder(encoder_inputs(inputs))["sequence_output"],
        atol=1e-6,
    )


def test_mixed_precision_policy_is_saved(tmp_path):
    encoder = kbk.BertEncoder(tiny_bert_config(), dtype="mixed_bfloat16")
    encoder.save(tmp_path / "encoder.keras")
    restored = keras.models.load_model(tmp_path / "encoder.keras")
    assert restored.dtype_policy.name == "mixed_bfloat16"
    inputs = encoder_inputs(random_inputs(tiny_bert_config()))
    assert restored(inputs)["sequence_output"].dtype == "bfloat16"
