"""Hugging Face model directories <-> our models.

A Hugging Face directory holds `config.json`, the weights (`model.safetensors`
or `pytorch_model.bin`, possibly sharded; see `tensor_files`) and the tokenizer
files (`vocab.txt`, `tokenizer_config.json`). Our models compute the same
function as transformers' torch ones; what differs is layout:

- torch `Linear` weights are `[out, in]`; our kernels are `[in, out]`;
- query, key and value are three `Linear`s; ours is one fused projection;
- the masked-LM decoder is tied to the word embeddings on both sides, so only
  its bias is stored (`cls.predictions.bias`, `vocab_projector.bias`);
- task models keep the encoder under a prefix (`bert.`, `distilbert.`) and
  their heads at the top level.

`_HF_NAMES` below is the one table of tensor names; import and export both
read it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import warnings

import numpy as np

from keras_bert_kit.configs import BertConfig, DistilBertConfig, check_field
from keras_bert_kit.convert.hf_config import (
    config_from_hf_object,
    config_to_huggingface,
    hf_key,
    read_hf_json,
)
from keras_bert_kit.convert.tensor_files import read_model_weights, write_safetensors
from keras_bert_kit.convert.weights import TensorLink, export_links, load_links
from keras_bert_kit.errors import CheckpointFormatError
from keras_bert_kit.json_files import describe
from keras_bert_kit.models import (
    BertEncoder,
    BertPretrainer,
    DistilBertEncoder,
    DistilBertPretrainer,
)
from keras_bert_kit.tokenization import BertPreprocessor, BertTokenizer

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"

# Architectures we read, by `config.json` "architectures": (model_type, target).
ARCHITECTURES = {
    "BertModel": ("bert", "encoder"),
    "BertForMaskedLM": ("bert", "pretrainer"),
    "BertForPreTraining": ("bert", "pretrainer"),
    "DistilBertModel": ("distilbert", "encoder"),
    "DistilBertForMaskedLM": ("distilbert", "pretrainer"),
}
TARGETS = ("encoder", "pretrainer")

_MODELS = {
    ("bert", "encoder"): BertEncoder,
    ("bert", "pretrainer"): BertPretrainer,
    ("distilbert", "encoder"): DistilBertEncoder,
    ("distilbert", "pretrainer"): DistilBertPretrainer,
}
_CONFIGS = {"bert": BertConfig, "distilbert": DistilBertConfig}
# What `to_huggingface` writes each of our models as.
_EXPORT_ARCHITECTURES = {
    BertEncoder: "BertModel",
    BertPretrainer: "BertForPreTraining",
    DistilBertEncoder: "DistilBertModel",
    DistilBertPretrainer: "DistilBertForMaskedLM",
}
# Where the encoder's tensors live in a task model's state dict.
_BASE_PREFIX = {"bert": "bert.", "distilbert": "distilbert."}

# Tensor names, per model type, relative to the encoder prefix ("{i}": layer).
_HF_NAMES = {
    "bert": dict(
        word_embeddings="embeddings.word_embeddings.weight",
        position_embeddings="embeddings.position_embeddings.weight",
        segment_embeddings="embeddings.token_type_embeddings.weight",
        embeddings_norm="embeddings.LayerNorm",
        query="encoder.layer.{i}.attention.self.query",
        key="encoder.layer.{i}.attention.self.key",
        value="encoder.layer.{i}.attention.self.value",
        attention_output="encoder.layer.{i}.attention.output.dense",
        attention_norm="encoder.layer.{i}.attention.output.LayerNorm",
        intermediate="encoder.layer.{i}.intermediate.dense",
        output="encoder.layer.{i}.output.dense",
        output_norm="encoder.layer.{i}.output.LayerNorm",
        pooler="pooler.dense",
        # Heads (top level, no prefix):
        mlm_transform="cls.predictions.transform.dense",
        mlm_norm="cls.predictions.transform.LayerNorm",
        mlm_bias="cls.predictions.bias",
        mlm_decoder="cls.predictions.decoder",
        next_sentence="cls.seq_relationship",
    ),
    "distilbert": dict(
        word_embeddings="embeddings.word_embeddings.weight",
        position_embeddings="embeddings.position_embeddings.weight",
        embeddings_norm="embeddings.LayerNorm",
        query="transformer.layer.{i}.attention.q_lin",
        key="transformer.layer.{i}.attention.k_lin",
        value="transformer.layer.{i}.attention.v_lin",
        attention_output="transformer.layer.{i}.attention.out_lin",
        attention_norm="transformer.layer.{i}.sa_layer_norm",
        intermediate="transformer.layer.{i}.ffn.lin1",
        output="transformer.layer.{i}.ffn.lin2",
        output_norm="transformer.layer.{i}.output_layer_norm",
        mlm_transform="vocab_transform",
        mlm_norm="vocab_layer_norm",
        mlm_bias="vocab_projector.bias",
        mlm_decoder="vocab_projector",
    ),
}
# Buffers that some checkpoints store and that carry no weights.
_BUFFERS = re.compile(r"(^|\.)embeddings\.position_ids$")
# Keys of `_HF_NAMES` that name heads, kept at the top level of a state dict.
_HEAD_KEYS = ("mlm_transform", "mlm_norm", "mlm_bias", "mlm_decoder", "next_sentence")


def _linear_shapes(out_size, in_size):
    return {".weight": (out_size, in_size), ".bias": (out_size,)}


_NORM_SHAPES = {".weight": ("hidden_size",), ".bias": ("hidden_size",)}
# The shape of each tensor of `_HF_NAMES` (torch layout, [out, in]), by suffix,
# in config fields (our names) or fixed sizes: `from_huggingface` checks a
# checkpoint against its config with it before building any model, whose
# variables would otherwise be allocated at whatever size the config asks.
_HF_SHAPES = dict(
    word_embeddings={"": ("vocab_size", "hidden_size")},
    position_embeddings={"": ("max_sequence_length", "hidden_size")},
    segment_embeddings={"": ("type_vocab_size", "hidden_size")},
    embeddings_norm=_NORM_SHAPES,
    query=_linear_shapes("hidden_size", "hidden_size"),
    key=_linear_shapes("hidden_size", "hidden_size"),
    value=_linear_shapes("hidden_size", "hidden_size"),
    attention_output=_linear_shapes("hidden_size", "hidden_size"),
    attention_norm=_NORM_SHAPES,
    intermediate=_linear_shapes("intermediate_size", "hidden_size"),
    output=_linear_shapes("hidden_size", "intermediate_size"),
    output_norm=_NORM_SHAPES,
    pooler=_linear_shapes("hidden_size", "hidden_size"),
    mlm_transform=_linear_shapes("hidden_size", "hidden_size"),
    mlm_norm=_NORM_SHAPES,
    mlm_bias={"": ("vocab_size",)},
    mlm_decoder=_linear_shapes("vocab_size", "hidden_size"),
    next_sentence=_linear_shapes(2, "hidden_size"),
)


# -- the link table -------------------------------------------------------------------


def _linear(target_layer, name):
    return [
        TensorLink(target_layer.kernel, (f"{name}.weight",), "transpose"),
        TensorLink(target_layer.bias, (f"{name}.bias",), "copy"),
    ]


def _norm(target_layer, name):
    return [
        TensorLink(target_layer.gamma, (f"{name}.weight",), "copy"),
        TensorLink(target_layer.beta, (f"{name}.bias",), "copy"),
    ]


def _encoder_links(encoder, prefix):
    model_type = encoder.config.model_type
    names = {k: prefix + v for k, v in _HF_NAMES[model_type].items()}
    embeddings = encoder.embeddings
    links = [
        TensorLink(embeddings.token_embedding.embeddings, (names["word_embeddings"],), "copy"),
        TensorLink(embeddings.position_embeddings, (names["position_embeddings"],), "copy"),
    ]
    if model_type == "bert":
        links.append(
            TensorLink(
                embeddings.segment_embedding.embeddings, (names["segment_embeddings"],), "copy"
            )
        )
    links += _norm(embeddings.layer_norm, names["embeddings_norm"])
    for i, block in enumerate(encoder.transformer_layers):
        layer = {k: v.replace("{i}", str(i)) for k, v in names.items()}
        attention = block.attention
        qkv = [layer[part] for part in ("query", "key", "value")]
        links += [
            TensorLink(
                attention.qkv_dense.kernel, tuple(f"{n}.weight" for n in qkv), "qkv_transpose"
            ),
            TensorLink(attention.qkv_dense.bias, tuple(f"{n}.bias" for n in qkv), "qkv"),
        ]
        links += _linear(attention.output_dense, layer["attention_output"])
        links += _norm(block.attention_layer_norm, layer["attention_norm"])
        links += _linear(block.intermediate_dense, layer["intermediate"])
        links += _linear(block.output_dense, layer["output"])
        links += _norm(block.output_layer_norm, layer["output_norm"])
    if model_type == "bert":
        links += _linear(encoder.pooler.dense, names["pooler"])
    return links


def _head_links(pretrainer):
    names = _HF_NAMES[pretrainer.encoder.config.model_type]
    head = pretrainer.masked_lm_head
    links = _linear(head.dense, names["mlm_transform"])
    links += _norm(head.layer_norm, names["mlm_norm"])
    links.append(TensorLink(head.output_bias, (names["mlm_bias"],), "copy"))
    if pretrainer.next_sentence_head is not None:
        links += _linear(pretrainer.next_sentence_head.dense, names["next_sentence"])
    return links


def huggingface_links(model, prefix=None) -> list[TensorLink]:
    """The `TensorLink`s between one of our models and Hugging Face tensor names.

    Args:
        model: a `BertEncoder`, `DistilBertEncoder`, `BertPretrainer` or
            `DistilBertPretrainer`.
        prefix: the encoder's prefix in the state dict; default: none for an
            encoder, "bert." / "distilbert." for a pretrainer (as transformers
            saves `BertModel` and `BertForPreTraining`).
    """
    if isinstance(model, (BertPretrainer, DistilBertPretrainer)):
        model_type = model.encoder.config.model_type
        prefix = _BASE_PREFIX[model_type] if prefix is None else prefix
        return _encoder_links(model.encoder, prefix) + _head_links(model)
    if isinstance(model, (BertEncoder, DistilBertEncoder)):
        return _encoder_links(model, "" if prefix is None else prefix)
    raise ValueError(
        "Expected a BertEncoder, DistilBertEncoder, BertPretrainer or DistilBertPretrainer; "
        f"got {type(model).__name__}."
    )


def _optional_links(model, links):
    """Links whose absence from a checkpoint is reported, not fatal.

    transformers builds `BertForMaskedLM` without a pooler and with no
    next-sentence head, so loading one into a `BertPretrainer` leaves those
    newly initialised (as transformers itself would, with a warning).
    """
    optional = []
    if isinstance(model, BertPretrainer):
        optional_layers = [model.encoder.pooler.dense, model.next_sentence_head.dense]
    elif isinstance(model, BertEncoder):
        optional_layers = [model.pooler.dense]
    else:
        optional_layers = []
    optional_ids = {id(v) for layer in optional_layers for v in layer.weights}
    for link in links:
        if id(link.target) in optional_ids:
            optional.append(link)
    return optional


# -- import ---------------------------------------------------------------------------


def _normalize_name(name):
    # Checkpoints converted from TF1 by old transformers name LayerNorm
    # parameters gamma/beta; transformers renames them on load, and so do we.
    return re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))


def _base_prefix(names, model_type):
    prefix = _BASE_PREFIX[model_type]
    return prefix if any(name.startswith(prefix) for name in names) else ""


def _check_tied_decoder(state, names, prefix, display, source):
    """A stored decoder must equal what our tied head computes, else we'd load a different model."""
    decoder = names["mlm_decoder"]
    embeddings = state.get(prefix + names["word_embeddings"])
    used = []
    stored = state.get(f"{decoder}.weight")
    if stored is not None and embeddings is not None:
        if stored.shape != embeddings.shape or not np.array_equal(stored, embeddings):
            raise CheckpointFormatError(
                f"{source}: {display(decoder + '.weight')} differs from the word embeddings, but "
                "our masked-LM head ties its projection to them (untied decoders are not "
                "supported)."
            )
        used.append(f"{decoder}.weight")
    stored_bias = state.get(f"{decoder}.bias")
    bias = state.get(names["mlm_bias"])
    if stored_bias is not None and bias is not None:
        if not np.array_equal(stored_bias, bias):
            raise CheckpointFormatError(
                f"{source}: {display(decoder + '.bias')} differs from "
                f"{display(names['mlm_bias'])}; transformers ties the two."
            )
        used.append(f"{decoder}.bias")
    return used


