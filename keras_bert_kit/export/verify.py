"""`verify_export`: the reloaded export against the Keras model, signature by signature."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from keras_bert_kit.export.saved_model import read_export_settings
from keras_bert_kit.export.signatures import SignatureBuilder, preprocessor_from_settings
from keras_bert_kit.export.tflite import tflite_builder
from keras_bert_kit.export.tflite_runner import TFLiteModel
from keras_bert_kit.tokenization.vocabulary import MASK_TOKEN

# Float32 exports run the model's own kernels: differences are reassociation
# noise. A bfloat16 export keeps 8 bits of mantissa in the encoder.
DEFAULT_TOLERANCES = {"float32": 1e-5, "bfloat16": 5e-2}
# TFLite: XNNPACK's float32 kernels reassociate; float16 weights keep 11
# bits; dynamic-range and int8 models round weights (and activations) to 8
# bits, which moves logits by a few hundredths to tenths and may flip a label
# whose classes are nearly tied.
DEFAULT_TFLITE_TOLERANCES = {"none": 1e-4, "float16": 2e-2, "dynamic_range": 0.25, "int8": 0.5}
DEFAULT_TFLITE_AGREEMENT = {"none": 1.0, "float16": 1.0, "dynamic_range": 0.9, "int8": 0.8}


class ExportVerificationError(ValueError):
    """The export's answers differ from the Keras model's beyond the tolerance."""


def _mask_a_word(text):
    words = text.split()
    if not words:
        return MASK_TOKEN
    words[len(words) // 2] = MASK_TOKEN
    return " ".join(words)


def verification_inputs(builder, texts):
    """{signature name: {input name: tensor}} for every signature, made from `texts`.

    Pretrainers are asked about texts with a [MASK] (the middle word of a
    text without one); `predict_ids` gets the ids the text signatures make.
    """
    columns = builder.text_columns(texts)
    first = columns[0]
    masked = tf.constant([
        t if MASK_TOKEN in t else _mask_a_word(t) for t in (s.decode() for s in first.numpy())
    ])
    if builder.kind == "pretrainer":
        features = builder.mask_features(masked)
    elif builder.kind == "classifier":
        features = builder.packer(tuple(columns) if builder.pairs else first)
    elif builder.kind == "qa":
        features = builder.packer(tuple(columns))
    else:
        features = builder.packer(first)
    inputs = {
        "serving_default": (
            {"text": masked} if builder.kind == "pretrainer"
            else dict(zip(builder.text_inputs, columns))
        ),
        "predict_ids": {name: features[name] for name in builder.id_inputs},
        "embed": {"text": first},
        "fill_mask": {"text": masked},
    }
    return {name: inputs[name] for name in builder.names}


def compare_outputs(expected, actual):
    """How `actual` outputs differ from `expected`: a report entry.

    {"max_abs_diff": over every float output, "agreement": the fraction of
    equal non-float elements, "output_diffs": {float output: its max abs
    difference}}.
    """
    equal, total, output_diffs = 0, 0, {}
    missing = sorted(set(expected) - set(actual))
    if missing:
        raise ExportVerificationError(f"The export lacks the outputs {missing}.")
    for name, value in expected.items():
        a, b = np.asarray(value), np.asarray(actual[name])
        if a.shape != b.shape:
            raise ExportVerificationError(
                f"Output {name!r} has shape {b.shape} in the export, {a.shape} in the model."
            )
        if a.dtype.kind == "f":
            same = a == b  # equal infinities (an empty QA context's score) differ by 0
            with np.errstate(invalid="ignore"):
                diff = np.where(same, 0.0, np.abs(a.astype(np.float64) - b))
            diff = np.where(np.isnan(diff), np.inf, diff)
            output_diffs[name] = float(diff.max(initial=0.0))
        else:
            equal += int(np.sum(a == b))
            total += a.size
    return {
        "max_abs_diff": max(output_diffs.values(), default=0.0),
        "agreement": equal / total if total else 1.0,
        "output_diffs": output_diffs,
    }


def _check_report(report, tolerance, min_agreement, where):
    failures = [
        f"{name}: max abs difference {r['max_abs_diff']:.3g} (tolerance {tolerance:g}), "
        f"agreement {r['agreement']:.3f} (minimum {min_agreement:g})"
        for name, r in report.items()
        if r["max_abs_diff"] > tolerance or r["agreement"] < min_agreement
    ]
    if failures:
        raise ExportVerificationError(
            f"The export at {where} differs from the model: " + "; ".join(failures)
        )
    return report


def verify_tflite(model, path, texts, *, preprocessor=None, tolerance=None, min_agreement=None):
    """Checks a .tflite from `export_tflite` against `model` on `texts`; see `verify_export`.

    Ids-in models are compared with the model's `predict_ids` on the same
    ids; text-in models with the model under the same on-device (`tf_text`)
    tokenizer. Defaults: `DEFAULT_TFLITE_TOLERANCES` and
    `DEFAULT_TFLITE_AGREEMENT` for the file's quantization.
    """
    runner = TFLiteModel(path)
    settings = runner.settings
    quantization = settings["quantization"]
    tolerance = DEFAULT_TFLITE_TOLERANCES[quantization] if tolerance is None else tolerance
    if min_agreement is None:
        min_agreement = DEFAULT_TFLITE_AGREEMENT[quantization]
    if preprocessor is None and getattr(model, "preprocessor", None) is None:
        preprocessor = preprocessor_from_settings(
            runner.vocabulary_path, settings, sequence_length=settings["max_sequence_length"])
    text_input = settings["text_input"]
    builder = tflite_builder(
        model, preprocessor=preprocessor, pairs=settings["pairs"], text_input=text_input,
        sequence_length=settings["max_sequence_length"] if text_input
        else settings["sequence_length"],
        top_k=settings["top_k"] or 5,
    )
    signature = settings["signature"]
    inputs = verification_inputs(builder, texts)[signature]
    expected = builder.functions()[signature](**inputs)
    actual = runner(**{name: value.numpy() for name, value in inputs.items()})
    report = {signature: compare_outputs({k: v.numpy() for k, v in expected.items()}, actual)}
    return _check_report(report, tolerance, min_agreement, path)


def verify_export(model, export_dir, texts, *, preprocessor=None, tolerance=None,
                  min_agreement=None):
    """Checks every signature of an export against `model` on `texts`.

    Args:
        model: the Keras model that was exported.
        export_dir: a version directory written by `export_saved_model`, or a
            .tflite file written by `export_tflite` (see `verify_tflite`).
        texts: strings; (first, second) string pairs for a pair classifier
            (text, text_pair) or QA (question, context).
        preprocessor: the preprocessor the export was made with, when the
            model has none (encoders, pretrainers); by default one is built
            from the export's own vocabulary and settings.
        tolerance: the largest allowed absolute difference of a float output;
            by default 1e-5 for float32 exports and 5e-2 for bfloat16
            (TFLite: per quantization, `DEFAULT_TFLITE_TOLERANCES`).
        min_agreement: the smallest allowed fraction of equal integer and
            string outputs (label ids, labels, tags, answers); by default 1
            (TFLite: per quantization, `DEFAULT_TFLITE_AGREEMENT`).

    Returns:
        {signature: {"max_abs_diff": float, "agreement": float, "output_diffs":
        {float output: max abs difference}}}.

    Raises:
        ExportVerificationError: a signature differs beyond the bounds.
    """
    if os.fspath(export_dir).endswith(".tflite"):
        return verify_tflite(model, export_dir, texts, preprocessor=preprocessor,
                             tolerance=tolerance, min_agreement=min_agreement)
    min_agreement = 1.0 if min_agreement is None else min_agreement
    settings = read_export_settings(export_dir)
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCES[settings["dtype"]]
    if preprocessor is None and getattr(model, "preprocessor", None) is None:
        preprocessor = preprocessor_from_settings(
            os.path.join(export_dir, "assets", "vocab.txt"), settings)
    builder = SignatureBuilder(
        model, preprocessor, pairs=settings["pairs"], top_k=settings["top_k"] or 5,
        max_answer_length=settings["max_answer_length"] or 30,
        signatures=list(settings["signatures"]),
    )
    loaded = tf.saved_model.load(export_dir)
    references = builder.functions()
    report = {}
    for name, inputs in verification_inputs(builder, texts).items():
        if name not in loaded.signatures:
            raise ExportVerificationError(f"The export has no {name!r} signature.")
        expected = references[name](**inputs)
        actual = loaded.signatures[name](**inputs)
        report[name] = compare_outputs(
            {k: v.numpy() for k, v in expected.items()},
            {k: v.numpy() for k, v in actual.items()},
        )
    return _check_report(report, tolerance, min_agreement, export_dir)
