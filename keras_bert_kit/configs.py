"""Model configurations: validated dataclasses, JSON round trip, named presets.

`BertConfig` and `DistilBertConfig` describe architecture only (sizes, activation,
dropout, initialisation); they hold no weights. Presets follow the BERT paper and
the "Well-Read Students" miniature family (Turc et al., 2019): intermediate size is
4x hidden, vocabulary 30522 (the uncased WordPiece vocab), 512 positions.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar

from keras_bert_kit.errors import CheckpointFormatError
from keras_bert_kit.json_files import MB, describe, is_short_scalar, parse_json, read_json
from keras_bert_kit.validation import check_choice, check_int, check_number, is_int

# Activation names accepted by the encoders. "gelu" is the exact (erf) GELU of
# the original BERT and Hugging Face; "gelu_approximate" is the tanh form used by
# keras-hub's BertBackbone, Model Garden and HF's "gelu_new".
ACTIVATIONS = ("gelu", "gelu_approximate", "relu")

# Upper bounds on the size fields. A config is often read from a downloaded
# config.json, and building a model allocates what it asks for, so a few bytes
# of JSON could otherwise request terabytes or hang building layers. Every bound
# is far above any published BERT-family model: vocabularies reach ~250k
# (multilingual encoders), hidden sizes 2560 with 48 layers and feed-forward
# 10240 (Megatron-BERT 3.9B), 8192 positions (long-context BERTs), and segment
# types are a handful at most.
MAX_SIZES = {
    "vocab_size": 2**24,
    "hidden_size": 2**16,
    "num_layers": 1024,
    "num_heads": 2**16,
    "intermediate_size": 2**18,
    "max_sequence_length": 2**20,
    "type_vocab_size": 2**16,
}
# Each size can be within bounds while their product is not: the whole model
# is bounded too (2**33 ~ 8.6e9 weights, 34 GB in float32: over twice the
# largest published BERT-family encoder, Megatron-BERT's 3.9e9).
MAX_PARAMETERS = 2**33
_SIZE_HINT = "a bound far above any published BERT-family model"
# A config.json is a few hundred bytes; anything near this is not one.
CONFIG_FILE_MAX_BYTES = 16 * MB
_RATES = ("dropout_rate", "attention_dropout_rate")
_POSITIVE_FLOATS = ("layer_norm_epsilon", "initializer_range")
_KINDS = {"hidden_activation": "a string", "pad_token_id": "an integer",
          **{name: "an integer" for name in MAX_SIZES}}


def check_field(name: str, value: Any, label: str | None = None) -> Any:
    """`value` if it is valid for the config field `name` on its own, else a ValueError.

    Checks type and range (bounds between fields, such as `pad_token_id` below
    `vocab_size`, are the config's). `label` is the name the message shows,
    e.g. the Hugging Face key the value was read from; default: `name`.
    """
    label = label or name
    if not is_short_scalar(value):
        # A container, a long string or a huge integer (from a crafted file, say):
        # named by what it is, as repr could be megabytes long or overflow.
        kind = _KINDS.get(name, "a number")
        raise ValueError(f"`{label}` must be {kind}; got {describe(value)}.")
    if name in MAX_SIZES:
        return check_int(label, value, 1, MAX_SIZES[name], hint=_SIZE_HINT)
    if name in _RATES:
        return check_number(label, value, 0.0, 1.0, include_maximum=False)
    if name in _POSITIVE_FLOATS:
        return check_number(label, value, 0.0, include_minimum=False, finite=True)
    if name == "hidden_activation":
        return check_choice(label, value, ACTIVATIONS)
    if name == "pad_token_id":
        return check_int(label, value, minimum=0, noun="id")
    raise ValueError(f"Unknown config field {name!r}.")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Fields shared by BERT and DistilBERT. Use a subclass, not this class."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    # None means 4 x hidden_size, the ratio every published BERT uses.
    intermediate_size: int | None = None
    max_sequence_length: int = 512
    hidden_activation: str = "gelu"
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0

    model_type: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if self.intermediate_size is None and is_int(self.hidden_size):
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
        self.validate()

    def validate(self) -> None:
        for field in dataclasses.fields(self):
            check_field(field.name, getattr(self, field.name))
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by "
                f"`num_heads` ({self.num_heads})."
            )
        check_int("pad_token_id", self.pad_token_id, 0, self.vocab_size, include_maximum=False,
                  noun="id")
        parameters = self.parameter_count()
        if parameters > MAX_PARAMETERS:
            raise ValueError(
                f"This config describes a model of {parameters:,} parameters, more than the "
                f"{MAX_PARAMETERS:,} allowed (over twice the largest published BERT-family "
                "encoder); check vocab_size, hidden_size, intermediate_size and num_layers."
            )

    def parameter_count(self) -> int:
        """The encoder's number of weights (as Python ints: no overflow, nothing allocated)."""
        hidden, inner = self.hidden_size, self.intermediate_size
        embeddings = (self.vocab_size + self.max_sequence_length
                      + getattr(self, "type_vocab_size", 0)) * hidden + 2 * hidden
        # Fused q/k/v and the attention output: 4 (h x h + h); two norms: 4h;
        # the feed-forward: h x i + i + i x h + h.
        layer = 4 * (hidden * hidden + hidden) + 4 * hidden + 2 * hidden * inner + inner + hidden
        pooler = hidden * hidden + hidden if self.model_type == "bert" else 0
        return embeddings + self.num_layers * layer + pooler

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    def replace(self, **changes: Any):
        """A copy with `changes` applied (and validated)."""
        if "hidden_size" in changes and "intermediate_size" not in changes:
            # Keep the 4x ratio unless the caller pins the intermediate size.
            if self.intermediate_size == 4 * self.hidden_size:
                changes["intermediate_size"] = None
        return dataclasses.replace(self, **changes)

    # -- serialization -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown {cls.__name__} field(s): {unknown}. Known fields: {sorted(known)}."
            )
        return cls(**values)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """Returns the config as JSON, and writes it to `path` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike):
        """Reads a config written by `to_json` (a file path or the JSON text)."""
        text = str(path_or_text)
        if text.lstrip().startswith("{"):
            source = f"the {cls.__name__} JSON text"
            values = parse_json(text, source, CheckpointFormatError)
        else:
            source = os.fspath(path_or_text)
            values = read_json(source, CheckpointFormatError, CONFIG_FILE_MAX_BYTES,
                               cls.__name__)
        if not isinstance(values, dict):
            raise CheckpointFormatError(f"{source}: a {cls.__name__} JSON document must be an "
                                        "object.")
        return cls.from_dict(values)

    # -- presets ---------------------------------------------------------------

    @classmethod
    def presets(cls) -> dict[str, "EncoderConfig"]:
        """The named presets whose type is `cls`."""
        return {name: c for name, c in PRESETS.items() if isinstance(c, cls)}

    @classmethod
    def from_preset(cls, name: str, **overrides: Any):
        """The preset `name`, with optional field `overrides`."""
        available = cls.presets()
        if name not in available:
            raise ValueError(
                f"Unknown {cls.__name__} preset {name!r}. Available: {sorted(available)}."
            )
        return available[name].replace(**overrides)

    # -- Hugging Face ------------------------------------------------------------
    # The field tables live in `convert.hf_config`, beside the weight tables;
    # imported on call, as that module imports this one.

    @classmethod
    def from_hf_config(cls, path: str | os.PathLike):
        """Reads a Hugging Face `config.json` (a file or the directory holding it).

        The original BERT's `bert_config.json`, which has the same keys but no
        `model_type`, reads too.
        """
        from keras_bert_kit.convert.hf_config import config_from_huggingface

        return config_from_huggingface(path, cls)

    def to_hf_config(self) -> dict[str, Any]:
        """The Hugging Face `config.json` fields of this config (no `architectures`)."""
        from keras_bert_kit.convert.hf_config import config_to_huggingface

        return config_to_huggingface(self)


@dataclasses.dataclass(frozen=True)
class BertConfig(EncoderConfig):
    """BERT architecture. `type_vocab_size` is the number of segment ids (2: A/B)."""

    type_vocab_size: int = 2

    model_type: ClassVar[str] = "bert"


@dataclasses.dataclass(frozen=True)
class DistilBertConfig(EncoderConfig):
    """DistilBERT architecture: BERT without segment embeddings or pooler weights."""

    num_layers: int = 6

    model_type: ClassVar[str] = "distilbert"


def _bert(layers: int, hidden: int, heads: int) -> BertConfig:
    return BertConfig(num_layers=layers, hidden_size=hidden, num_heads=heads)


PRESETS: dict[str, EncoderConfig] = {
    "bert_tiny": _bert(2, 128, 2),
    "bert_mini": _bert(4, 256, 4),
    "bert_small": _bert(4, 512, 8),
    "bert_medium": _bert(8, 512, 8),
    "bert_base": _bert(12, 768, 12),
    "bert_large": _bert(24, 1024, 16),
    "distilbert_base": DistilBertConfig(num_layers=6, hidden_size=768, num_heads=12),
}


def config_from_preset(name: str, **overrides: Any) -> EncoderConfig:
    """The config of preset `name` (a BertConfig or DistilBertConfig)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Available: {sorted(PRESETS)}.")
    return PRESETS[name].replace(**overrides)
