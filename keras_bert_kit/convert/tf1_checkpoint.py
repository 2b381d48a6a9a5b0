"""The original google-research/bert checkpoints (TF1, name-based) -> our BERT models.

Their variable names are the ones Hugging Face's were derived from, so each
Hugging Face name has exactly one TF1 name (`tf1_name`), and the TF1 importer
is the Hugging Face one reading through that translation:

- `bert.encoder.layer.3.attention.self.query.weight` (`[out, in]`) is
  `bert/encoder/layer_3/attention/self/query/kernel` (`[in, out]`);
- `....LayerNorm.weight` / `.bias` are `.../LayerNorm/gamma` / `beta`;
- `bert.embeddings.word_embeddings.weight` is `bert/embeddings/word_embeddings`;
- `cls.predictions.bias` is `cls/predictions/output_bias`;
- `cls.seq_relationship.weight` / `.bias` are `cls/seq_relationship/output_weights`
  (`[2, hidden]`, not transposed) / `output_bias`.

Variables outside `bert/` and `cls/` (`global_step`, Adam slots `*/adam_m`,
`*/adam_v`) are optimizer state and are not read.
"""

from __future__ import annotations

import os
import re

import numpy as np

from keras_bert_kit.configs import BertConfig
from keras_bert_kit.convert.hf_config import config_from_huggingface
from keras_bert_kit.convert.huggingface import load_state_dict
from keras_bert_kit.convert.tensor_files import open_tf_checkpoint
from keras_bert_kit.models import BertEncoder, BertPretrainer

_EMBEDDING_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")
_OPTIMIZER_SLOT = re.compile(r"/(adam_[mv]|Momentum|Adagrad)$")


def tf1_name(hf_name: str) -> tuple[str, bool]:
    """The TF1 name of a Hugging Face BERT tensor name, and whether it is transposed."""
    parts = re.sub(r"\.layer\.(\d+)\.", r".layer_\1.", hf_name).split(".")
    *scope, leaf = parts
    if scope and scope[-1] in _EMBEDDING_TABLES:
        return "/".join(scope), False
    if scope == ["cls", "predictions"] and leaf == "bias":
        return "cls/predictions/output_bias", False
    if scope == ["cls", "seq_relationship"]:
        # Stored as `[2, hidden]`: already the torch layout.
        return f"cls/seq_relationship/output_{'weights' if leaf == 'weight' else 'bias'}", False
    if scope and scope[-1] == "LayerNorm":
        return "/".join(scope + ["gamma" if leaf == "weight" else "beta"]), False
    if leaf == "weight":
        return "/".join(scope + ["kernel"]), True
    return "/".join(scope + [leaf]), False


class _TF1Tensors(dict):
    """A checkpoint read as `{Hugging Face name: array}`, in torch layout."""

    def __init__(self, reader, names):
        super().__init__()
        self.tf1_names = {}
        for name in names:
            if not (name.startswith("bert/") or name.startswith("cls/")):
                continue
            if _OPTIMIZER_SLOT.search(name):
                continue
            hf = _hf_name(name)
            self.tf1_names[hf] = name
            value = np.asarray(reader.get_tensor(name))
            self[hf] = value.T if tf1_name(hf)[1] else value


def _hf_name(name: str) -> str:
    """The inverse of `tf1_name` (names outside its table pass through, dotted)."""
    parts = name.split("/")
    *scope, leaf = parts
    if leaf in _EMBEDDING_TABLES:
        hf = parts + ["weight"]
    elif name == "cls/predictions/output_bias":
        hf = ["cls", "predictions", "bias"]
    elif scope == ["cls", "seq_relationship"]:
        hf = scope + ["weight" if leaf == "output_weights" else "bias"]
    elif leaf in ("gamma", "beta"):
        hf = scope + ["weight" if leaf == "gamma" else "bias"]
    elif leaf == "kernel":
        hf = scope + ["weight"]
    else:
        hf = parts
    return re.sub(r"\.layer_(\d+)\.", r".layer.\1.", ".".join(hf))


def _resolve_config(config):
    if isinstance(config, BertConfig):
        return config
    if isinstance(config, dict):
        return BertConfig.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        return config_from_huggingface(config, BertConfig)  # bert_config.json has HF's keys.
    raise ValueError(
        "`config` must be a BertConfig, a dict of its fields, or the path of the "
        f"checkpoint's bert_config.json; got {type(config).__name__}."
    )


def from_tf1_checkpoint(path, config, target=None, dtype=None):
    """A `BertEncoder` or `BertPretrainer` from an original (TF1) BERT checkpoint.

    Args:
        path: the checkpoint prefix (`.../bert_model.ckpt`, the name before
            `.index`), or a directory with a `checkpoint` file.
        config: the model's `bert_config.json` (path), or a `BertConfig`. The
            original BERT uses the exact GELU ("gelu").
        target: "encoder" or "pretrainer"; default: "pretrainer" when the
            checkpoint has the `cls/predictions` head, else "encoder".
        dtype: dtype policy of the new model; default: the global policy.

    Returns:
        The model. Missing tensors raise, listed by their TF1 names; a shape
        mismatch names the tensor and both shapes.
    """
    path, reader = open_tf_checkpoint(path)
    names = reader.get_variable_to_shape_map()
    if not any(name.startswith("bert/") for name in names):
        raise ValueError(
            f"{path} has no variables under 'bert/': not an original BERT checkpoint. "
            "(A TF2 Model Garden checkpoint loads with from_model_garden.)"
        )
    config = _resolve_config(config)
    state = _TF1Tensors(reader, names)
    if target is None:
        target = "pretrainer" if "cls.predictions.bias" in state else "encoder"
    if target not in ("encoder", "pretrainer"):
        raise ValueError(f"`target` must be 'encoder', 'pretrainer' or None; got {target!r}.")
    encoder = BertEncoder(config, dtype=dtype)
    model = encoder if target == "encoder" else BertPretrainer(encoder)
    return load_state_dict(
        model,
        state,
        source=path,
        display=lambda name: state.tf1_names.get(name) or tf1_name(name)[0],
    )
