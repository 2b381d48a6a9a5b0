import json

import pytest
import transformers

import keras_bert_kit as kbk
from keras_bert_kit.convert.hf_config import config_from_huggingface, config_to_huggingface
from keras_bert_kit.errors import CheckpointFormatError


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Configs only, no Keras: skip the conftest's per-test Keras reset (0.2 s a test)."""
    yield


EXPECTED_PRESETS = {
    "bert_tiny": (2, 128, 2),
    "bert_mini": (4, 256, 4),
    "bert_small": (4, 512, 8),
    "bert_medium": (8, 512, 8),
    "bert_base": (12, 768, 12),
    "bert_large": (24, 1024, 16),
    "distilbert_base": (6, 768, 12),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PRESETS))
def test_presets(name):
    config = kbk.config_from_preset(name)
    layers, hidden, heads = EXPECTED_PRESETS[name]
    assert (config.num_layers, config.hidden_size, config.num_heads) == (layers, hidden, heads)
    assert config.intermediate_size == 4 * hidden
    assert config.vocab_size == 30522
    assert config.max_sequence_length == 512
    expected_type = kbk.DistilBertConfig if name.startswith("distil") else kbk.BertConfig
    assert type(config) is expected_type


def test_preset_lookup_by_class():
    assert kbk.BertConfig.from_preset("bert_tiny").num_layers == 2
    assert kbk.BertConfig.from_preset("bert_tiny", dropout_rate=0.0).dropout_rate == 0.0
    with pytest.raises(ValueError, match="Unknown BertConfig preset 'distilbert_base'"):
        kbk.BertConfig.from_preset("distilbert_base")
    with pytest.raises(ValueError, match="Available"):
        kbk.config_from_preset("bert_huge")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hidden_size", 100, "divisible by `num_heads`"),
        ("num_layers", 0, r"`num_layers` must be an integer in \[1, 1024\]"),
        ("vocab_size", -5, r"`vocab_size` must be an integer in \[1, 16777216\]"),
        ("max_sequence_length", 2.5, r"`max_sequence_length` must be an integer in \[1, 1048576\]"),
        ("dropout_rate", 1.0, r"`dropout_rate` must be a number in \[0, 1\)"),
        ("hidden_activation", "swish", "`hidden_activation` must be one of"),
        ("layer_norm_epsilon", 0.0, "`layer_norm_epsilon` must be a positive finite number"),
        ("pad_token_id", 30522, r"`pad_token_id` must be an id in \[0, 30522\)"),
        ("type_vocab_size", 0, r"`type_vocab_size` must be an integer in \[1, 65536\]"),
        ("layer_norm_epsilon", float("inf"), "`layer_norm_epsilon` must be a positive finite"),
        ("layer_norm_epsilon", float("nan"), "`layer_norm_epsilon` must be a positive finite"),
        ("initializer_range", float("inf"), "`initializer_range` must be a positive finite"),
        ("initializer_range", float("nan"), "`initializer_range` must be a positive finite"),
        ("initializer_range", -0.02, "`initializer_range` must be a positive finite"),
        ("initializer_range", 0, "`initializer_range` must be a positive finite"),
        ("dropout_rate", float("nan"), r"`dropout_rate` must be a number in \[0, 1\)"),
        ("vocab_size", 2**27, r"`vocab_size` must be an integer in \[1, 16777216\] \(a bound"),
        ("num_layers", 100_000, r"`num_layers` must be an integer in \[1, 1024\]"),
        ("hidden_size", 2**17, r"`hidden_size` must be an integer in \[1, 65536\]"),
        ("intermediate_size", 2**19, r"`intermediate_size` must be an integer in \[1, 262144\]"),
        ("max_sequence_length", 2**21, r"`max_sequence_length` must be an integer in \[1, 1048576"),
        ("num_heads", True, r"`num_heads` must be an integer in \[1, 65536\]"),
        ("vocab_size", "30522", r"`vocab_size` must be an integer in \[1, 16777216\]"),
        ("pad_token_id", -1, "`pad_token_id` must be an id >= 0"),
        ("hidden_activation", ["gelu"], "`hidden_activation` must be a string; got an array of 1"),
        ("vocab_size", [0] * 10**6, "`vocab_size` must be an integer; got an array of 1000000 "),
        pytest.param("hidden_size", 10**5000, "`hidden_size` must be an integer; got an integer "
                     "of about 5001", id="hidden_size-5001-digits"),
    ],
)
def test_invalid_configs(field, value, message):
    with pytest.raises(ValueError, match=message):
        kbk.BertConfig(**{field: value})


def test_a_config_cannot_describe_an_absurdly_large_model():
    # Every size is within its bound, the whole is not: refused before anything is built.
    with pytest.raises(ValueError, match="parameters, more than the 8,589,934,592 allowed"):
        kbk.BertConfig(vocab_size=2**24, hidden_size=2**12, num_heads=16, num_layers=1)
    largest = kbk.BertConfig(vocab_size=250_002, hidden_size=2560, num_heads=40, num_layers=48,
                             max_sequence_length=8192)
    assert largest.parameter_count() < 2**33