def _missing_tensors(source, missing, model_name, display=str):
    return CheckpointFormatError(
        f"{source} lacks {len(missing)} tensor(s) that {model_name} needs: "
        + ", ".join(display(name) for name in missing)
    )


def load_state_dict(model, state, source, display=None):
    """Loads Hugging Face-named tensors `state` into our `model`.

    Every variable of `model` is loaded, or reported: a missing pooler or
    next-sentence head (absent from `BertForMaskedLM`) is left at its initial
    values with a warning naming it; any other missing tensor raises, listing
    all of them. Tensors of `state` that nothing loads (a task model's
    classifier, say) are named in a warning.

    Args:
        model: our model (see `huggingface_links`).
        state: `{name: numpy array}`, names as transformers saves them.
        source: where `state` came from, for messages.
        display: name -> how to show it in messages (the TF1 importer shows
            its own names); default: the name itself.
    """
    display = display or (lambda name: name)
    state = {_normalize_name(name): value for name, value in state.items()}
    model_type = (getattr(model, "encoder", model)).config.model_type
    prefix = _base_prefix(state, model_type)
    links = huggingface_links(model, prefix=prefix)
    optional = {id(link.target) for link in _optional_links(model, links)}

    missing, left_at_init, load = [], [], []
    for link in links:
        absent = [name for name in link.sources if name not in state]
        if not absent:
            load.append(link)
        elif id(link.target) in optional:
            left_at_init.append(link.target)
        else:
            missing += absent
    if missing:
        raise _missing_tensors(source, missing, type(model).__name__, display)
    load_links(model, load, read=state.__getitem__, left_at_init=left_at_init)

    used = {name for link in load for name in link.sources}
    if isinstance(model, (BertPretrainer, DistilBertPretrainer)):
        names = dict(_HF_NAMES[model_type])
        used.update(_check_tied_decoder(state, names, prefix, display, source))
    if left_at_init:
        warnings.warn(
            f"{source} has no weights for {len(left_at_init)} variable(s) of "
            f"{model.name!r}, which keep their random initial values (train them before use): "
            + ", ".join(v.path for v in left_at_init),
            stacklevel=3,
        )
    unused = sorted(name for name in state if name not in used and not _BUFFERS.search(name))
    if unused:
        warnings.warn(
            f"{len(unused)} tensor(s) of {source} are not part of {type(model).__name__} and "
            "were not loaded: " + ", ".join(display(name) for name in unused),
            stacklevel=3,
        )
    return model


