"""`export_tflite`: .tflite models for phones and small devices (LiteRT).

Path: the model's serving function -> a SavedModel (`keras.export.ExportArchive`)
-> `tf.lite.TFLiteConverter.from_saved_model` (its `from_keras_model` does not
take Keras 3 models).

Two kinds of model:
- **ids in** (signature `predict_ids`): int32 `input_ids`, `segment_ids`
  (BERT) and `padding_mask` `[batch, seq]` -> the task's outputs, TFLite
  builtin ops only, so any LiteRT runtime runs it. The app tokenizes (the
  sidecar names the vocabulary and the special token ids).
- **text in** (signature `serving_default`): strings -> the task's outputs.
  The tokenizer is inside: tensorflow-text's `FastBertNormalize` and
  `FastWordpieceTokenizeWithOffsets` TFLite kernels (custom ops registered
  by `tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS`), then packing in
  builtin ops. It uses the `normalizer="tf_text"` tokenizer, which folds
  compatibility characters that BERT's own normalisation keeps (see
  `keras_bert_kit.tokenization.tokenizer`). Classifiers and encoders have
  text-in models; the tagger's word alignment, QA's answer extraction and
  fill-mask's "[MASK]" splitting need TensorFlow string and list ops that
  LiteRT has no kernels for, and are refused with the ops named.

The pip LiteRT runtimes have no Flex delegate, so a graph needing a TensorFlow
op is refused at export (`TFLiteExportError`, naming the op and the layer it
came from): no model is written that cannot run.

Quantizations: "none" (float32), "float16" (float16 weights), "dynamic_range"
(int8 weights, float activations) and "int8" (int8 weights and activations,
calibrated on real texts, float kernels where an op has no int8 one).

Next to `model.tflite` goes `model.json` (the settings an app needs) and
`model.vocab.txt`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_bert_kit.export.signatures import (
    SignatureBuilder,
    copy_model,
    encoder_of,
    model_kind,
    resolve_preprocessor,
)
from keras_bert_kit.keras_internals import calibrate_with_custom_ops
from keras_bert_kit.tokenization.tokenizer import BertTokenizer

QUANTIZATIONS = ("none", "float16", "dynamic_range", "int8")
FORMAT_VERSION = 1
TEXT_IN_KINDS = ("classifier", "encoder")
# tensorflow-text's TFLite kernels (tflite_registrar.SELECT_TFTEXT_OPS) that
# text-in models use; any other custom op would not resolve on a device.
TEXT_OPS = frozenset({"FastBertNormalize", "FastWordpieceTokenizeWithOffsets"})
# The op types an int8 model keeps in float by default: the element-wise ops.
# LayerNorm's variance and reciprocal square root and the residual sums feeding
# it span ranges that per-tensor int8 cannot hold (20 to 200 quantization steps
# of error, against under 1 for the matrix products); quantizing them cost
# the MiniLM-L6 Rotten Tomatoes classifier 2.75 points, keeping them in float
# 0.36, and the int8 matrix products still run 4x faster than float32
# (bench/export_matrix.py --int8-study).
INT8_FLOAT_OPS = ("ADD", "SUB", "MUL", "MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SOFTMAX",
                  "GELU", "TANH")


class TFLiteExportError(ValueError):
    """The model cannot become a .tflite that LiteRT's builtin (and TF Text) kernels run."""


def sidecar_path(path) -> str:
    """`model.json` for `model.tflite`."""
    return os.path.splitext(os.fspath(path))[0] + ".json"


def read_tflite_settings(path) -> dict:
    """The settings `export_tflite` wrote beside `path` (`<model>.json`)."""
    sidecar = sidecar_path(path)
    if not os.path.isfile(sidecar):
        raise ValueError(f"{path} has no keras_bert_kit settings: {sidecar} is missing.")
    with open(sidecar, encoding="utf-8") as f:
        return json.load(f)


