"""Fuzz targets over config parsing (issue 17): mutated Hugging Face config.json files.

Each case is a config text: a valid tiny BERT or DistilBERT config with a
few keys replaced by JSON-ish values (huge integers, NaN and infinities, deep
nesting, wrong types, near-valid sizes) or deleted, a truncated one, or some
other JSON document altogether, read by one of three entry points. Every
outcome must be a config (or a loaded model) or the package's
`CheckpointFormatError`:

- `hf_config`: `config_from_huggingface` on the file;
- `from_huggingface`: the file beside the weights of a tiny model whose shapes
  match the unmutated config, so that mutated sizes exercise the comparison of
  config and tensors before any model is built;
- `config_json`: `BertConfig.from_json` / `DistilBertConfig.from_json` on our
  own JSON, mutated the same way (its errors are ValueErrors, of which
  CheckpointFormatError is one).

One target, `configs`, draws the entry point with the case, so that one child
process (whose imports cost seconds) covers all three. Run briefly by
tests/convert/test_config_fuzz.py, and with many more examples by the bench's
fuzz runner.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import warnings

from hypothesis import strategies as st

from keras_bert_kit.errors import CheckpointFormatError
from tests.isolation import FuzzTarget

# Tiny, so that a mutated config that still matches the weights builds fast.
_SIZES = dict(vocab_size=30, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16,
              max_sequence_length=16)
# Our field name -> its key in each architecture's config.json.
_HF_KEYS = {
    "bert": dict(vocab_size="vocab_size", hidden_size="hidden_size",
                 num_layers="num_hidden_layers", num_heads="num_attention_heads",
                 intermediate_size="intermediate_size",
                 max_sequence_length="max_position_embeddings"),
    "distilbert": dict(vocab_size="vocab_size", hidden_size="dim", num_layers="n_layers",
                       num_heads="n_heads", intermediate_size="hidden_dim",
                       max_sequence_length="max_position_embeddings"),
}
_OTHER_KEYS = {
    "ours": ["hidden_activation", "dropout_rate", "attention_dropout_rate", "layer_norm_epsilon",
             "initializer_range", "pad_token_id", "type_vocab_size"],
    "bert": ["type_vocab_size", "hidden_act", "hidden_dropout_prob",
             "attention_probs_dropout_prob", "layer_norm_eps", "initializer_range",
             "pad_token_id", "position_embedding_type", "model_type", "architectures"],
    "distilbert": ["activation", "dropout", "attention_dropout", "initializer_range",
                   "pad_token_id", "sinusoidal_pos_embds", "tie_weights_", "model_type",
                   "architectures"],
}
_DELETE = object()

# -- JSON-ish values, as JSON text (so that NaN, 1e400 and 5000 digits can be written) ----

_json_leaf = st.one_of(
    st.just("null"),
    st.sampled_from(["true", "false"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "7" * 5000,
                     "-" + "7" * 4400, "9" * 4000, "1e-400", "-0.0", "2147483648"]),
    st.text(max_size=12).map(json.dumps),
    st.sampled_from(['"gelu"', '"gelu_new"', '"relu"', '"absolute"', '"bert"',
                     '"distilbert"', '["BertModel"]', '["BertForPreTraining"]',
                     '["DistilBertForMaskedLM"]']),
)
_json_value = st.recursive(
    _json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(st.text(max_size=6), children, max_size=4).map(
            lambda members: "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in
                                            members.items()) + "}"),
    ),
    max_leaves=8,
)
_nested = st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth)
# Sizes near the tiny ones (the weights' shapes), and far from them.
_near_valid = st.sampled_from([0, 1, 2, 4, 8, 15, 16, 17, 29, 30, 31, 32, 64, 1024, 2**20,
                               2**24, 2**27, 100_000, -1]).map(str)
_mutation_value = st.one_of(_near_valid, _json_value, _nested, st.just(_DELETE))


def _base(model_type, ours):
    """The fields of the tiny model's config.json (or, `ours`, of our JSON), as {key: JSON
    text}."""
    if ours:
        return {name: str(value) for name, value in _SIZES.items()}
    keys = _HF_KEYS[model_type]
    fields = {keys[name]: str(value) for name, value in _SIZES.items()}
    fields["model_type"] = json.dumps(model_type)
    return fields


@st.composite
def _config_texts(draw, ours=False):
    """(model_type, config text): a Hugging Face config.json, or with `ours`, the JSON
    `BertConfig.to_json` writes."""
    model_type = draw(st.sampled_from(["bert", "distilbert"]))
    fields = _base(model_type, ours)
    shape = draw(st.sampled_from(["mutated", "mutated", "mutated", "truncated", "other"]))
    if shape == "other":
        return model_type, draw(st.one_of(_json_value, _nested))
    other_keys = _OTHER_KEYS["ours" if ours else model_type]
    keys = st.sampled_from(sorted(fields) + other_keys) | st.text(max_size=8)
    for key, value in draw(st.lists(st.tuples(keys, _mutation_value), min_size=1, max_size=3)):
        if value is _DELETE:
            fields.pop(key, None)
        else:
            fields[key] = value
    text = "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items()) + "}"
    if shape == "truncated":
        text = text[:draw(st.integers(0, max(0, len(text) - 1)))]
    return model_type, text


# -- targets ------------------------------------------------------------------------------

_directories = {}


def _scratch():
    if "scratch" not in _directories:
        _directories["scratch"] = tempfile.mkdtemp(prefix="fuzz_configs.")
        atexit.register(shutil.rmtree, _directories["scratch"], True)
    return _directories["scratch"]


def _model_directory(model_type):
    """A directory holding the tiny model's weights (written once per process)."""
    if model_type not in _directories:
        import keras_bert_kit as kbk

        config_class = kbk.BertConfig if model_type == "bert" else kbk.DistilBertConfig
        encoder = kbk.models.encoder_from_config(config_class(**_SIZES))
        path = os.path.join(_scratch(), model_type)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no tokenizer
            kbk.to_huggingface(encoder, path)
        _directories[model_type] = path
    return _directories[model_type]