def _model_kind(hf_config, target, path):
    model_type = hf_config.get("model_type")
    if not isinstance(model_type, str) or model_type not in _CONFIGS:
        raise CheckpointFormatError(
            f"{path}: model_type {describe(model_type)} is not supported; supported: "
            f"{sorted(_CONFIGS)} (architectures {sorted(ARCHITECTURES)})."
        )
    if target is not None:
        return model_type, target
    architectures = hf_config.get("architectures") or []
    if not isinstance(architectures, list) or not all(
        isinstance(name, str) for name in architectures
    ):
        raise CheckpointFormatError(
            f"{path}: architectures must be an array of names; got {describe(architectures)}."
        )
    for architecture in architectures:
        if architecture in ARCHITECTURES:
            return ARCHITECTURES[architecture]
    if architectures:
        raise CheckpointFormatError(
            f"{path}: architecture {describe(architectures[0])} is not supported; supported: "
            f"{sorted(ARCHITECTURES)}. To load just its encoder, pass target='encoder'."
        )
    return model_type, "encoder"  # Old configs name no architecture: the bare model.


def _expected_shapes(config, prefix, target):
    """{tensor name: shape as config fields} for what `target` loads, and the names it needs.

    Needed: every encoder tensor but the pooler (which `BertForMaskedLM` lacks);
    the heads' presence is left to `load_state_dict`, as their sizes are the
    encoder's.
    """
    shapes, needed = {}, []
    keys = [k for k in _HF_NAMES[config.model_type] if target == "pretrainer"
            or k not in _HEAD_KEYS]
    for key in keys:
        template = _HF_NAMES[config.model_type][key]
        template = template if key in _HEAD_KEYS else prefix + template
        layers = range(config.num_layers) if "{i}" in template else [None]
        for i in layers:
            name = template.replace("{i}", str(i))
            for suffix, dims in _HF_SHAPES[key].items():
                shapes[name + suffix] = dims
                if key not in _HEAD_KEYS and key != "pooler":
                    needed.append(name + suffix)
    return shapes, needed


