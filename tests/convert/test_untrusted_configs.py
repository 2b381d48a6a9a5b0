"""Crafted config.json / tokenizer_config.json files, config-vs-weights mismatches, and
to_huggingface's all-or-nothing writes (issue 17, items 5, 6, 7 and 12).

Cases that could allocate gigabytes or hang on a defective reader run in a
capped child process (tests.isolation); the rest, which at worst raise the
wrong exception type, run here.
"""

import json
import os
import warnings

import numpy as np
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.convert import tensor_files
from keras_bert_kit.convert.hf_config import config_from_huggingface
from keras_bert_kit.errors import CheckpointFormatError
from tests.conftest import tiny_bert_config, tiny_distilbert_config
from tests.isolation import assert_raises, run_cases


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Tiny models are only built and exported here: skip the per-test Keras reset (0.2 s)."""
    yield


def _export(model, path, tokenizer=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no tokenizer: a warning we do not test here
        return kbk.to_huggingface(model, path, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A tiny BertModel directory (vocab 300, hidden 32, 2 layers, intermediate 64)."""
    return _export(kbk.BertEncoder(tiny_bert_config()), tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def distilbert_dir(tmp_path_factory):
    return _export(kbk.DistilBertEncoder(tiny_distilbert_config()),
                   tmp_path_factory.mktemp("distilbert"))


def _config_text(directory):
    with open(os.path.join(directory, "config.json")) as f:
        return f.read()


def _variant(source, target, text=None, **changes):
    """A copy of the model directory `source` at `target`, config.json changed or replaced."""
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(source):
        with open(os.path.join(source, name), "rb") as f:
            data = f.read()
        with open(os.path.join(target, name), "wb") as f:
            f.write(data)
    if text is None:
        config = {**json.loads(_config_text(source)), **changes}
        text = json.dumps(config)
    with open(os.path.join(target, "config.json"), "w") as f:
        f.write(text)
    return str(target)


def _replace_value(text, key, raw):
    """config.json text with `key`'s value written as the raw JSON text `raw`."""
    config = json.loads(text)
    config[key] = "@@RAW@@"
    return json.dumps(config).replace('"@@RAW@@"', raw)


# -- item 5: malformed values are CheckpointFormatError naming file and key -----------------

MALFORMED = {
    # name: (key, raw JSON value)
    "vocab_size string": ("vocab_size", '"x"'),
    "vocab_size array": ("vocab_size", "[1]"),
    "vocab_size float": ("vocab_size", "1.5"),
    "vocab_size true": ("vocab_size", "true"),
    "vocab_size null": ("vocab_size", "null"),
    "vocab_size object": ("vocab_size", '{"a": 1}'),
    "hidden_size 5000 digits": ("hidden_size", "7" * 5000),
    "num_hidden_layers 4000 digits": ("num_hidden_layers", "9" * 4000),
    "layer_norm_eps Infinity": ("layer_norm_eps", "Infinity"),
    "layer_norm_eps NaN": ("layer_norm_eps", "NaN"),
    "layer_norm_eps 1e400": ("layer_norm_eps", "1e400"),
    "layer_norm_eps zero": ("layer_norm_eps", "0"),
    "initializer_range Infinity": ("initializer_range", "Infinity"),
    "initializer_range -Infinity": ("initializer_range", "-Infinity"),
    "initializer_range negative": ("initializer_range", "-0.02"),
    "hidden_dropout_prob NaN": ("hidden_dropout_prob", "NaN"),
    "hidden_act array": ("hidden_act", '["gelu"]'),
    "hidden_act object": ("hidden_act", '{"gelu": 1}'),
    "pad_token_id string": ("pad_token_id", '"0"'),
    "position_embedding_type array": ("position_embedding_type", '["absolute"]'),
    "model_type array": ("model_type", '["bert"]'),
    "type_vocab_size huge": ("type_vocab_size", str(2**40)),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_config_value_is_a_format_error_naming_file_and_key(name, bert_dir, tmp_path):
    key, raw = MALFORMED[name]
    path = tmp_path / "config.json"
    path.write_text(_replace_value(_config_text(bert_dir), key, raw))
    with pytest.raises(CheckpointFormatError) as raised:
        config_from_huggingface(path)
    message = str(raised.value)
    assert str(path) in message and key in message.replace(str(path), ""), message
    assert "\n" not in message and len(message) < 400, message


@pytest.mark.parametrize("text, fragment", [
    ("[1, 2]", "must hold a JSON object"),
    ('"config"', "must hold a JSON object"),
    ("", "invalid JSON"),
    ('{"vocab_size": 1,}', "invalid JSON"),
    (b'{"model_type": "\xff"}', "not valid UTF-8"),
])
def test_config_that_is_not_a_json_object_is_a_format_error(text, fragment, tmp_path):
    path = tmp_path / "config.json"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    with pytest.raises(CheckpointFormatError, match=fragment):
        config_from_huggingface(path)


def test_architectures_of_the_wrong_type_are_a_format_error(bert_dir, tmp_path):
    for value in (5, "BertModel", [["BertModel"]], {"BertModel": 1}):
        directory = _variant(bert_dir, tmp_path / "model", architectures=value)
        with pytest.raises(CheckpointFormatError, match="architectures must be an array"):
            kbk.from_huggingface(directory)


def test_oversized_config_is_refused_unread(bert_dir, tmp_path):
    padded = _config_text(bert_dir).rstrip()[:-1] + " " * (17 * 2**20) + "}"
    directory = _variant(bert_dir, tmp_path / "model", text=padded)
    with pytest.raises(CheckpointFormatError, match="larger than 16777216 bytes"):
        kbk.from_huggingface(directory)


def test_tokenizer_settings_are_type_checked(bert_dir, tmp_path):
    tokenizer = kbk.BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    directory = _export(kbk.BertEncoder(tiny_bert_config()), tmp_path / "model", tokenizer)
    settings_path = os.path.join(directory, "tokenizer_config.json")
    settings = json.loads(open(settings_path).read())
    for key, value in [("do_lower_case", "false"), ("do_lower_case", 0),
                       ("strip_accents", 1), ("strip_accents", "yes")]:
        with open(settings_path, "w") as f:
            json.dump({**settings, key: value}, f)
        with pytest.raises(CheckpointFormatError, match=f"{key} must be"):
            kbk.preprocessor_from_huggingface(directory)
    with open(settings_path, "w") as f:
        json.dump(settings, f)
    config = json.loads(_config_text(directory))
    for value in ("512", -1, 2**40, 1.5, None):
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump({**config, "max_position_embeddings": value}, f)
        with pytest.raises(CheckpointFormatError, match="max_position_embeddings"):
            kbk.preprocessor_from_huggingface(directory)


# -- item 6: the config is compared with the tensors before any model is built -----------

_SETUP = """
import os, time
import keras_bert_kit as kbk
from keras_bert_kit.convert.hf_config import config_from_huggingface
"""


def test_huge_or_mismatched_configs_fail_fast_without_building(bert_dir, distilbert_dir,
                                                               tmp_path):
    nested = "[" * 100_000 + "]" * 100_000
    variants = {
        "vocab 2**27": (bert_dir, dict(vocab_size=2**27)),
        "vocab 2**20": (bert_dir, dict(vocab_size=2**20)),
        "layers 100000": (bert_dir, dict(num_hidden_layers=100_000)),
        "layers 600": (bert_dir, dict(num_hidden_layers=600)),
        "layers 1": (bert_dir, dict(num_hidden_layers=1)),
        "hidden 4096": (bert_dir, dict(hidden_size=4096, num_attention_heads=4)),
        "intermediate": (bert_dir, dict(intermediate_size=200_000)),
        "positions": (bert_dir, dict(max_position_embeddings=1_000_000)),
        "segments": (bert_dir, dict(type_vocab_size=60_000)),
        "distil layers": (distilbert_dir, dict(n_layers=900)),
        "distil hidden_dim": (distilbert_dir, dict(hidden_dim=100_000)),
        "nested brackets": (bert_dir, nested),
        "nested value": (bert_dir, _replace_value(_config_text(bert_dir), "vocab_size", nested)),
        # Refused by comparing names, before a 2**24 x 32 embedding table exists.
        "no embeddings": (bert_dir, dict(vocab_size=2**24 - 1)),
    }
    directories = {}
    for i, (name, (source, change)) in enumerate(variants.items()):
        target = tmp_path / f"m{i}"
        if isinstance(change, str):
            directories[name] = _variant(source, target, text=change)
        else:
            directories[name] = _variant(source, target, **change)
    weights = os.path.join(directories["no embeddings"], "model.safetensors")
    state = tensor_files.read_safetensors(weights)
    del state["embeddings.word_embeddings.weight"]
    tensor_files.write_safetensors(state, weights)
    outcomes = run_cases(
        _SETUP,
        {name: f"kbk.from_huggingface({path!r})" for name, path in directories.items()},
        memory_mb=1024, timeout=90,
    )
    expected = {
        "vocab 2**27": ["vocab_size", "134217728"],
        "vocab 2**20": ["vocab_size=1048576", "embeddings.word_embeddings.weight",
                        "(300, 32)"],
        "layers 100000": ["num_hidden_layers", "100000"],
        "layers 600": ["num_hidden_layers=600", "layers 0..1"],
        "layers 1": [],  # fewer layers than stored: loads, warning of unused tensors
        "hidden 4096": ["hidden_size=4096", "(300, 32)"],
        "intermediate": ["intermediate_size=200000", "intermediate.dense.weight", "(64, 32)"],
        "positions": ["max_position_embeddings=1000000", "(64, 32)"],
        "segments": ["type_vocab_size=60000", "token_type_embeddings", "(2, 32)"],
        "distil layers": ["n_layers=900", "layers 0..1"],
        "distil hidden_dim": ["hidden_dim=100000", "ffn.lin1.weight"],
        "nested brackets": ["nested too deeply"],
        "nested value": ["nested too deeply"],
        "no embeddings": ["lacks 1 tensor", "embeddings.word_embeddings.weight"],
    }
    for name, fragments in expected.items():
        outcome = outcomes[name]
        if not fragments:
            assert outcome.status == "ok", outcome
            continue
        assert_raises(outcome, "CheckpointFormatError", directories[name], *fragments)
        assert "\n" not in outcome.message, outcome.message
        assert outcome.seconds < 1.0, outcome


def test_shape_mismatch_names_config_key_value_and_shape_in_one_line(bert_dir, tmp_path):
    directory = _variant(bert_dir, tmp_path / "model")
    state = tensor_files.read_safetensors(os.path.join(directory, "model.safetensors"))
    state["encoder.layer.1.output.dense.weight"] = np.zeros((32, 65), "float32")
    tensor_files.write_safetensors(state, os.path.join(directory, "model.safetensors"))
    with pytest.raises(CheckpointFormatError) as raised:
        kbk.from_huggingface(directory)
    message = str(raised.value)
    assert "intermediate_size=64" in message and "encoder.layer.1.output.dense.weight" in message
    assert "(32, 65)" in message and "(32, 64)" in message and "\n" not in message


# -- item 7: to_huggingface checks everything first and swaps files in whole --------------


def _snapshot(directory):
    """{name: bytes} of the files in `directory`."""
    return {name: open(os.path.join(directory, name), "rb").read()
            for name in sorted(os.listdir(directory))
            if os.path.isfile(os.path.join(directory, name))}


def test_bad_tokenizer_leaves_an_existing_directory_untouched(tmp_path):
    directory = _export(kbk.BertEncoder(tiny_bert_config()), tmp_path / "model")
    before = _snapshot(directory)
    other = kbk.BertEncoder(tiny_bert_config(num_layers=1))
    with pytest.raises(ValueError, match="`tokenizer` must be a BertTokenizer"):
        kbk.to_huggingface(other, directory, tokenizer="vocab.txt")
    assert _snapshot(directory) == before
    assert os.listdir(tmp_path) == ["model"]


def test_failed_write_leaves_old_files_and_no_temporary_files(tmp_path):
    directory = _export(kbk.BertEncoder(tiny_bert_config()), tmp_path / "model")
    os.remove(os.path.join(directory, "config.json"))
    os.mkdir(os.path.join(directory, "config.json"))  # cannot be replaced by a file
    before = _snapshot(directory)
    with pytest.raises(OSError):
        _export(kbk.BertEncoder(tiny_bert_config(num_layers=1)), directory)
    assert _snapshot(directory) == before
    assert os.listdir(tmp_path) == ["model"]


def test_a_planted_partial_symlink_is_never_written_through(tmp_path):
    directory = _export(kbk.BertEncoder(tiny_bert_config()), tmp_path / "model")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, os.path.join(directory, "model.safetensors.partial"))
    _export(kbk.BertEncoder(tiny_bert_config(num_layers=1)), directory)
    assert victim.read_text() == "precious"
    assert kbk.from_huggingface(directory).config.num_layers == 1
    assert sorted(os.listdir(tmp_path)) == ["model", "victim.txt"]


def test_new_directory_appears_whole_with_the_usual_mode(tmp_path):
    target = tmp_path / "new" / "model"
    tokenizer = kbk.BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    _export(kbk.DistilBertEncoder(tiny_distilbert_config()), target, tokenizer)
    assert sorted(os.listdir(target)) == ["config.json", "model.safetensors",
                                          "special_tokens_map.json", "tokenizer_config.json",
                                          "vocab.txt"]
    os.mkdir(tmp_path / "plain")
    assert os.stat(target).st_mode == os.stat(tmp_path / "plain").st_mode
    assert os.listdir(tmp_path / "new") == ["model"]
    assert kbk.from_huggingface(target).config == tiny_distilbert_config()