def on_device_preprocessor(preprocessor, sequence_length=None):
    """A copy of `preprocessor` whose tokenizer uses the `tf_text` normaliser.

    `FastBertNormalize` strips accents exactly when it lowercases, so a
    tokenizer that does one without the other has no on-device form.
    """
    tokenizer = preprocessor.tokenizer
    if tokenizer.strip_accents is not None and bool(tokenizer.strip_accents) != tokenizer.lowercase:
        raise TFLiteExportError(
            "A text-in TFLite model tokenizes with tensorflow-text's FastBertNormalize, "
            "which strips accents exactly when it lowercases; this tokenizer has "
            f"lowercase={tokenizer.lowercase}, strip_accents={tokenizer.strip_accents}. "
            "Export an ids-in model instead (text_input=False)."
        )
    config = dict(preprocessor.get_config())
    config["tokenizer"] = keras.saving.serialize_keras_object(
        BertTokenizer.from_config({**tokenizer.get_config(), "normalizer": "tf_text"})
    )
    if sequence_length is not None:
        config["sequence_length"] = sequence_length
    return type(preprocessor).from_config(config)


def _check_arguments(model, path, quantization, text_input, sequence_length,
                     representative_texts):
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"`quantization` must be one of {QUANTIZATIONS}; got {quantization!r}.")
    if not os.fspath(path).endswith(".tflite"):
        raise ValueError(f"`path` must end in .tflite; got {os.fspath(path)!r}.")
    kind = model_kind(model)
    if text_input and kind not in TEXT_IN_KINDS:
        raise TFLiteExportError(
            f"A {kind} has no text-in TFLite model: its text signature needs TensorFlow "
            "string and list ops that LiteRT has no kernels for (tagger: word alignment; "
            "qa: answer text; pretrainer: splitting at [MASK]). Export it with "
            "text_input=False and tokenize in the app."
        )
    limit = encoder_of(model).config.max_sequence_length
    if sequence_length is not None and (
        not isinstance(sequence_length, int) or isinstance(sequence_length, bool)
        or not 3 <= sequence_length <= limit
    ):
        raise ValueError(
            f"`sequence_length` must be an integer in [3, {limit}] (the encoder's position "
            f"table); got {sequence_length!r}."
        )
    if quantization == "int8":
        if representative_texts is None or isinstance(representative_texts, (str, bytes)):
            raise ValueError(
                "int8 quantization calibrates activation ranges on real inputs: pass "
                "`representative_texts`, a list of texts like those the model will see "
                "(a few hundred is plenty)."
            )
        if not list(representative_texts):
            raise ValueError("`representative_texts` is empty.")
    return kind


def _representative_dataset(builder, texts, text_input):
    """Calibration samples, one text each, as the signature's inputs: int32 ids (or text)."""
    columns = builder.text_columns(texts, what="representative_texts")

    def samples():
        for i in range(int(columns[0].shape[0])):
            row = [column[i:i + 1] for column in columns]
            if text_input:
                yield {name: value.numpy() for name, value in zip(builder.text_inputs, row)}
            else:
                features = builder.packer(tuple(row) if len(row) == 2 else row[0])
                yield {name: features[name].numpy() for name in builder.id_inputs}

    return samples


def _converter_error(error, signature):
    """A `TFLiteExportError` naming each op the builtins lack and the layer it came from."""
    found = {}
    for data in getattr(error, "errors", ()):
        op = data.operator.name.removeprefix("tf.")
        if not op or op == "Const":
            continue
        node = next((call.name for call in data.location.call), "") or data.location.name
        node = node.split("@")[0]
        layer = node.rsplit("/", 1)[0] if "/" in node else None
        found.setdefault(op, set()).add(f"layer {layer!r}" if layer else f"node {node!r}")
    if not found:
        # The converter's own text ends in a dump of the whole graph.
        summary = " ".join(str(error).splitlines()[:2])[:600]
        return TFLiteExportError(f"TFLite conversion of {signature} failed: {summary}")
    described = "; ".join(f"{op} (in {', '.join(sorted(where))})" for op, where in
                          sorted(found.items()))
    return TFLiteExportError(
        f"The {signature} graph needs TensorFlow ops that LiteRT has no builtin kernel for, "
        f"and the pip LiteRT runtimes have no Flex delegate to run them: {described}."
    )


