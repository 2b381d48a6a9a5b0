"""Export matrix: size, batch-1 latency and accuracy of every export of two classifiers.

The models
----------
* teacher: all-MiniLM-L6-v2 (6 layers, hidden 384) with a 2-class head,
  fine-tuned one epoch on the Rotten Tomatoes train split: the classifier of
  bench/serving_throughput.py, read from its cache (`--teacher`, default
  runs/serving_throughput/classifier.keras) or fine-tuned and saved there
  with serving_throughput.py's recipe.
* student: a 3-layer DistilBERT-style student initialised from teacher layers
  0, 2, 4 and task-distilled from it with bench/distill_quality.py's recipe
  (`--student-epochs`, 3 by default; the recipe used is printed), cached under
  `--work-dir` keyed by teacher file and recipe.

The variants (each model)
-------------------------
SavedModel (`export_saved_model`) float32 and bfloat16, and TFLite
(`export_tflite`) float32 ("none"), float16, dynamic-range and int8 (calibrated
on `--calibration-texts` training-split texts, 200 by default), each ids in
(`predict_ids`: int32 ids tokenized on the host by the exact BERT tokenizer)
and text in (`serving_default`: strings; the SavedModel tokenizes with the
exact BERT normaliser, TFLite with tensorflow-text's FastBertNormalize).

What is measured
----------------
* size: the .tflite file; for a SavedModel, every file of its version
  directory (graph, variables, vocabulary, warm-up requests).
* accuracy: every test snippet (2,509) classified one at a time (batch 1).
* latency: one snippet per call (batch 1), median over `--latency-snippets`
  (200) test snippets drawn at random (seed 0) and shared by every variant.
  Ids in times the model call only (ids prepared beforehand); text in times
  the call with the string, tokenizer included. TFLite runs on one
  interpreter thread (`TFLiteModel(path, num_threads=1)`); SavedModels in the
  same process with TensorFlow's intra- and inter-op pools set to one thread.
  That process is a child started for measuring only (TensorFlow's thread
  pools are fixed once it runs an op, and the parent trains and converts on
  every core). All variants are timed in `--rounds` (4) round-robin rounds,
  each variant taking its share of the snippets per round after two untimed
  warm-up calls, so drift in the machine's load falls on every variant alike.
* text in vs exact tokenization: the fraction of test snippets whose
  tf_text-normaliser ids differ from the exact BERT tokenizer's, and the
  label agreement of the text-in and ids-in float32 TFLite models.

Tables give each variant's ratios against the same model's float32 TFLite and
float32 SavedModel with the same kind of input. Targets (PASS / FALL SHORT):
dynamic-range size <= 0.3x float32 TFLite and accuracy within 1 point of it;
int8 or dynamic-range latency >= 1.5x faster than float32 TFLite; the
student's dynamic-range TFLite within 1.5 points of the float32 teacher.
A PNG plots accuracy against latency for every variant.

`--int8-study`: which ops cost int8 its accuracy. The teacher's ids-in graph
is calibrated once with `tf.lite.experimental.QuantizationDebugger` (the same
texts as the int8 export), its per-layer quantization error is ranked by op
type, and models keeping op types or tensors in float (`STUDY_SETS`:
`QuantizationDebugOptions(denylisted_ops=..., denylisted_nodes=...)`,
`get_nondebug_quantized_model()`) are measured like the variants above
(accuracy, latency, size).

    .venv/bin/python bench/export_matrix.py                 # full run (`make bench-export`)
    .venv/bin/python bench/export_matrix.py --int8-study    # plus the int8 op study
    .venv/bin/python bench/export_matrix.py --quick         # smoke run: measures nothing

Progress goes to stderr, the results to stdout. The load average is printed
at the start and end: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from _results import BenchReport  # noqa: E402
from _timing import usable_cores  # noqa: E402

QUANTIZATIONS = ("none", "float16", "dynamic_range", "int8")
PRECISION_NAMES = {"none": "float32", "float16": "float16", "dynamic_range": "dynamic-range",
                   "int8": "int8"}
SAVED_MODEL_DTYPES = ("float32", "bfloat16")
INPUTS = ("ids", "text")
SIGNATURE_OF_INPUT = {"ids": "predict_ids", "text": "serving_default"}
TARGET_DYNAMIC_RANGE_SIZE = 0.3       # x float32 TFLite
TARGET_QUANTIZED_ACCURACY_LOSS = 1.0  # points vs float32 TFLite
TARGET_QUANTIZED_SPEEDUP = 1.5        # x float32 TFLite
TARGET_STUDENT_LOSS = 1.5             # points vs the float32 teacher
LAYER_NORM_OPS = ["MEAN", "SQUARED_DIFFERENCE", "RSQRT"]
# Every tensor of a LayerNorm (its MULs and ADDs too), and the residual ADDs that feed one.
LAYER_NORM_NODES = r"layer_norm"
RESIDUAL_NODES = r"layer_norm|embeddings_1/add(_1)?$|transformer_layer_\d+_1/add(_1)?$"
STUDY_SETS = {  # what stays float: op types (denylisted_ops) and tensors (denylisted_nodes, regex)
    "int8 (all ops)": dict(ops=[]),
    "float GATHER (embeddings)": dict(ops=["GATHER"]),
    "float SOFTMAX": dict(ops=["SOFTMAX"]),
    "float GELU": dict(ops=["GELU"]),
    "float LayerNorm ops (MEAN, SQUARED_DIFFERENCE, RSQRT)": dict(ops=LAYER_NORM_OPS),
    "float BATCH_MATMUL (attention)": dict(ops=["BATCH_MATMUL"]),
    "float LayerNorm ops + SOFTMAX + GELU": dict(ops=[*LAYER_NORM_OPS, "SOFTMAX", "GELU"]),
    "float LayerNorm, every tensor": dict(ops=[], nodes=LAYER_NORM_NODES),
    "float LayerNorm + residual ADDs": dict(ops=[], nodes=RESIDUAL_NODES),
    "float LayerNorm + residual ADDs + SOFTMAX + GELU": dict(ops=["SOFTMAX", "GELU"],
                                                            nodes=RESIDUAL_NODES),
    "int8 FULLY_CONNECTED and BATCH_MATMUL only": dict(
        ops=["ADD", "MUL", "SUB", *LAYER_NORM_OPS, "SOFTMAX", "GELU", "TANH"]),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# === The models ====================================================================


def quick_teacher(train):
    """--quick without --teacher: a 6-layer, 32-wide BERT with MiniLM's vocabulary, fit on `train`.

    Small enough that all 16 TFLite conversions take seconds; it exercises every
    path of the benchmark and measures nothing.
    """
    import keras

    import keras_bert_kit as kbk
    from keras_bert_kit.assets import minilm_model_dir

    keras.utils.set_random_seed(0)
    preprocessor = kbk.SequenceClassifierPreprocessor(
        kbk.preprocessor_from_huggingface(minilm_model_dir()).tokenizer, 128)
    config = kbk.BertConfig(vocab_size=preprocessor.tokenizer.vocabulary_size(), hidden_size=32,
                            num_layers=6, num_heads=4, intermediate_size=64,
                            max_sequence_length=128)
    classifier = kbk.SequenceClassifier(kbk.BertEncoder(config), 2, preprocessor=preprocessor,
                                        label_names=list(train.label_names))
    classifier.compile(optimizer=kbk.create_optimizer(1e-3, num_train_steps=8))
    classifier.fit(preprocessor.dataset(list(train.texts), np.asarray(train.labels),
                                        batch_size=32), epochs=1, verbose=0)
    return classifier


def teacher_model(path: str, train, quick: bool):
    """The fine-tuned MiniLM-L6 classifier at `path`, fine-tuned (and saved there) if missing."""
    if path and os.path.exists(path):
        import keras

        import keras_bert_kit  # noqa: F401  (registers the classes the file names)

        log(f"teacher: loading {path}")
        return keras.saving.load_model(path)
    # serving_throughput.py owns the recipe; it imports torch and ONNX Runtime, so only now.
    from serving_throughput import fine_tuned_classifier

    return fine_tuned_classifier(path, train, quick)


def student_recipe(epochs: int | None = None) -> dict:
    """distill_quality.py's student recipe, with `epochs` epochs (its own number by default)."""
    from distill_quality import STUDENT_RECIPE

    return dict(STUDENT_RECIPE, epochs=epochs or STUDENT_RECIPE["epochs"])


