"""Hugging Face `config.json` <-> our `BertConfig` / `DistilBertConfig`.

Each architecture describes itself once, as a table of `ConfigLink`s (one of
our fields and the HF key holding it) plus the HF keys whose value is fixed;
`config_from_huggingface` reads the table one way and `config_to_huggingface`
the other, as the weight tables in `weights` are read.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from keras_bert_kit.configs import (
    CONFIG_FILE_MAX_BYTES,
    BertConfig,
    DistilBertConfig,
    EncoderConfig,
    check_field,
)
from keras_bert_kit.errors import CheckpointFormatError
from keras_bert_kit.json_files import describe, read_json

_REQUIRED = object()

# HF activation name -> ours. HF has several names for each GELU flavour.
_FROM_HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "relu": "relu",
}
# Ours -> the HF name of the same function.
_TO_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_approximate": "gelu_new", "relu": "relu"}


class ConfigLink(NamedTuple):
    """One of our config fields and where a Hugging Face config keeps it.

    Fields:
        ours: our field name.
        hf: the HF key; None when HF cannot store the field and fixes it at
            `default` (export then refuses any other value).
        default: the value when the HF config lacks the key; `_REQUIRED` if it
            must be there.
        null_is_default: a JSON null also means `default` (HF writes null for
            an unset `pad_token_id`).
        activation: the value is an activation name, translated both ways.
    """

    ours: str
    hf: str | None
    default: Any = _REQUIRED
    null_is_default: bool = False
    activation: bool = False


class FixedKey(NamedTuple):
    """An HF key we always write with `value`.

    `unsupported` is None when another value imports as well; otherwise it
    says what we support, and a config with another value is refused.
    """

    hf: str
    value: Any
    unsupported: str | None = None


_COMMON_TAIL = (
    ConfigLink("initializer_range", "initializer_range", 0.02),
    ConfigLink("pad_token_id", "pad_token_id", 0, null_is_default=True),
)

BERT_CONFIG_LINKS = (
    ConfigLink("vocab_size", "vocab_size"),
    ConfigLink("hidden_size", "hidden_size"),
    ConfigLink("num_layers", "num_hidden_layers"),
    ConfigLink("num_heads", "num_attention_heads"),
    ConfigLink("intermediate_size", "intermediate_size"),
    ConfigLink("max_sequence_length", "max_position_embeddings"),
    ConfigLink("type_vocab_size", "type_vocab_size", 2),
    ConfigLink("hidden_activation", "hidden_act", "gelu", activation=True),
    ConfigLink("dropout_rate", "hidden_dropout_prob", 0.1),
    ConfigLink("attention_dropout_rate", "attention_probs_dropout_prob", 0.1),
    ConfigLink("layer_norm_epsilon", "layer_norm_eps", 1e-12),
    *_COMMON_TAIL,
)
BERT_FIXED_KEYS = (
    FixedKey("position_embedding_type", "absolute", "only learned absolute positions are"),
)

DISTILBERT_CONFIG_LINKS = (
    ConfigLink("vocab_size", "vocab_size"),
    ConfigLink("hidden_size", "dim"),
    ConfigLink("num_layers", "n_layers"),
    ConfigLink("num_heads", "n_heads"),
    ConfigLink("intermediate_size", "hidden_dim"),
    ConfigLink("max_sequence_length", "max_position_embeddings"),
    ConfigLink("hidden_activation", "activation", "gelu", activation=True),
    ConfigLink("dropout_rate", "dropout", 0.1),
    ConfigLink("attention_dropout_rate", "attention_dropout", 0.1),
    # HF DistilBERT hard-codes LayerNorm epsilon to 1e-12.
    ConfigLink("layer_norm_epsilon", None, 1e-12),
    *_COMMON_TAIL,
)
DISTILBERT_FIXED_KEYS = (
    FixedKey("sinusoidal_pos_embds", False),
    FixedKey("tie_weights_", True),
)

_TABLES = {
    BertConfig: (BERT_CONFIG_LINKS, BERT_FIXED_KEYS),
    DistilBertConfig: (DISTILBERT_CONFIG_LINKS, DISTILBERT_FIXED_KEYS),
}
_CLASSES = {config_class.model_type: config_class for config_class in _TABLES}


def _from_hf_activation(name, path: str, key: str) -> str:
    if not isinstance(name, str) or name not in _FROM_HF_ACTIVATIONS:
        raise CheckpointFormatError(
            f"{path}: {key}={describe(name)} is not a supported activation; "
            f"supported: {sorted(_FROM_HF_ACTIVATIONS)}."
        )
    return _FROM_HF_ACTIVATIONS[name]


def read_hf_json(path: str, what: str) -> dict[str, Any]:
    """The JSON object in `path` (a config.json or tokenizer_config.json), size-capped.

    Anything but a JSON object of at most `CONFIG_FILE_MAX_BYTES` is a
    `CheckpointFormatError` naming the file.
    """
    hf = read_json(path, CheckpointFormatError, CONFIG_FILE_MAX_BYTES, what)
    if not isinstance(hf, dict):
        raise CheckpointFormatError(f"{path} must hold a JSON object; it holds {describe(hf)}.")
    return hf


def read_hf_config(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(path of the file, its JSON object) for a `config.json` or the directory holding it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No Hugging Face config at {path}.")
    return path, read_hf_json(path, "Hugging Face config")


def hf_key(config_class: type[EncoderConfig], field: str) -> str:
    """The Hugging Face config key holding our `field` (our name if HF stores none)."""
    links, _ = _TABLES[config_class]
    return next((link.hf for link in links if link.ours == field and link.hf), field)


def fields_from_hf(config_class: type[EncoderConfig], hf: dict[str, Any], path: str):
    """Our field values for `config_class` from the HF config object `hf` (read from `path`).

    Each value is checked on its own (type and range, named by its HF key);
    a problem is a `CheckpointFormatError` naming `path` and the key.
    """
    links, fixed_keys = _TABLES[config_class]
    for key in fixed_keys:
        value = hf.get(key.hf, key.value)
        # The JSON type must match too: in Python, 0 == False and 1 == True.
        if key.unsupported is not None and (type(value) is not type(key.value)
                                            or value != key.value):
            raise CheckpointFormatError(
                f"{path}: {key.hf}={describe(value)} is not supported; {key.unsupported}."
            )
    fields = {}
    for link in links:
        if link.hf is None:
            fields[link.ours] = link.default
            continue
        if link.hf not in hf and link.default is _REQUIRED:
            raise CheckpointFormatError(f"{path} lacks the key {link.hf!r}.")
        value = hf.get(link.hf, link.default)
        if value is None and link.null_is_default:
            value = link.default
        if link.activation:
            value = _from_hf_activation(value, path, link.hf)
        try:
            fields[link.ours] = check_field(link.ours, value, label=link.hf)
        except ValueError as e:
            raise CheckpointFormatError(f"{path}: {e}") from None
    return fields


def _model_type(hf: dict[str, Any], default: str, path: str) -> str:
    model_type = hf.get("model_type", default)
    if not isinstance(model_type, str):
        raise CheckpointFormatError(
            f"{path}: model_type must be a string; got {describe(model_type)}."
        )
    return model_type


def config_from_huggingface(path: str | os.PathLike, config_class=None) -> EncoderConfig:
    """Our config from a Hugging Face `config.json` (a file or the directory holding it).

    The original BERT's `bert_config.json`, which has the same keys but no
    `model_type`, reads as BERT. Every field is checked (type, range, and the
    bounds of `configs.MAX_SIZES`) before anything uses it; a malformed file is
    a `CheckpointFormatError` naming it and the key.

    Args:
        path: the file, or a directory holding `config.json`.
        config_class: `BertConfig` or `DistilBertConfig`, to insist on one;
            default: the one the file's `model_type` names.
    """
    path, hf = read_hf_config(path)
    return config_from_hf_object(hf, path, config_class)


def config_from_hf_object(hf: dict[str, Any], path: str, config_class=None) -> EncoderConfig:
    """`config_from_huggingface` of a config already read: `hf` is the JSON object of `path`."""
    default_type = config_class.model_type if config_class is not None else "bert"
    model_type = _model_type(hf, default_type, path)
    if config_class is None:
        config_class = _CLASSES.get(model_type)
        if config_class is None:
            raise CheckpointFormatError(
                f"{path} describes model_type={describe(model_type)}; supported: "
                f"{sorted(_CLASSES)}."
            )
    elif model_type != config_class.model_type:
        hint = (f" Use {_CLASSES[model_type].__name__}.from_hf_config."
                if model_type in _CLASSES else "")
        raise CheckpointFormatError(
            f"{path} describes model_type={describe(model_type)}; {config_class.__name__} "
            f"reads {config_class.model_type!r} configs.{hint}"
        )
    fields = fields_from_hf(config_class, hf, path)
    try:
        return config_class(**fields)
    except ValueError as e:  # what involves several fields: divisibility, model size
        raise CheckpointFormatError(f"{path}: {e}") from None


def config_to_huggingface(config: EncoderConfig) -> dict[str, Any]:
    """The Hugging Face `config.json` fields of `config` (no `architectures`).

    Raises:
        ValueError: for a value transformers cannot express.
    """
    links, fixed_keys = _TABLES[type(config)]
    hf = dict(model_type=config.model_type)
    for link in links:
        value = getattr(config, link.ours)
        if link.hf is None:
            if value != link.default:
                raise ValueError(
                    f"Hugging Face {type(config).__name__[:-len('Config')]} fixes `{link.ours}` "
                    f"at {link.default}; this config has {value}."
                )
            continue
        hf[link.hf] = _TO_HF_ACTIVATIONS[value] if link.activation else value
    hf.update((key.hf, key.value) for key in fixed_keys)
    return hf
