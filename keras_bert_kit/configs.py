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

from keras_bert_kit.validation import check_choice, check_int, check_number

# Activation names accepted by the encoders. "gelu" is the exact (erf) GELU of
# the original BERT and Hugging Face; "gelu_approximate" is the tanh form used by
# keras-hub's BertBackbone, Model Garden and HF's "gelu_new".
ACTIVATIONS = ("gelu", "gelu_approximate", "relu")

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
        if self.intermediate_size is None:
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
        self.validate()

    def validate(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_sequence_length",
        ):
            check_int(name, getattr(self, name), minimum=1)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by "
                f"`num_heads` ({self.num_heads})."
            )
        check_choice("hidden_activation", self.hidden_activation, ACTIVATIONS)
        for name in ("dropout_rate", "attention_dropout_rate"):
            check_number(name, getattr(self, name), 0.0, 1.0, include_maximum=False)
        if not self.layer_norm_epsilon > 0:
            raise ValueError(
                f"`layer_norm_epsilon` must be positive; got {self.layer_norm_epsilon!r}."
            )
        if not self.initializer_range > 0:
            raise ValueError(
                f"`initializer_range` must be positive; got {self.initializer_range!r}."
            )
        check_int("pad_token_id", self.pad_token_id, 0, self.vocab_size, include_maximum=False,
                  noun="id")

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
        if not text.lstrip().startswith("{"):
            with open(path_or_text, encoding="utf-8") as f:
                text = f.read()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"Not a valid {cls.__name__} JSON document: {e}") from e
        if not isinstance(values, dict):
            raise ValueError(f"A {cls.__name__} JSON document must be an object.")
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

    def validate(self) -> None:
        super().validate()
        check_int("type_vocab_size", self.type_vocab_size, minimum=1)


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