def file_identity(path: str | None) -> str:
    if not path or not os.path.exists(path):
        return "fresh"
    status = os.stat(path)
    return f"{os.path.realpath(path)}:{status.st_size}:{status.st_mtime_ns}"


def student_model(teacher, teacher_path, train, recipe: dict, work_dir: str):
    """The 3-layer student distilled from `teacher` (distill_quality.py), cached in `work_dir`.

    The cache key holds the teacher file's identity, the recipe and the
    training-set size, so a new teacher or recipe distills a new student.
    """
    import keras

    from distill_quality import distill

    key = json.dumps([file_identity(teacher_path), recipe, len(train)], sort_keys=True)
    path = os.path.join(work_dir, f"student-{hashlib.sha1(key.encode()).hexdigest()[:12]}.keras")
    if os.path.exists(path) and teacher_path:
        log(f"student: loading {path}")
        with open(path + ".json", encoding="utf-8") as f:
            seconds = json.load(f)["seconds"]
        return keras.saving.load_model(path), path, seconds
    data = teacher.preprocessor.dataset(list(train.texts), np.asarray(train.labels),
                                        batch_size=recipe["batch_size"], shuffle=True,
                                        seed=recipe["seed"])
    log(f"student: distilling ({recipe['epochs']} epoch(s) on {len(train)} snippets)")
    student, seconds = distill(teacher, data, recipe)
    if teacher_path:  # a throwaway teacher makes a throwaway student
        os.makedirs(work_dir, exist_ok=True)
        student.save(path)
        with open(path + ".json", "w", encoding="utf-8") as f:
            json.dump({"teacher": file_identity(teacher_path), "recipe": recipe,
                       "train_snippets": len(train), "seconds": seconds}, f, indent=2)
    return student, path, seconds


