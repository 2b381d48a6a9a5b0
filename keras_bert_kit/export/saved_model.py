"""`export_saved_model`: a versioned SavedModel directory that TensorFlow Serving loads.

Layout (TF Serving's): `base_dir/<version>/saved_model.pb`, `variables/`,
`assets/` (vocab.txt, labels.txt, keras_bert_kit.json with the settings) and
`assets.extra/tf_serving_warmup_requests`. A version is written into a hidden
temporary sibling (`.<version>.tmp-*`, which TF Serving skips: only all-digit
names are versions) and renamed into place once complete, so a server
polling `base_dir` never sees half a version, and a failed export leaves
nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_bert_kit.export.signatures import SignatureBuilder, copy_model, encoder_of
from keras_bert_kit.export.warmup import warmup_inputs, write_warmup_requests
from keras_bert_kit.keras_internals import frozen_function
from keras_bert_kit.validation import is_int

DTYPES = ("float32", "bfloat16")
SETTINGS_FILE = "keras_bert_kit.json"
FORMAT_VERSION = 1


def existing_versions(base_dir) -> list[int]:
    """The version numbers under `base_dir`, ascending: all-digit directory names, as TF
    Serving reads them (an int64 each; anything else, such as the exporter's staging
    directories, is no version). An unreadable or missing `base_dir` has none."""
    try:
        names = os.listdir(base_dir)
    except OSError:
        return []
    return sorted(
        int(name) for name in names
        if name.isdigit() and name.isascii() and int(name) < 2**63
        and os.path.isdir(os.path.join(base_dir, name))
    )


def _check_version(version, base_dir, overwrite):
    if version is None:
        versions = existing_versions(base_dir)
        return versions[-1] + 1 if versions else 1
    if not is_int(version) or not 0 <= version < 2**63:
        raise ValueError(f"`version` must be an integer in [0, 2**63); got {version!r}.")
    target = os.path.join(base_dir, str(version))
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(
            f"{target} exists; pass overwrite=True to replace it, or another version."
        )
    return int(version)


def with_dtype(model, dtype):
    """`model` computing in `dtype`: itself for float32, a bfloat16 copy sharing nothing.

    "bfloat16" is Keras' `mixed_bfloat16` policy: weights stay float32, the
    encoder computes in bfloat16, heads and outputs are float32.
    """
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {DTYPES}; got {dtype!r}.")
    if dtype == "float32":
        return model
    encoder = encoder_of(model)
    copy = type(encoder)(
        encoder.config, output_attentions=encoder.output_attentions,
        dtype="mixed_bfloat16", name=encoder.name,
    )
    return copy_model(model, encoder=copy)


def _settings(builder, dtype, signatures):
    tokenizer = builder.tokenizer
    model = builder.model
    labels = getattr(model, "label_names", None) or getattr(model, "tag_names", None)
    return {
        "format_version": FORMAT_VERSION,
        "model": type(model).__name__,
        "kind": builder.kind,
        "dtype": dtype,
        "weights": "constants" if dtype == "bfloat16" else "variables",
        "sequence_length": builder.packer.sequence_length,
        "lowercase": tokenizer.lowercase,
        "strip_accents": tokenizer.strip_accents,
        "normalizer": tokenizer.normalizer,
        "vocabulary_size": tokenizer.vocabulary_size(),
        "labels": list(labels) if labels else None,
        "pairs": builder.pairs,
        "top_k": builder.top_k if builder.kind == "pretrainer" else None,
        "max_answer_length": builder.max_answer_length if builder.kind == "qa" else None,
        "signatures": signatures,
        "tensorflow": tf.__version__,
    }


def _write_assets(export_dir, builder, settings):
    assets = os.path.join(export_dir, "assets")
    os.makedirs(assets, exist_ok=True)
    builder.tokenizer.save_vocabulary(os.path.join(assets, "vocab.txt"))
    if settings["labels"]:
        with open(os.path.join(assets, "labels.txt"), "w", encoding="utf-8") as f:
            f.writelines(f"{label}\n" for label in settings["labels"])
    with open(os.path.join(assets, SETTINGS_FILE), "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=2)


def read_export_settings(export_dir) -> dict:
    """The settings an export recorded (`assets/keras_bert_kit.json`)."""
    path = os.path.join(export_dir, "assets", SETTINGS_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"{export_dir} is no keras_bert_kit export: {path} is missing.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _signature_description(function):
    concrete = function.get_concrete_function()
    inputs = {spec.name: spec for spec in concrete.structured_input_signature[0]}
    outputs = concrete.structured_outputs
    return {
        "inputs": {
            name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
            for name, spec in inputs.items()
        },
        "outputs": {
            name: {"dtype": value.dtype.name, "shape": value.shape.as_list()}
            for name, value in outputs.items()
        },
    }


def export_saved_model(
    model,
    base_dir,
    version=None,
    *,
    preprocessor=None,
    pairs=False,
    dtype="float32",
    top_k=5,
    max_answer_length=30,
    warmup=True,
    overwrite=False,
    signatures=None,
):
    """Exports `model` as version `version` of a TF Serving model directory.

    Args:
        model: a `SequenceClassifier`, `TokenClassifier` or `SpanExtractor`
            (its own preprocessor goes in), an encoder (with `preprocessor`:
            embeddings) or a pretrainer (with `preprocessor`: fill-mask).
        base_dir: the model's directory, as TF Serving's `--model_base_path`.
        version: an integer; by default one more than the highest present (1
            in an empty directory).
        preprocessor: the text preprocessor, for encoders and pretrainers (or
            to replace a task's own).
        pairs: the classifier reads text pairs (`text` and `text_pair`).
        dtype: "float32", or "bfloat16" (mixed_bfloat16 compute, float32
            outputs) for CPUs with AVX512-BF16 or AMX. A bfloat16 export
            holds its weights as graph constants (`variables/` is empty), so
            they are cast to bfloat16 once, when the server loads it.
        top_k: tokens per [MASK] from `fill_mask`.
        max_answer_length: the longest QA answer, in tokens.
        warmup: write `assets.extra/tf_serving_warmup_requests`.
        overwrite: replace an existing version `version`.
        signatures: the signatures to write (by default all of the kind's).
            `signatures=["predict_ids"]` writes a graph without TF Text ops,
            which every TF Serving release loads; Keras then writes it under
            `serving_default` as well, as TF Serving needs that name.

    Returns:
        The version directory, `base_dir/<version>`.

    Signatures (see `keras_bert_kit.export.signatures`): `serving_default`
    (text in), `predict_ids` (ids in), and `embed` (tasks, encoders) or
    `fill_mask` (pretrainers).
    """
    builder = SignatureBuilder(
        with_dtype(model, dtype), preprocessor, pairs=pairs, top_k=top_k,
        max_answer_length=max_answer_length, signatures=signatures,
    )
    base_dir = os.path.abspath(os.fspath(base_dir))
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise NotADirectoryError(f"{base_dir} is not a directory.")
    version = _check_version(version, base_dir, overwrite)
    os.makedirs(base_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=base_dir)
    try:
        functions = builder.functions()
        archive = keras.export.ExportArchive()
        if dtype == "bfloat16":
            # Weights as constants: with variables, mixed precision casts each
            # weight on every call and oneDNN re-lays it out, which keeps the
            # matrix products off AMX (bench/serving_throughput.py: about
            # 1.7x faster frozen).
            functions = {name: frozen_function(f) for name, f in functions.items()}
        # The endpoints bring the variables they read. Tracking the model as
        # well would save every weight twice (Keras 3.15's ExportArchive keeps
        # the Keras variables and, apart, the tf.Variables under them): a
        # SavedModel twice the size, and twice the memory in the server.
        archive.track(builder.preprocessor)
        for name, function in functions.items():
            archive.add_endpoint(name, function)
        archive.write_out(staging, verbose=False)
        signatures = {name: _signature_description(f) for name, f in functions.items()}
        _write_assets(staging, builder, _settings(builder, dtype, signatures))
        if warmup:
            write_warmup_requests(staging, warmup_inputs(builder))
        return _move_into_place(staging, os.path.join(base_dir, str(version)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging, target):
    """Renames the finished `staging` to `target` (replacing an old `target`)."""
    os.chmod(staging, 0o755)
    if os.path.lexists(target):
        retired = tempfile.mkdtemp(prefix=".retired-", dir=os.path.dirname(target))
        old = os.path.join(retired, "version")
        os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(old, target)
            raise
        finally:
            shutil.rmtree(retired, ignore_errors=True)
    else:
        os.rename(staging, target)
    return target