@pytest.mark.parametrize("name", ["bert_tiny", "bert_base", "bert_large", "distilbert_base"])
def test_parameter_count_is_the_encoders(name):
    config = kbk.config_from_preset(name)
    expected = {"bert_tiny": 4_385_920, "bert_base": 109_482_240, "bert_large": 335_141_888,
                "distilbert_base": 66_362_880}
    assert config.parameter_count() == expected[name]


def test_from_json_refuses_what_is_not_a_config(tmp_path):
    path = tmp_path / "config.json"
    for text, fragment in [("[1]", "must be an object"), ('{"vocab_size": NaN}', "is NaN"),
                           ('{"a": ' * 100_000, "nested too deeply"),
                           ('{"layer_norm_epsilon": 1e400}', "'layer_norm_epsilon' at column")]:
        path.write_text(text)
        with pytest.raises(CheckpointFormatError, match=fragment):
            kbk.BertConfig.from_json(path)
    with pytest.raises(CheckpointFormatError, match="the BertConfig JSON text:.* is NaN or inf"):
        kbk.BertConfig.from_json('{"initializer_range": Infinity}')


def test_intermediate_size_defaults_to_four_times_hidden():
    config = kbk.BertConfig(hidden_size=64, num_heads=4)
    assert config.intermediate_size == 256
    assert config.replace(hidden_size=128).intermediate_size == 512
    pinned = kbk.BertConfig(hidden_size=64, num_heads=4, intermediate_size=100)
    assert pinned.replace(hidden_size=128).intermediate_size == 100


@pytest.mark.parametrize("cls", [kbk.BertConfig, kbk.DistilBertConfig])
def test_json_round_trip(cls, tmp_path):
    config = cls(hidden_size=64, num_heads=2, num_layers=3, dropout_rate=0.2)
    path = tmp_path / "config.json"
    config.to_json(path)
    assert cls.from_json(path) == config
    assert cls.from_json(config.to_json()) == config


def test_json_rejects_unknown_fields(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 64, "num_heads": 2, "colour": "blue"}))
    with pytest.raises(ValueError, match=r"Unknown BertConfig field\(s\): \['colour'\]"):
        kbk.BertConfig.from_json(path)


def test_from_hf_bert_config(tmp_path):
    hf = transformers.BertConfig(
        vocab_size=1000,
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=6,
        intermediate_size=200,
        max_position_embeddings=128,
        type_vocab_size=3,
        hidden_act="gelu_new",
        hidden_dropout_prob=0.05,
        attention_probs_dropout_prob=0.02,
        layer_norm_eps=1e-7,
    )
    hf.save_pretrained(tmp_path)
    config = kbk.BertConfig.from_hf_config(tmp_path)
    assert config == kbk.BertConfig(
        vocab_size=1000,
        hidden_size=96,
        num_layers=3,
        num_heads=6,
        intermediate_size=200,
        max_sequence_length=128,
        type_vocab_size=3,
        hidden_activation="gelu_approximate",
        dropout_rate=0.05,
        attention_dropout_rate=0.02,
        layer_norm_epsilon=1e-7,
    )


def test_from_hf_distilbert_config(tmp_path):
    hf = transformers.DistilBertConfig(
        vocab_size=1000, dim=64, n_layers=3, n_heads=4, hidden_dim=256, dropout=0.0
    )
    hf.save_pretrained(tmp_path)
    config = kbk.DistilBertConfig.from_hf_config(tmp_path / "config.json")
    assert (config.hidden_size, config.num_layers, config.num_heads) == (64, 3, 4)
    assert config.intermediate_size == 256 and config.dropout_rate == 0.0
    assert config.hidden_activation == "gelu"
    with pytest.raises(ValueError, match="Use DistilBertConfig.from_hf_config"):
        kbk.BertConfig.from_hf_config(tmp_path)


def test_from_hf_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No Hugging Face config"):
        kbk.BertConfig.from_hf_config(tmp_path)
    transformers.BertConfig(position_embedding_type="relative_key").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="position_embedding_type='relative_key'"):
        kbk.BertConfig.from_hf_config(tmp_path)


@pytest.mark.parametrize(
    "config",
    [
        kbk.BertConfig(vocab_size=900, hidden_size=64, num_layers=3, num_heads=4,
                       intermediate_size=100, hidden_activation="gelu_approximate",
                       type_vocab_size=3, layer_norm_epsilon=1e-6, pad_token_id=5),
        kbk.DistilBertConfig(vocab_size=900, hidden_size=64, num_layers=3, num_heads=4,
                             hidden_activation="relu", dropout_rate=0.0),
    ],
)
def test_hf_config_table_reads_both_ways(config, tmp_path):
    # One field table per architecture: what export writes, import reads back.
    hf = config_to_huggingface(config)
    (tmp_path / "config.json").write_text(json.dumps(hf))
    assert config_from_huggingface(tmp_path) == config
    assert type(config).from_hf_config(tmp_path) == config


def test_hf_config_refuses_what_hf_cannot_express():
    with pytest.raises(ValueError, match="fixes `layer_norm_epsilon` at 1e-12"):
        config_to_huggingface(kbk.DistilBertConfig(layer_norm_epsilon=1e-5))