# === The exports ===================================================================


def variant_name(variant: dict) -> str:
    return f"{variant['format']} {variant['precision']} {variant['input']}-in"


def directory_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def timed_export(path: str, reuse: bool, export) -> float | None:
    """Seconds `export()` took, or None when `reuse` and `path` exists already."""
    if reuse and os.path.exists(path):
        return None
    start = time.perf_counter()
    export()
    return time.perf_counter() - start


def export_variants(model, model_name: str, directory: str, calibration_texts: list[str],
                    reuse: bool) -> list[dict]:
    """Every SavedModel and TFLite export of `model` under `directory`, as variant records."""
    from keras_bert_kit.export import export_saved_model, export_tflite

    variants = []
    for dtype in SAVED_MODEL_DTYPES:
        base = os.path.join(directory, f"saved_model_{dtype}")
        version_dir = os.path.join(base, "1")
        log(f"  {model_name}: SavedModel {dtype}")
        seconds = timed_export(version_dir, reuse, lambda base=base, dtype=dtype: (
            export_saved_model(model, base, version=1, dtype=dtype, overwrite=True)))
        for kind in INPUTS:
            variants.append(dict(model=model_name, format="SavedModel", precision=dtype,
                                 input=kind, path=version_dir, size_bytes=directory_bytes(
                                     version_dir), export_seconds=seconds))
    for quantization in QUANTIZATIONS:
        for kind in INPUTS:
            path = os.path.join(directory, f"{kind}_{quantization}.tflite")
            log(f"  {model_name}: TFLite {quantization} {kind} in")
            seconds = timed_export(path, reuse, lambda path=path, q=quantization, kind=kind: (
                export_tflite(model, path, q, text_input=kind == "text",
                              representative_texts=calibration_texts if q == "int8" else None)))
            variants.append(dict(model=model_name, format="TFLite",
                                 precision=PRECISION_NAMES[quantization], input=kind, path=path,
                                 size_bytes=os.path.getsize(path), export_seconds=seconds))
    return variants


# === Text in: the on-device normaliser against the exact BERT tokenizer ===========


def tokenization_difference(classifier, texts: list[str]) -> dict:
    """How often tensorflow-text's FastBertNormalize tokenization differs from BERT's own."""
    import collections

    import tensorflow as tf

    from keras_bert_kit.export.tflite import on_device_preprocessor

    exact = classifier.preprocessor.tokenizer
    on_device = on_device_preprocessor(classifier.preprocessor).tokenizer
    exact_ids = exact(tf.constant(texts)).to_list()
    on_device_ids = on_device(tf.constant(texts)).to_list()
    differing = [i for i, (a, b) in enumerate(zip(exact_ids, on_device_ids)) if a != b]
    # Which characters the differing snippets hold that the others do not explain:
    # every non-ASCII character of a differing snippet, counted once per snippet.
    characters = collections.Counter(
        ch for i in differing for ch in set(texts[i]) if ord(ch) > 127)
    return {
        "snippets": len(texts),
        "differing": len(differing),
        "fraction_differing": len(differing) / len(texts),
        "differing_indices": differing,
        "non_ascii_characters_in_differing": [
            [f"U+{ord(ch):04X} {ch}", count] for ch, count in characters.most_common(12)],
        "examples": [{"text": texts[i],
                      "exact": exact.detokenize(tf.constant(exact_ids[i])).numpy().decode(),
                      "tf_text": on_device.detokenize(
                          tf.constant(on_device_ids[i])).numpy().decode()}
                     for i in differing[:3]],
    }


# === Measuring: a child process with one-thread TensorFlow ========================


def classifier_runner(variant: dict, texts: list[str], id_features: dict):
    """`run(i)`: the label `variant` predicts for `texts[i]`, one snippet per call.

    Ids-in inputs are prepared here (`id_features[model][i]`: the exact BERT
    tokenizer's ids of snippet i), so a call times the model alone.
    """
    features = id_features[variant["model"]]
    if variant["format"] == "TFLite":
        from keras_bert_kit.export import TFLiteModel

        model = TFLiteModel(variant["path"], num_threads=1)
        if variant["input"] == "text":
            return lambda i: int(model(text=[texts[i]])["logits"][0].argmax())
        return lambda i: int(model(**features[i])["logits"][0].argmax())

    import tensorflow as tf

    function = tf.saved_model.load(variant["path"]).signatures[
        SIGNATURE_OF_INPUT[variant["input"]]]
    if variant["input"] == "text":
        strings = [tf.constant([text]) for text in texts]
        return lambda i: int(function(text=strings[i])["logits"].numpy()[0].argmax())
    tensors = [{name: tf.constant(value) for name, value in feature.items()}
               for feature in features]
    return lambda i: int(function(**tensors[i])["logits"].numpy()[0].argmax())