def _check_checkpoint_fits_config(config, state, target, config_path, weights_path):
    """Raises unless `state` holds the tensors `config` describes, at their shapes.

    Runs before any model is built, so that a config.json asking for a huge
    model is refused by comparing sizes, not by allocating them. Messages are
    one line naming the config key, its value and the tensor's shape.
    """
    model_type = config.model_type
    config_class = type(config)
    prefix = _base_prefix(state, model_type)
    layer_root = re.escape(prefix + _HF_NAMES[model_type]["query"].split("{i}")[0])
    # At most 9 digits: a crafted name's index is never converted into a huge int.
    pattern = re.compile(layer_root + r"(0|[1-9][0-9]{0,8})\.")
    present = {int(m.group(1)) for m in map(pattern.match, state) if m}
    absent = [i for i in range(config.num_layers) if i not in present]
    if absent:
        held = (f"layers 0..{max(present)}" if present == set(range(max(present) + 1))
                else f"{len(present)} layers") if present else "no layers"
        raise CheckpointFormatError(
            f"{config_path}: {hf_key(config_class, 'num_layers')}={config.num_layers}, but "
            f"{weights_path} holds {held} (layer {absent[0]} is missing)."
        )
    shapes, needed = _expected_shapes(config, prefix, target)
    missing = [name for name in needed if name not in state]
    if missing:
        model_name = _MODELS[(model_type, target)].__name__
        raise _missing_tensors(weights_path, missing, model_name)
    for name, dims in shapes.items():
        if name not in state:
            continue
        expected = tuple(getattr(config, d) if isinstance(d, str) else d for d in dims)
        shape = tuple(state[name].shape)
        if shape == expected:
            continue
        fields = [d for d, n, e in zip(dims, shape, expected) if n != e and isinstance(d, str)]
        if len(shape) != len(expected) or not fields:
            fields = [d for d in dims if isinstance(d, str)]
        settings = ", ".join(f"{hf_key(config_class, f)}={getattr(config, f)}" for f in fields)
        raise CheckpointFormatError(
            f"{config_path}: {settings} does not match the weights: {weights_path} holds "
            f"{name} of shape {shape}, but the config implies {expected}."
        )