def _write_config(directory, text):
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        f.write(text)


def _parse_hf_config(model_type, text):
    from keras_bert_kit.convert.hf_config import config_from_huggingface

    directory = os.path.join(_scratch(), "config_only")
    os.makedirs(directory, exist_ok=True)
    _write_config(directory, text)
    return type(config_from_huggingface(directory)).__name__


def _load_model(model_type, text):
    import keras_bert_kit as kbk

    directory = _model_directory(model_type)
    _write_config(directory, text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unused tensors when layers are fewer: expected
        return type(kbk.from_huggingface(directory)).__name__


def _parse_config_json(model_type, text):
    import keras_bert_kit as kbk

    config_class = kbk.BertConfig if model_type == "bert" else kbk.DistilBertConfig
    path = os.path.join(_scratch(), "ours.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return type(config_class.from_json(path)).__name__


# entry point -> (how it reads a case, whether its errors must be CheckpointFormatError)
_ENTRY_POINTS = {
    "hf_config": (_parse_hf_config, True),
    "from_huggingface": (_load_model, True),
    "config_json": (_parse_config_json, False),
}


def _run(case):
    entry_point, (model_type, text) = case
    read, format_errors_only = _ENTRY_POINTS[entry_point]
    try:
        return f"{entry_point}: {read(model_type, text)}"
    except CheckpointFormatError:
        raise
    except ValueError as e:
        if format_errors_only:
            raise AssertionError(f"{entry_point} raised a plain ValueError: {e}") from e
        raise


_cases = st.one_of(
    st.tuples(st.just("hf_config"), _config_texts()),
    st.tuples(st.just("from_huggingface"), _config_texts()),
    st.tuples(st.just("config_json"), _config_texts(ours=True)),
)

FUZZ_TARGETS = {"configs": FuzzTarget(_cases, _run, (ValueError,), case_seconds=20)}