def measure_variants(manifest: dict) -> dict:
    """Predictions on every snippet and batch-1 latencies of every variant (see the docstring)."""
    import gc

    from keras_bert_kit.export import TFLiteModel

    texts, variants = manifest["texts"], manifest["variants"]
    id_features = {}
    for model_name, reference in manifest["id_reference"].items():
        tokenizing = TFLiteModel(reference, num_threads=1)
        id_features[model_name] = [tokenizing.features([text]) for text in texts]
    runners = {}
    for key, variant in variants.items():
        runners[key] = classifier_runner(variant, texts, id_features)
    results = {key: {} for key in variants}
    for key, run in runners.items():
        start = time.perf_counter()
        results[key]["predictions"] = [run(i) for i in range(len(texts))]
        seconds = time.perf_counter() - start
        results[key]["accuracy_pass_seconds"] = seconds
        log(f"  predicted {len(texts)} snippets: {key} ({seconds:.0f} s)")
    chunks = np.array_split(np.asarray(manifest["latency_indices"]), manifest["rounds"])
    times = {key: [] for key in variants}
    for round_index, chunk in enumerate(chunks):
        for key, run in runners.items():
            for _ in range(2):  # untimed: refills the caches another variant evicted
                run(int(chunk[0]))
            gc.collect()
            gc.disable()
            try:
                for i in chunk:
                    start = time.perf_counter()
                    run(int(i))
                    times[key].append(time.perf_counter() - start)
            finally:
                gc.enable()
        log(f"  latency round {round_index + 1}/{len(chunks)} "
            f"(load average {os.getloadavg()[0]:.2f})")
    for key, values in times.items():
        ms = np.asarray(values) * 1000
        q1, median, q3, p90 = np.percentile(ms, [25, 50, 75, 90])
        results[key].update(latency_ms=float(median), latency_q1_ms=float(q1),
                            latency_q3_ms=float(q3), latency_p90_ms=float(p90),
                            latency_calls=len(ms))
    return results


def child_main(manifest_path: str, output_path: str) -> None:
    import tensorflow as tf

    # Before any op runs: afterwards TensorFlow's thread pools are fixed.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tensorflow_text  # noqa: F401  (the text-in SavedModels' tokenizer ops)

    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    load_start = os.getloadavg()[0]
    results = measure_variants(manifest)
    with open(output_path, "w", encoding="utf-8") as f:
        json.dump({"variants": results, "load_average_start": load_start,
                   "load_average_end": os.getloadavg()[0],
                   "tensorflow_threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                                          tf.config.threading.get_inter_op_parallelism_threads()]},
                  f)


def measure_in_child(manifest: dict, work_dir: str) -> dict:
    manifest_path = os.path.join(work_dir, "manifest.json")
    output_path = os.path.join(work_dir, "measurements.json")
    with open(manifest_path, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--measure-child", manifest_path,
                    output_path], check=True)
    with open(output_path, encoding="utf-8") as f:
        return json.load(f)


# === int8: which ops cost the accuracy =============================================


def layer_rows(debugger) -> list[dict]:
    """The debugger's layer statistics of its last run, as CSV rows (op_name, tensor_name, ...)."""
    import csv
    import io

    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    return list(csv.DictReader(io.StringIO(buffer.getvalue())))


def op_type_errors(rows: list[dict]) -> tuple[list, list]:
    """Quantization error by op type and the worst tensors, from layer-statistics rows.

    Error is the root-mean-square difference between each quantized op's
    output and the float one, in units of the output's quantization step
    (rmse / scale, as TensorFlow's quantization-debugger guide ranks layers),
    averaged over the runs.
    """
    import collections

    by_tensor = collections.defaultdict(list)
    for row in rows:
        scale = float(row["scale"])
        if scale:
            error = float(np.sqrt(float(row["mean_squared_error"]))) / scale
            by_tensor[(row["op_name"], row["tensor_name"])].append(error)
    tensors = [[op, name, float(np.nanmean(errors))] for (op, name), errors in by_tensor.items()]
    by_type = collections.defaultdict(list)
    for op, _, error in tensors:
        by_type[op].append(error)
    types = sorted(([name, len(errors), float(np.nanmean(errors)),
                     float(np.nanmax(errors))]
                    for name, errors in by_type.items()), key=lambda row: -np.nan_to_num(row[2]))
    return types, sorted(tensors, key=lambda row: -np.nan_to_num(row[2]))[:10]