def tflite_ops(model_content) -> dict:
    """{"builtin": {name: count}, "custom": {name: count}}: a .tflite flatbuffer's operators."""
    from ai_edge_litert import schema_py_generated as schema

    builtin_names = {value: name for name, value in vars(schema.BuiltinOperator).items()
                     if not name.startswith("_")}
    model = schema.Model.GetRootAsModel(model_content, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            codes.append(("custom", code.CustomCode().decode("utf-8", "replace")))
        else:
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            codes.append(("builtin", builtin_names.get(builtin, str(builtin))))
    counts = {"builtin": {}, "custom": {}}
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            group, name = codes[subgraph.Operators(o).OpcodeIndex()]
            counts[group][name] = counts[group].get(name, 0) + 1
    return counts


def _check_custom_ops(content, text_input, signature):
    custom = set(tflite_ops(content)["custom"])
    unknown = sorted(custom - TEXT_OPS) if text_input else sorted(custom)
    if unknown:
        raise TFLiteExportError(
            f"The {signature} graph needs ops that neither LiteRT's builtins nor "
            f"tensorflow-text's TFLite kernels provide: {', '.join(unknown)}."
        )
    return sorted(custom)


def _convert(saved_model_dir, signature, quantization, text_input, representative_dataset,
             float_ops):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[signature]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    # tensorflow-text's ops become custom ops, checked against TEXT_OPS after.
    converter.allow_custom_ops = text_input
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        converter.representative_dataset = representative_dataset
        if text_input:
            from tensorflow_text import tflite_registrar

            # Calibration runs the graph, tokenizer included.
            calibrate_with_custom_ops(converter, tflite_registrar.SELECT_TFTEXT_OPS)
    try:
        with warnings.catch_warnings():
            # int8 calibration runs tf.lite's own (deprecated) interpreter.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            if quantization == "int8" and float_ops:
                # The converter takes no op denylist; its quantization debugger does.
                debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter, debug_dataset=representative_dataset,
                    debug_options=tf.lite.experimental.QuantizationDebugOptions(
                        denylisted_ops=list(float_ops)),
                )
                return debugger.get_nondebug_quantized_model()
            return converter.convert()
    except Exception as error:  # ConverterError, or ValueError from calibration
        raise _converter_error(error, signature) from error


