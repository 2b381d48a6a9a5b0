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
import warnings

import numpy as np

from keras_bert_kit.configs import BertConfig, DistilBertConfig
from keras_bert_kit.convert.hf_config import config_from_huggingface, config_to_huggingface
from keras_bert_kit.convert.tensor_files import read_model_weights, write_safetensors
from keras_bert_kit.convert.weights import TensorLink, export_links, load_links
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
            raise ValueError(
                f"{source}: {display(decoder + '.weight')} differs from the word embeddings, but "
                "our masked-LM head ties its projection to them (untied decoders are not "
                "supported)."
            )
        used.append(f"{decoder}.weight")
    stored_bias = state.get(f"{decoder}.bias")
    bias = state.get(names["mlm_bias"])
    if stored_bias is not None and bias is not None:
        if not np.array_equal(stored_bias, bias):
            raise ValueError(
                f"{source}: {display(decoder + '.bias')} differs from "
                f"{display(names['mlm_bias'])}; transformers ties the two."
            )
        used.append(f"{decoder}.bias")
    return used


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
        raise ValueError(
            f"{source} lacks {len(missing)} tensor(s) that {type(model).__name__} needs: "
            + ", ".join(display(name) for name in missing)
        )
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


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _model_kind(hf_config, target, path):
    model_type = hf_config.get("model_type")
    if model_type not in _CONFIGS:
        raise ValueError(
            f"{path}: model_type {model_type!r} is not supported; supported: "
            f"{sorted(_CONFIGS)} (architectures {sorted(ARCHITECTURES)})."
        )
    if target is not None:
        if target not in TARGETS:
            raise ValueError(f"`target` must be one of {TARGETS} or None; got {target!r}.")
        return model_type, target
    architectures = hf_config.get("architectures") or []
    for architecture in architectures:
        if architecture in ARCHITECTURES:
            return ARCHITECTURES[architecture]
    if architectures:
        raise ValueError(
            f"{path}: architecture {architectures[0]!r} is not supported; supported: "
            f"{sorted(ARCHITECTURES)}. To load just its encoder, pass target='encoder'."
        )
    return model_type, "encoder"  # Old configs name no architecture: the bare model.


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
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path} has no {CONFIG_FILE}.")
    hf_config = _read_json(config_path)
    model_type, target = _model_kind(hf_config, target, config_path)
    config = config_from_huggingface(config_path, _CONFIGS[model_type])
    state, weights_path = read_model_weights(path)

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
    settings = {}
    if os.path.isfile(os.path.join(path, TOKENIZER_CONFIG_FILE)):
        settings = _read_json(os.path.join(path, TOKENIZER_CONFIG_FILE))
    lowercase = bool(settings.get("do_lower_case", True))
    tokenizer = BertTokenizer(
        vocab_path, lowercase=lowercase, strip_accents=settings.get("strip_accents")
    )
    if sequence_length is None:
        sequence_length = 512
        if os.path.isfile(os.path.join(path, CONFIG_FILE)):
            sequence_length = _read_json(os.path.join(path, CONFIG_FILE)).get(
                "max_position_embeddings", sequence_length
            )
    return BertPreprocessor(tokenizer, sequence_length=sequence_length, padding=padding)


# -- export ---------------------------------------------------------------------------


def _write_json(values, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2, sort_keys=True)
        f.write("\n")


def _write_tokenizer(tokenizer, path, model_type, max_length):
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # A BertPreprocessor's.
    if not isinstance(tokenizer, BertTokenizer):
        raise ValueError(
            f"`tokenizer` must be a BertTokenizer or BertPreprocessor; got "
            f"{type(tokenizer).__name__}."
        )
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

    Args:
        model: one of the four models above.
        path: the directory; created if needed. Existing files of the same
            names are replaced.
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
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)

    tensors = {}
    for name, value in export_links(huggingface_links(model)):
        tensors[name] = np.ascontiguousarray(value, dtype=np.float32)
    write_safetensors(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    _write_json(
        dict(hf_config, architectures=[architecture], torch_dtype="float32"),
        os.path.join(path, CONFIG_FILE),
    )
    if tokenizer is not None:
        _write_tokenizer(tokenizer, path, config.model_type, config.max_sequence_length)
    else:
        warnings.warn(
            f"No tokenizer given: {path} has no vocab.txt, so transformers' AutoTokenizer "
            "cannot load it. Pass tokenizer= (a BertTokenizer or BertPreprocessor).",
            stacklevel=2,
        )
    return path