def int8_study(model, directory: str, calibration_texts: list[str], debug_texts: list[str],
               settings_from: str) -> tuple[list[dict], dict]:
    """Models keeping each of `STUDY_SETS` in float, written beside `settings_from`'s int8 model.

    The ids-in (`predict_ids`) graph goes through the same path as
    `export_tflite` (an `ExportArchive` SavedModel, then the converter),
    calibrated once by the `QuantizationDebugger`; each set re-quantizes that
    calibrated model. Returns the variant records and the layer statistics.
    """
    import keras
    import tensorflow as tf

    from keras_bert_kit.export.tflite import tflite_builder

    builder = tflite_builder(model)
    function = builder.functions()["predict_ids"]
    names = [spec.name for spec in function.get_concrete_function().structured_input_signature[0]]

    def features(texts):
        for text in texts:
            packed = builder.packer(tf.constant([text]))
            yield {name: packed[name].numpy() for name in names}

    staging = os.path.join(directory, "int8_study_saved_model")
    shutil.rmtree(staging, ignore_errors=True)
    archive = keras.export.ExportArchive()
    archive.track(builder.model)
    archive.track(builder.preprocessor)
    archive.add_endpoint("predict_ids", function)
    archive.write_out(staging, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(staging, signature_keys=["predict_ids"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: features(calibration_texts)
    input_order = []  # the debug model's input order, known once it exists
    current = []  # the one sample the next `debugger.run()` reads

    def debug_samples():
        yield [current[0][next(n for n in names if n in detail)] for detail in input_order]

    log(f"  int8 study: calibrating on {len(calibration_texts)} texts")
    start = time.perf_counter()
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=debug_samples)
    calibration_seconds = time.perf_counter() - start
    input_order.extend(detail["name"] for detail in
                       tf.lite.Interpreter(model_content=debugger.quant_model).get_input_details())
    log(f"  int8 study: layer statistics on {len(debug_texts)} texts")
    # The debugger sizes its interpreter on the first sample of a run, so each text
    # (unpadded, as at batch 1) gets a run of its own; the errors are averaged after.
    rows = []
    for sample in features(debug_texts):
        current[:] = [sample]
        debugger.run()
        rows += layer_rows(debugger)
    types, worst = op_type_errors(rows)
    with open(settings_from.removesuffix(".tflite") + ".json", encoding="utf-8") as f:
        settings = json.load(f)
    variants = []
    tensor_names = sorted({row["tensor_name"] for row in rows})
    for index, (label, kept) in enumerate(STUDY_SETS.items()):
        ops = kept["ops"]
        nodes = [name for name in tensor_names
                 if kept.get("nodes") and re.search(kept["nodes"], name)]
        log(f"  int8 study: {label} ({len(ops)} op types, {len(nodes)} tensors in float)")
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=ops or None, denylisted_nodes=nodes or None)
        path = os.path.join(directory, f"int8_study_{index}.tflite")
        with open(path, "wb") as f:
            f.write(debugger.get_nondebug_quantized_model())
        with open(path.removesuffix(".tflite") + ".json", "w", encoding="utf-8") as f:
            json.dump(dict(settings, quantization=f"int8, float: {kept}"), f, indent=2)
        variants.append(dict(model="teacher", format="TFLite", precision=label, input="ids",
                             path=path, size_bytes=os.path.getsize(path), float_ops=ops,
                             float_tensors=nodes, study=True))
    shutil.rmtree(staging, ignore_errors=True)
    return variants, {"op_types": types, "worst_layers": worst,
                      "calibration_seconds": calibration_seconds}


# === Report ========================================================================


def verdict(met: bool) -> str:
    return "PASS" if met else "FALL SHORT"


def find(variants: dict, **fields) -> dict:
    (match,) = [v for v in variants.values() if all(v.get(k) == x for k, x in fields.items())]
    return match


def ratio_table(variants: dict, model_name: str) -> tuple[list[str], list[list[str]]]:
    """One model's variants against its float32 TFLite and float32 SavedModel (same input)."""
    rows = []
    for kind in INPUTS:
        tflite = find(variants, model=model_name, format="TFLite", precision="float32",
                      input=kind)
        saved = find(variants, model=model_name, format="SavedModel", precision="float32",
                     input=kind)
        for v in variants.values():
            if v["model"] != model_name or v["input"] != kind or v.get("study"):
                continue
            rows.append([
                variant_name(v), f"{v['size_bytes'] / 1e6:.1f}",
                f"{v['size_bytes'] / tflite['size_bytes']:.2f}x",
                f"{v['size_bytes'] / saved['size_bytes']:.2f}x",
                f"{v['latency_ms']:.2f}",
                f"{100 * (v['latency_q3_ms'] - v['latency_q1_ms']) / v['latency_ms']:.0f}%",
                f"{tflite['latency_ms'] / v['latency_ms']:.2f}x",
                f"{saved['latency_ms'] / v['latency_ms']:.2f}x",
                f"{100 * v['accuracy']:.2f}",
                f"{100 * (v['accuracy'] - tflite['accuracy']):+.2f}",
                f"{100 * (v['accuracy'] - saved['accuracy']):+.2f}",
                f"{100 * agreement(v, tflite):.1f}",
            ])
    return ["variant", "MB", "size/TFLite f32", "size/SM f32", "p50 ms", "IQR",
            "speed x TFLite f32", "speed x SM f32", "accuracy %", "pts vs TFLite f32",
            "pts vs SM f32", "same label as TFLite f32 %"], rows


def agreement(a: dict, b: dict) -> float:
    return float(np.mean(np.asarray(a["predictions"]) == np.asarray(b["predictions"])))


def targets(variants: dict) -> list[dict]:
    """Each target of the docstring, per model and input kind, with its figure."""
    found = []
    for model_name in ("teacher", "student"):
        for kind in INPUTS:
            def get(precision, model=model_name):
                return find(variants, model=model, format="TFLite", precision=precision,
                            input=kind)

            base, dynamic, int8 = get("float32"), get("dynamic-range"), get("int8")
            where = f"{model_name} {kind}-in"
            size = dynamic["size_bytes"] / base["size_bytes"]
            found.append(dict(target=f"{where}: dynamic-range size <= "
                              f"{TARGET_DYNAMIC_RANGE_SIZE}x float32 TFLite",
                              value=f"{size:.2f}x", met=size <= TARGET_DYNAMIC_RANGE_SIZE))
            for label, v in (("dynamic-range", dynamic), ("int8", int8)):
                loss = 100 * (base["accuracy"] - v["accuracy"])
                found.append(dict(target=f"{where}: {label} accuracy within "
                                  f"{TARGET_QUANTIZED_ACCURACY_LOSS} point of float32 TFLite",
                                  value=f"{-loss:+.2f} points",
                                  met=loss <= TARGET_QUANTIZED_ACCURACY_LOSS))
            speedups = {label: base["latency_ms"] / v["latency_ms"]
                        for label, v in (("int8", int8), ("dynamic-range", dynamic))}
            best = max(speedups, key=speedups.get)
            found.append(dict(target=f"{where}: int8 or dynamic-range >= "
                              f"{TARGET_QUANTIZED_SPEEDUP}x faster than float32 TFLite",
                              value=", ".join(f"{k} {x:.2f}x" for k, x in speedups.items()),
                              met=speedups[best] >= TARGET_QUANTIZED_SPEEDUP))
            if model_name == "student":
                teacher = get("float32", model="teacher")
                loss = 100 * (teacher["accuracy"] - dynamic["accuracy"])
                found.append(dict(target=f"student {kind}-in dynamic-range within "
                                  f"{TARGET_STUDENT_LOSS} points of the float32 teacher "
                                  f"(TFLite {kind}-in)",
                                  value=f"{-loss:+.2f} points", met=loss <= TARGET_STUDENT_LOSS))
    return found


def study_table(variants: dict) -> tuple[list[str], list[list[str]]]:
    reference = find(variants, model="teacher", format="TFLite", precision="float32", input="ids")
    rows = [[v["precision"], f"{v['size_bytes'] / 1e6:.1f}", f"{v['latency_ms']:.2f}",
             f"{reference['latency_ms'] / v['latency_ms']:.2f}x", f"{100 * v['accuracy']:.2f}",
             f"{100 * (v['accuracy'] - reference['accuracy']):+.2f}",
             f"{100 * agreement(v, reference):.1f}",
             verdict(100 * (reference["accuracy"] - v["accuracy"])
                     <= TARGET_QUANTIZED_ACCURACY_LOSS)]
            for v in variants.values() if v.get("study")]
    return ["kept in float", "MB", "p50 ms", "speed x TFLite f32", "accuracy %",
            "pts vs TFLite f32", "same label %", "<= 1 point"], rows


def plot(variants: dict, path: str) -> None:
    """Accuracy against batch-1 latency, one point per variant (the int8 study's numbered)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colors = {"SavedModel float32": "tab:blue", "SavedModel bfloat16": "tab:cyan",
              "TFLite float32": "tab:green", "TFLite float16": "tab:olive",
              "TFLite dynamic-range": "tab:orange", "TFLite int8": "tab:red",
              "int8 study (number: row of its table)": "tab:purple"}
    markers = {"teacher": "o", "student": "s"}
    figure, axes = plt.subplots(figsize=(10, 6.5))
    study = [v for v in variants.values() if v.get("study")]
    for v in variants.values():
        family = f"{v['format']} {v['precision']}"
        color = colors["int8 study (number: row of its table)" if v.get("study") else family]
        axes.scatter(v["latency_ms"], 100 * v["accuracy"], s=60, marker=markers[v["model"]],
                     facecolors=color if v["input"] == "ids" else "none", edgecolors=color)
        if v.get("study"):
            axes.annotate(str(study.index(v) + 1), (v["latency_ms"], 100 * v["accuracy"]),
                          fontsize=7, xytext=(4, 3), textcoords="offset points", color=color)
    handles = [Line2D([], [], linestyle="", marker="o", color=color, label=family)
               for family, color in colors.items() if study or "study" not in family]
    handles += [Line2D([], [], linestyle="", marker=marker, color="gray", label=name)
                for name, marker in markers.items()]
    handles += [Line2D([], [], linestyle="", marker="o", color="gray", label="ids in"),
                Line2D([], [], linestyle="", marker="o", color="gray", markerfacecolor="none",
                       label="text in")]
    axes.legend(handles=handles, fontsize=8, loc="best")
    axes.set_xscale("log")
    axes.set_xlabel("batch-1 latency, median ms over test snippets (one thread, log scale)")
    axes.set_ylabel("Rotten Tomatoes test accuracy %")
    axes.set_title("Exports of the fine-tuned MiniLM-L6 classifier and its 3-layer student",
                   fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def report(out: BenchReport, meta: dict, variants: dict, tokenization: dict,
           study: dict | None) -> list[dict]:
    quick = "  [QUICK: not a measurement]" if meta["quick"] else ""
    distilled = (f"; distilled in {meta['distill_seconds'] / 60:.1f} minutes"
                 if meta["distill_seconds"] else "")
    out.note(f"{meta['cores']} usable CPU(s); load average (1 min) at start "
             f"{meta['load_average_start']:.2f}, when measuring "
             f"{meta['load_average_measure_start']:.2f} -> "
             f"{meta['load_average_measure_end']:.2f}, at end {meta['load_average_end']:.2f}"
             f"{quick}\n"
             f"teacher: {meta['teacher']}\n"
             f"student: {meta['student']} (recipe: {meta['student_recipe_name']}: "
             f"{meta['student_recipe']}{distilled})\n"
             f"Rotten Tomatoes test: {meta['test_snippets']} snippets, each at batch 1 for "
             f"accuracy; latency: median of {meta['latency_snippets']} test snippets x 1 call, "
             f"batch 1, {meta['rounds']} round-robin rounds; TFLite num_threads=1, SavedModel "
             "TensorFlow intra/inter-op threads 1/1 (child process); int8 calibrated on "
             f"{meta['calibration_texts']} training texts")
    for model_name in ("teacher", "student"):
        print()
        out.table(*ratio_table(variants, model_name),
                  title=f"{model_name}: ratios against its own float32 TFLite and float32 "
                  "SavedModel with the same input (speed x: reference latency / latency)")
    lines = [f"\nText in vs exact BERT tokenization ({tokenization['snippets']} test snippets): "
             f"tf_text ids differ on {tokenization['differing']} "
             f"({100 * tokenization['fraction_differing']:.2f}%)"]
    if tokenization["non_ascii_characters_in_differing"]:
        lines.append("  non-ASCII characters in those snippets (snippets): " + ", ".join(
            f"{name} ({count})"
            for name, count in tokenization["non_ascii_characters_in_differing"]))
    differing = tokenization["differing_indices"]
    for model_name in ("teacher", "student"):
        text, ids = (find(variants, model=model_name, format="TFLite", precision="float32",
                          input=kind) for kind in ("text", "ids"))
        same = np.asarray(text["predictions"]) == np.asarray(ids["predictions"])
        on_differing = (f"; on the {len(differing)} differing snippets "
                        f"{100 * np.mean(same[differing]):.2f}%" if differing else "")
        lines.append(f"  {model_name}: text-in float32 TFLite gives the ids-in (exact) float32 "
                     f"TFLite's label on {100 * np.mean(same):.2f}% of snippets{on_differing}")
    out.note("\n".join(lines))
    found = targets(variants)
    out.note("\nTargets:\n" + "\n".join(f"  {t['target']}: {t['value']} ({verdict(t['met'])})"
                                         for t in found))
    if study:
        print()
        out.table(["op type", "tensors", "mean rmse/scale", "max rmse/scale"],
                  [[name, str(n), f"{mean:.3f}", f"{worst:.3f}"]
                   for name, n, mean, worst in study["op_types"]],
                  title="int8 study (teacher, ids in): quantization error by op type "
                  "(rmse of the op's output / its quantization step, over the debug texts)")
        out.table(["op type", "tensor", "rmse/scale"],
                  [[op, name[:70], f"{error:.3f}"] for op, name, error in
                   study["worst_layers"]], title="worst tensors:")
        print()
        out.table(*study_table(variants),
                  title="int8 with op types or tensors kept in float (QuantizationDebugOptions("
                  "denylisted_ops=..., denylisted_nodes=...)), against the teacher's float32 "
                  "TFLite ids-in:")
    out.note(f"\nplot: {meta['plot']}")
    out.chart("accuracy_vs_latency", lambda path: plot(variants, path))
    return found


# === Main ==========================================================================


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a tiny throwaway teacher (unless --teacher), 48 test "
                        "snippets, 24 latency snippets, 16 calibration texts, a 1-epoch student "
                        "on 256 snippets; checks that it works, measures nothing")
    parser.add_argument("--teacher", metavar="PATH",
                        help="the fine-tuned MiniLM-L6 classifier (.keras): loaded when it "
                        "exists, else fine-tuned as serving_throughput.py does and saved there "
                        "(default: serving_throughput.py's cache, "
                        "runs/serving_throughput/classifier.keras; --quick: a tiny throwaway "
                        "BERT)")
    parser.add_argument("--student-epochs", type=int,
                        help="distillation epochs (default: distill_quality.py's recipe, 3); "
                        "fewer is a reduced recipe, printed as such")
    parser.add_argument("--latency-snippets", type=int, default=200,
                        help="test snippets timed per variant (default 200)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="round-robin latency rounds (default 4)")
    parser.add_argument("--calibration-texts", type=int, default=200,
                        help="training texts that calibrate int8 (default 200)")
    parser.add_argument("--int8-study", action="store_true",
                        help="also find which op types cost int8 its accuracy (teacher, ids in)")
    parser.add_argument("--work-dir", default=os.path.join("runs", "export_matrix"),
                        help="the student, exports and plot go here (default %(default)s)")
    parser.add_argument("--reuse-exports", action="store_true",
                        help="keep exports already in WORK_DIR/exports (for reruns of the "
                        "same models); by default every export is written anew")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--measure-child", nargs=2, metavar=("MANIFEST", "OUTPUT"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if args.measure_child:
        child_main(*args.measure_child)
        return None
    from keras_bert_kit.datasets import load_rotten_tomatoes

    meta = {"quick": args.quick, "cores": usable_cores(),
            "load_average_start": os.getloadavg()[0]}
    if meta["load_average_start"] > 0.5 * meta["cores"]:
        log(f"warning: load average {meta['load_average_start']:.2f} on {meta['cores']} CPU(s); "
            "the timings will be noisy")
    train, test = load_rotten_tomatoes("train"), load_rotten_tomatoes("test")
    if args.quick:
        train, test = train.subset(range(256)), test.subset(range(48))
    latency_snippets = min(24 if args.quick else args.latency_snippets, len(test))
    rounds = 1 if args.quick else args.rounds
    calibration_count = 16 if args.quick else args.calibration_texts
    shuffled = np.random.default_rng(0).permutation(len(train))
    calibration_texts = [train.texts[int(i)] for i in shuffled[:calibration_count]]
    texts, labels = list(test.texts), np.asarray(test.labels)
    latency_indices = sorted(int(i) for i in np.random.default_rng(0).choice(
        len(texts), latency_snippets, replace=False))

    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    if args.quick and not args.teacher:
        teacher_path, teacher = None, quick_teacher(train)
    else:
        teacher_path = args.teacher or os.path.join("runs", "serving_throughput",
                                                    "classifier.keras")
        teacher = teacher_model(teacher_path, train, args.quick)
    recipe, full_epochs = student_recipe(1 if args.quick else args.student_epochs), \
        student_recipe()["epochs"]
    epochs = recipe["epochs"]
    meta.update(teacher=teacher_path or "tiny throwaway BERT (quick)", student_recipe=recipe,
                student_recipe_name="full (distill_quality.py)" if epochs == full_epochs
                else f"reduced: {epochs} of distill_quality.py's {full_epochs} epochs")
    student, student_path, distill_seconds = student_model(teacher, teacher_path, train, recipe,
                                                           work_dir)
    meta.update(student=student_path if teacher_path else "throwaway (quick)",
                distill_seconds=distill_seconds)

    exports = os.path.join(work_dir, "exports")
    variants = []
    for model_name, model in (("teacher", teacher), ("student", student)):
        log(f"exporting the {model_name}")
        variants += export_variants(model, model_name, os.path.join(exports, model_name),
                                    calibration_texts, args.reuse_exports)
    study = None
    if args.int8_study:
        debug_texts = calibration_texts[:8 if args.quick else 50]
        int8_path = os.path.join(exports, "teacher", "ids_int8.tflite")
        study_variants, study = int8_study(teacher, os.path.join(exports, "teacher"),
                                           calibration_texts, debug_texts, int8_path)
        variants += study_variants
    variants = {f"{v['model']} {variant_name(v)}": v for v in variants}

    log("tokenization: tf_text normaliser vs exact BERT")
    tokenization = tokenization_difference(teacher, texts)
    del teacher, student  # the child loads the exports; free the parent's memory for it
    log(f"measuring {len(variants)} variants in a one-thread child process")
    meta["load_average_measure_start"] = os.getloadavg()[0]
    manifest = {"texts": texts, "latency_indices": latency_indices, "rounds": rounds,
                "variants": variants,
                "id_reference": {name: os.path.join(exports, name, "ids_none.tflite")
                                 for name in ("teacher", "student")}}
    measured = measure_in_child(manifest, work_dir)
    meta["load_average_measure_end"] = measured["load_average_end"]
    for key, values in measured["variants"].items():
        variants[key].update(values)
        variants[key]["accuracy"] = float(np.mean(np.asarray(values["predictions"]) == labels))
    meta.update(load_average_end=os.getloadavg()[0], test_snippets=len(texts),
                latency_snippets=latency_snippets, rounds=rounds,
                calibration_texts=calibration_count,
                child_tensorflow_threads=measured["tensorflow_threads"],
                plot=os.path.join(work_dir, "accuracy_vs_latency.png"))
    plot(variants, meta["plot"])
    out = BenchReport("export_matrix", quick=args.quick, description=__doc__.splitlines()[0])
    found = report(out, meta, variants, tokenization, study)
    summary = dict(meta=meta, variants=variants, tokenization=tokenization, int8_study=study,
                   targets=found)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        print(f"Wrote {args.json}")
    out.write()
    return summary


if __name__ == "__main__":
    main()