def from_huggingface(path, target=None, dtype=None):
    """Our model with the weights of a Hugging Face model directory.

    | `config.json` architecture | returns |
    |---|---|
    | `BertModel` | `BertEncoder` |
    | `BertForPreTraining`, `BertForMaskedLM` | `BertPretrainer` (MLM and NSP heads) |
    | `DistilBertModel` | `DistilBertEncoder` |
    | `DistilBertForMaskedLM` | `DistilBertPretrainer` |

    Weights come from `model.safetensors` or `pytorch_model.bin` (read
    without running any of its pickled code), sharded or not. Every variable
    is loaded or reported: `BertForMaskedLM` has no pooler and no NSP head,
    so those keep their initial values with a warning; any other missing
    tensor raises, naming all of them; tensors nothing loads are named in a
    warning.

    Args:
        path: the model directory.
        target: "encoder" or "pretrainer" to override the table; "encoder"
            loads the encoder of any BERT/DistilBERT model, such as a
            `BertForSequenceClassification` (its classifier is reported unused).
        dtype: dtype policy of the new model; default: the global policy.

    Returns:
        The model. `preprocessor_from_huggingface(path)` gives the matching
        preprocessor, from the directory's `vocab.txt`.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is not a directory (a Hugging Face model directory).")
    if target is not None and target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS} or None; got {target!r}.")
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path} has no {CONFIG_FILE}.")
    hf_config = read_hf_json(config_path, "Hugging Face config")
    model_type, target = _model_kind(hf_config, target, config_path)
    config = config_from_hf_object(hf_config, config_path, _CONFIGS[model_type])
    state, weights_path = read_model_weights(path)
    state = {_normalize_name(name): value for name, value in state.items()}
    _check_checkpoint_fits_config(config, state, target, config_path, weights_path)

    encoder_class = _MODELS[(model_type, "encoder")]
    encoder = encoder_class(config, dtype=dtype)
    model = encoder if target == "encoder" else _MODELS[(model_type, target)](encoder)
    return load_state_dict(model, state, source=weights_path)


def preprocessor_from_huggingface(path, sequence_length=None, padding="max_length"):
    """A `BertPreprocessor` from a Hugging Face directory's `vocab.txt`.

    Casing follows `tokenizer_config.json` (`do_lower_case`, `strip_accents`;
    uncased when the file is absent, as transformers' `BertTokenizer`).

    Args:
        path: the model directory.
        sequence_length: default: the model's `max_position_embeddings`
            (512 when `config.json` is absent).
        padding: "max_length" or "longest" (see `BertPreprocessor`).
    """
    path = os.fspath(path)
    vocab_path = os.path.join(path, VOCAB_FILE)
    if not os.path.isfile(vocab_path):
        raise FileNotFoundError(
            f"{path} has no {VOCAB_FILE}; only WordPiece (BERT) tokenizers are supported."
        )
    lowercase, strip_accents = True, None
    settings_path = os.path.join(path, TOKENIZER_CONFIG_FILE)
    if os.path.isfile(settings_path):
        settings = read_hf_json(settings_path, "tokenizer config")
        lowercase = _setting(settings, "do_lower_case", True, settings_path, (bool,))
        strip_accents = _setting(settings, "strip_accents", None, settings_path,
                                 (bool, type(None)))
    tokenizer = BertTokenizer(vocab_path, lowercase=lowercase, strip_accents=strip_accents)
    if sequence_length is None:
        sequence_length = 512
        config_path = os.path.join(path, CONFIG_FILE)
        if os.path.isfile(config_path):
            positions = read_hf_json(config_path, "Hugging Face config").get(
                "max_position_embeddings", sequence_length
            )
            try:
                sequence_length = check_field("max_sequence_length", positions,
                                              label="max_position_embeddings")
            except ValueError as e:
                raise CheckpointFormatError(f"{config_path}: {e}") from None
    return BertPreprocessor(tokenizer, sequence_length=sequence_length, padding=padding)


def _setting(settings, key, default, path, types):
    value = settings.get(key, default)
    if not isinstance(value, types):
        kinds = " or ".join("null" if t is type(None) else "true/false" for t in types)
        raise CheckpointFormatError(f"{path}: {key} must be {kinds}; got {describe(value)}.")
    return value


# -- export ---------------------------------------------------------------------------


def _write_json(values, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2, sort_keys=True)
        f.write("\n")


def _bert_tokenizer(tokenizer):
    """The `BertTokenizer` of `tokenizer` (itself, or a BertPreprocessor's), or a ValueError."""
    bert_tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    if not isinstance(bert_tokenizer, BertTokenizer):
        raise ValueError(
            f"`tokenizer` must be a BertTokenizer or BertPreprocessor; got "
            f"{type(tokenizer).__name__}."
        )
    return bert_tokenizer


def _write_tokenizer(tokenizer, path, model_type, max_length):
    tokenizer.save_vocabulary(os.path.join(path, VOCAB_FILE))
    special = dict(
        unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
        mask_token="[MASK]",
    )
    _write_json(
        dict(
            tokenizer_class="BertTokenizer" if model_type == "bert" else "DistilBertTokenizer",
            do_lower_case=tokenizer.lowercase,
            strip_accents=tokenizer.strip_accents,
            model_max_length=max_length,
            **special,
        ),
        os.path.join(path, TOKENIZER_CONFIG_FILE),
    )
    _write_json(special, os.path.join(path, SPECIAL_TOKENS_FILE))


def _staging_directory(path):
    """A fresh, empty directory beside `path` (same file system, so moves are renames).

    mkdtemp gives it an unpredictable name and mode 0o700; it takes the mode a
    plain `mkdir` would give (the umask's), as it may become `path` itself.
    """
    parent, name = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
    probe = os.path.join(staging, "mode")
    os.mkdir(probe)
    os.chmod(staging, stat.S_IMODE(os.stat(probe).st_mode))
    os.rmdir(probe)
    return staging


def _move_into_place(staging, path):
    """Moves the files of `staging` to the directory `path`.

    A new `path` is `staging` renamed: it appears whole or not at all. Into an
    existing directory each file is renamed over its old version, after
    checking that none of them would land on a directory.
    """
    if not os.path.lexists(path):
        try:
            os.rename(staging, path)
            return
        except OSError:
            if not os.path.isdir(path):  # Something else appeared at `path` meanwhile.
                raise
    names = sorted(os.listdir(staging))
    for name in names:
        target = os.path.join(path, name)
        if os.path.isdir(target) and not os.path.islink(target):
            raise IsADirectoryError(f"{target} is a directory; not replacing it with a file.")
    for name in names:
        os.replace(os.path.join(staging, name), os.path.join(path, name))


def to_huggingface(model, path, tokenizer=None):
    """Writes `model` as a Hugging Face directory that transformers' `from_pretrained` loads.

    | our model | written as |
    |---|---|
    | `BertEncoder` | `BertModel` |
    | `BertPretrainer` | `BertForPreTraining` |
    | `DistilBertEncoder` | `DistilBertModel` |
    | `DistilBertPretrainer` | `DistilBertForMaskedLM` |

    Files: `config.json`, `model.safetensors` (float32) and, with a
    tokenizer, `vocab.txt`, `tokenizer_config.json` and
    `special_tokens_map.json`, so `AutoTokenizer` loads it too.

    Every argument is checked before anything is written. The files are
    written into a fresh temporary directory beside `path`, then moved in: a
    new `path` appears complete (one rename); in an existing one each file is
    replaced by a rename. A failure leaves no temporary files behind and an
    existing directory as it was.

    Args:
        model: one of the four models above.
        path: the directory; created if needed. Existing files of the same
            names are replaced; other files are left alone.
        tokenizer: a `BertTokenizer` or `BertPreprocessor` whose vocabulary
            and casing to write; without one, no tokenizer files are written
            (with a warning).

    Returns:
        `path`.
    """
    architecture = _EXPORT_ARCHITECTURES.get(type(model))
    if architecture is None:
        raise ValueError(
            f"to_huggingface writes {sorted(c.__name__ for c in _EXPORT_ARCHITECTURES)}; "
            f"got {type(model).__name__}."
        )
    config = getattr(model, "encoder", model).config
    hf_config = config_to_huggingface(config)  # Raises for what transformers cannot express.
    if tokenizer is not None:
        tokenizer = _bert_tokenizer(tokenizer)
    path = os.fspath(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path} exists and is not a directory.")

    tensors = {}
    for name, value in export_links(huggingface_links(model)):
        tensors[name] = np.ascontiguousarray(value, dtype=np.float32)
    staging = _staging_directory(path)
    try:
        write_safetensors(
            tensors, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"}
        )
        _write_json(
            dict(hf_config, architectures=[architecture], torch_dtype="float32"),
            os.path.join(staging, CONFIG_FILE),
        )
        if tokenizer is not None:
            _write_tokenizer(tokenizer, staging, config.model_type, config.max_sequence_length)
        _move_into_place(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # Gone already when renamed to `path`.
    if tokenizer is None:
        warnings.warn(
            f"No tokenizer given: {path} has no vocab.txt, so transformers' AutoTokenizer "
            "cannot load it. Pass tokenizer= (a BertTokenizer or BertPreprocessor).",
            stacklevel=2,
        )
    return path
