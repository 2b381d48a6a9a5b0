"""Hugging Face `config.json` <-> our `BertConfig` / `DistilBertConfig`.

Each architecture describes itself once, as a table of `ConfigLink`s (one of
our fields and the HF key holding it) plus the HF keys whose value is fixed;
`config_from_huggingface` reads the table one way and `config_to_huggingface`
the other, as the weight tables in `weights` are read.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

from keras_bert_kit.configs import BertConfig, DistilBertConfig, EncoderConfig

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


def _from_hf_activation(name: str, path: str) -> str:
    if name not in _FROM_HF_ACTIVATIONS:
        raise ValueError(
            f"{path}: activation {name!r} is not supported; "
            f"supported: {sorted(_FROM_HF_ACTIVATIONS)}."
        )
    return _FROM_HF_ACTIVATIONS[name]


def read_hf_config(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(path of the file, its JSON object) for a `config.json` or the directory holding it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No Hugging Face config at {path}.")
    with open(path, encoding="utf-8") as f:
        try:
            hf = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(hf, dict):
        raise ValueError(f"{path} must hold a JSON object.")
    return path, hf


def fields_from_hf(config_class: type[EncoderConfig], hf: dict[str, Any], path: str):
    """Our field values for `config_class` from the HF config object `hf` (read from `path`)."""
    links, fixed_keys = _TABLES[config_class]
    for key in fixed_keys:
        value = hf.get(key.hf, key.value)
        if key.unsupported is not None and value != key.value:
            raise ValueError(f"{path}: {key.hf}={value!r} is not supported; {key.unsupported}.")
    fields = {}
    for link in links:
        if link.hf is None:
            fields[link.ours] = link.default
            continue
        if link.hf not in hf and link.default is _REQUIRED:
            raise ValueError(f"{path} lacks the key {link.hf!r}.")
        value = hf.get(link.hf, link.default)
        if value is None and link.null_is_default:
            value = link.default
        if link.activation:
            value = _from_hf_activation(value, path)
        fields[link.ours] = value
    return fields


def config_from_huggingface(path: str | os.PathLike, config_class=None) -> EncoderConfig:
    """Our config from a Hugging Face `config.json` (a file or the directory holding it).

    The original BERT's `bert_config.json`, which has the same keys but no
    `model_type`, reads as BERT.

    Args:
        path: the file, or a directory holding `config.json`.
        config_class: `BertConfig` or `DistilBertConfig`, to insist on one;
            default: the one the file's `model_type` names.
    """
    path, hf = read_hf_config(path)
    default_type = config_class.model_type if config_class is not None else "bert"
    model_type = hf.get("model_type", default_type)
    if config_class is None:
        config_class = _CLASSES.get(model_type)
        if config_class is None:
            raise ValueError(
                f"{path} describes model_type={model_type!r}; supported: {sorted(_CLASSES)}."
            )
    elif model_type != config_class.model_type:
        hint = (f" Use {_CLASSES[model_type].__name__}.from_hf_config."
                if model_type in _CLASSES else "")
        raise ValueError(
            f"{path} describes model_type={model_type!r}; {config_class.__name__} reads "
            f"{config_class.model_type!r} configs.{hint}"
        )
    return config_class(**fields_from_hf(config_class, hf, path))


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