def _write_atomically(path, write):
    """`write(temp_path)`, then the temp file renamed to `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    os.close(handle)
    try:
        write(temp)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _write_bytes(path, content):
    def write(temp):
        with open(temp, "wb") as f:
            f.write(content)
    _write_atomically(path, write)


def _tensor_description(specs):
    return {name: {"dtype": spec.dtype.name, "shape": [-1 if d is None else d
                                                       for d in spec.shape.as_list()]}
            for name, spec in specs.items()}


def _settings(builder, function, signature, quantization, float_ops, text_input, custom_ops,
              vocabulary_file):
    concrete = function.get_concrete_function()
    inputs = {spec.name: spec for spec in concrete.structured_input_signature[0]}
    tokenizer, model = builder.tokenizer, builder.model
    labels = getattr(model, "label_names", None) or getattr(model, "tag_names", None)
    encoder_config = builder.encoder.config
    special = {
        "cls": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id,
        "pad": tokenizer.pad_token_id, "unk": tokenizer.unk_token_id,
        "mask": tokenizer.mask_token_id,
    }
    return {
        "format_version": FORMAT_VERSION,
        "model": type(model).__name__,
        "kind": builder.kind,
        "signature": signature,
        "inputs": _tensor_description(inputs),
        "outputs": _tensor_description(concrete.structured_outputs),
        "text_input": text_input,
        "custom_ops": custom_ops,
        "quantization": quantization,
        "float_ops": list(float_ops),  # int8: the op types kept in float
        # Ids in: the fixed input length, or null for any length up to
        # max_sequence_length. Text in: texts are cut at sequence_length.
        "sequence_length": builder.id_length if not text_input else None,
        "max_sequence_length": (builder.preprocessor.sequence_length if text_input
                                else builder.packer.sequence_length),
        "vocabulary": vocabulary_file,
        "vocabulary_size": tokenizer.vocabulary_size(),
        # The ids each input takes, [0, limit), and the position table.
        "input_limits": _input_limits(builder.encoder.config, builder.id_inputs),
        "max_positions": encoder_config.max_sequence_length,
        "lowercase": tokenizer.lowercase,
        "strip_accents": tokenizer.strip_accents,
        "normalizer": tokenizer.normalizer,
        "special_tokens": {name: value for name, value in special.items() if value is not None},
        "labels": list(labels) if labels else None,
        "pairs": builder.pairs,
        "top_k": builder.top_k if builder.kind == "pretrainer" else None,
        "tensorflow": tf.__version__,
    }


def _input_limits(config, names):
    limits = {"input_ids": config.vocab_size, "padding_mask": 2,
              "segment_ids": getattr(config, "type_vocab_size", None)}
    return {name: limits[name] for name in names}


def tflite_builder(model, *, preprocessor=None, pairs=False, text_input=False,
                   sequence_length=None, top_k=5):
    """The `SignatureBuilder` whose function a TFLite export converts.

    Ids in: `predict_ids`, with inputs of the fixed `sequence_length` when
    given. Text in: `serving_default` of a copy of the model whose
    preprocessor tokenizes with the `tf_text` normaliser (cutting at
    `sequence_length` when given).
    """
    if text_input:
        preprocessor = on_device_preprocessor(resolve_preprocessor(model, preprocessor),
                                              sequence_length)
        if getattr(model, "preprocessor", None) is not None:
            model = copy_model(model, preprocessor=preprocessor)
            preprocessor = None
        return SignatureBuilder(model, preprocessor, pairs=pairs, top_k=top_k)
    return SignatureBuilder(model, preprocessor, pairs=pairs, top_k=top_k,
                            id_length=sequence_length)


def export_tflite(
    model,
    path,
    quantization="none",
    *,
    text_input=False,
    sequence_length=None,
    representative_texts=None,
    preprocessor=None,
    pairs=False,
    top_k=5,
    int8_float_ops=INT8_FLOAT_OPS,
):
    """Writes `model` as a .tflite file, with `<model>.json` and `<model>.vocab.txt` beside it.

    Args:
        model: what `export_saved_model` takes: a task, an encoder or a
            pretrainer.
        path: the .tflite file to write (replaced atomically if it exists).
        quantization: "none", "float16", "dynamic_range" or "int8".
        text_input: put the tokenizer inside (classifiers and encoders): the
            signature `serving_default` takes strings. Otherwise the
            signature `predict_ids` takes int32 ids.
        sequence_length: ids in: a fixed input length (static shapes, for
            accelerator delegates); by default any length up to the
            preprocessor's `sequence_length`. Text in: where texts are cut.
        representative_texts: texts (or pairs) to calibrate int8 activation
            ranges on, tokenized to int32 ids (ids in) or fed as strings.
        preprocessor: for encoders and pretrainers (a task's own by default).
        pairs: the classifier reads text pairs.
        top_k: tokens per [MASK] for a pretrainer.
        int8_float_ops: TFLite op types an int8 model keeps in float (default
            `INT8_FLOAT_OPS`, the element-wise ops: LayerNorm, residual sums,
            softmax, GELU); `()` quantizes every op that has an int8 kernel.

    Returns:
        `path`.

    Raises:
        TFLiteExportError: the graph needs an op LiteRT cannot run (named,
            with its layer), or a text-in model was asked of a kind that has
            none.
    """
    _check_arguments(model, path, quantization, text_input, sequence_length,
                     representative_texts)
    if isinstance(int8_float_ops, (str, bytes)) or not all(
            isinstance(op, str) and op.isupper() for op in int8_float_ops):
        raise ValueError(
            "`int8_float_ops` must be a sequence of TFLite op type names such as "
            f"('SOFTMAX', 'GELU'); got {int8_float_ops!r:.100}."
        )
    float_ops = tuple(int8_float_ops) if quantization == "int8" else ()
    path = os.path.abspath(os.fspath(path))
    builder = tflite_builder(model, preprocessor=preprocessor, pairs=pairs,
                             text_input=text_input, sequence_length=sequence_length, top_k=top_k)
    signature = "serving_default" if text_input else "predict_ids"
    function = builder.functions()[signature]
    representative = None
    if quantization == "int8":
        representative = _representative_dataset(builder, representative_texts, text_input)
    staging = tempfile.mkdtemp(prefix="keras_bert_kit_tflite_")
    try:
        archive = keras.export.ExportArchive()
        archive.track(builder.preprocessor)
        archive.add_endpoint(signature, function)
        archive.write_out(staging, verbose=False)
        content = _convert(staging, signature, quantization, text_input, representative,
                           float_ops)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    custom_ops = _check_custom_ops(content, text_input, signature)

    stem = os.path.splitext(os.path.basename(path))[0]
    vocabulary_file = f"{stem}.vocab.txt"
    settings = _settings(builder, function, signature, quantization, float_ops, text_input,
                         custom_ops, vocabulary_file)
    directory = os.path.dirname(path)
    _write_atomically(os.path.join(directory, vocabulary_file), builder.tokenizer.save_vocabulary)

    def write_settings(temp):
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(settings, f, indent=2)

    _write_atomically(sidecar_path(path), write_settings)
    _write_bytes(path, content)
    return path
