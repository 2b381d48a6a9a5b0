"""Serving throughput on CPU: this project's SavedModel export vs keras-hub and ONNX Runtime.

One classifier, the same weights everywhere
-------------------------------------------
all-MiniLM-L6-v2 (6 layers, hidden 384) with a 2-class [CLS] head, fine-tuned
for one epoch on the Rotten Tomatoes train split (`SequenceClassifier.fit`,
lr 5e-5, 6% warmup, batch 32, 128 tokens; cached under `--work-dir`, so a
rerun skips it). Its weights then go into every peer, so all of them compute
the same classifier and each row's accuracy and label agreement with ours
show that:

* ours: `keras_bert_kit.export.export_saved_model` (float32, and
  `dtype="bfloat16"`), reloaded with `tf.saved_model.load`; `serving_default`
  (text in: the tokenizer runs in the graph, each batch padded to its own
  longest item) and `predict_ids` (ids in);
* keras-hub, as its users export: `BertTextClassifier` (backbone from
  `keras_bert_kit.to_keras_hub`, our head weights) with its
  `BertTextClassifierPreprocessor(sequence_length=128)`, written by a
  `keras.export.ExportArchive` whose string-in endpoint runs preprocessor and
  model, reloaded with `tf.saved_model.load`. Its backbone uses the tanh GELU,
  ours the exact one (logits differ by about 1e-4);
* ONNX Runtime: the encoder written by `keras_bert_kit.to_huggingface`,
  loaded by transformers' `BertForSequenceClassification` (our head weights)
  and exported by `torch.onnx.export` (TorchScript exporter, opset 17,
  dynamic batch and sequence axes); float32, and onnxruntime's
  `quantize_dynamic` int8 of it. Sessions get `intra_op_num_threads`
  = `--threads` (2), one inter-op thread, all graph optimisations (the
  defaults otherwise). Text in runs transformers' `BertTokenizerFast` first.

What is timed
-------------
The whole Rotten Tomatoes test split (2,509 snippets), in file order, in
batches of 32 (the last has 13). Text in: each step takes a batch of
strings. Ids in: `BertTokenizerFast` ids (padded to each batch's longest,
at most 128), the same batches for `predict_ids` (int32) and ONNX Runtime
(int64, as exported). A step returns only once its predicted labels exist as
numpy arrays. Each engine is warmed up on two batches (the XLA diagnostic on
every shape it compiles), then the passes over the split run round-robin
(`--repeats` rounds), so drift in the machine's load hits every engine alike;
sequences/s is 2,509 / median pass time, and every ratio divides two engines
of the same run. One sentence (the test snippet of median token length),
batch 1: p50 and p99 latency of at least 200 timed calls per engine.

bfloat16: the throughput ratio of the bf16 and float32 exports (text in and
ids in) and their test accuracy; which oneDNN kernels the bf16 export ran
(a child process with `ONEDNN_VERBOSE=1` runs one batch: AMX or
AVX512-BF16), with the CPU's flags and the bf16 / float32 `tf.matmul` peak
ratio measured in this run.

Where the time goes (ids in): a TensorFlow profile of `predict_ids` and
an onnxruntime profile of the float32 model on the same batches, time by op
type and op executions per batch; and, timed in the ids-in round-robin
("diagnostic" rows, none of them an export): the Keras model in a
`tf.function`, XLA-compiled on ids padded to fixed buckets (32/64/128
tokens), and in float32 and bfloat16 with its weights frozen into graph
constants (`convert_variables_to_constants_v2`), which lets oneDNN keep its
reordered weights between calls and folds the bf16 weight casts.

Targets (PASS / FALL SHORT): text in >= 3x keras-hub; bf16 >= 1.7x float32
at <= 0.3 point accuracy loss; `predict_ids` >= 1.0x ONNX Runtime float32,
and `serving_default` >= 1.0x ONNX Runtime float32 + `BertTokenizerFast`.

    .venv/bin/python bench/serving_throughput.py            # full run (`make bench-serving`)
    .venv/bin/python bench/serving_throughput.py --quick    # smoke run: measures nothing

Progress goes to stderr, the results to stdout. Run the full benchmark on an
otherwise idle machine: the load average is printed at the start and end.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402, F401  (registers the TF Text ops the exports use)
import torch  # noqa: E402
import transformers  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2,
)
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

import keras_bert_kit as kbk  # noqa: E402
from keras_bert_kit.assets import minilm_model_dir  # noqa: E402
from keras_bert_kit.datasets import load_rotten_tomatoes  # noqa: E402
from keras_bert_kit.export import export_saved_model  # noqa: E402
from keras_bert_kit.export.saved_model import with_dtype  # noqa: E402

# bench/ is sys.path[0] when this file is run as a script.
from _results import BenchReport, ratio_chart  # noqa: E402
from _timing import Timing, measure, usable_cores  # noqa: E402

BATCH_SIZE = 32
SEQUENCE_LENGTH = 128
XLA_BUCKETS = (32, 64, 128)
FINE_TUNE = dict(epochs=1, batch_size=32, learning_rate=5e-5, warmup_fraction=0.06, seed=0)
TARGET_VS_KERAS_HUB = 3.0
TARGET_BF16_SPEEDUP = 1.7
TARGET_BF16_ACCURACY_LOSS = 0.3  # points
TARGET_VS_ONNX = 1.0
ID_NAMES = ("input_ids", "segment_ids", "padding_mask")
# Our id inputs under transformers' names; the ONNX inputs in BertForSequenceClassification's
# positional order.
ONNX_NAMES = {"input_ids": "input_ids", "padding_mask": "attention_mask",
              "segment_ids": "token_type_ids"}
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ID_SPEC = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in ID_NAMES}

Step = Callable[[int], np.ndarray]  # batch index -> predicted label ids


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# === Data and the classifier ======================================================


def batches_of(items: list, size: int = BATCH_SIZE) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def fine_tuned_classifier(path: str, train, quick: bool):
    """The MiniLM-L6 classifier fine-tuned on `train`: loaded from `path` if it exists."""
    if path and os.path.exists(path):
        log(f"classifier: loading {path}")
        return keras.saving.load_model(path)
    keras.utils.set_random_seed(FINE_TUNE["seed"])
    model_dir = minilm_model_dir()
    preprocessor = kbk.SequenceClassifierPreprocessor(
        kbk.preprocessor_from_huggingface(model_dir).tokenizer, SEQUENCE_LENGTH
    )
    classifier = kbk.SequenceClassifier(
        kbk.from_huggingface(model_dir), 2, preprocessor=preprocessor,
        label_names=list(train.label_names),
    )
    data = preprocessor.dataset(list(train.texts), np.asarray(train.labels),
                                batch_size=FINE_TUNE["batch_size"], shuffle=True,
                                seed=FINE_TUNE["seed"])
    classifier.compile(optimizer=kbk.create_optimizer(
        FINE_TUNE["learning_rate"], num_train_steps=int(data.cardinality()) * FINE_TUNE["epochs"],
        warmup_fraction=FINE_TUNE["warmup_fraction"],
    ))
    log(f"classifier: fine-tuning on {len(train)} snippets"
        f"{' (quick: not a real fine-tune)' if quick else ''}")
    classifier.fit(data, epochs=FINE_TUNE["epochs"], verbose=2)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        classifier.save(path)
    return classifier


# === The exports ==================================================================


def export_keras_hub(classifier, path: str) -> None:
    """keras-hub's `BertTextClassifier` with our weights, exported text in as its users do."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tanh GELU of BertBackbone, documented above
        backbone = kbk.to_keras_hub(classifier.encoder)
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=os.path.join(minilm_model_dir(), "vocab.txt"), lowercase=True
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )
    model = keras_hub.models.BertTextClassifier(backbone, 2, preprocessor=preprocessor)
    model.get_layer("logits").set_weights(classifier.get_layer("logits").get_weights())

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(text):
        return {"logits": model(model.preprocessor(text), training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve)
    archive.write_out(path, verbose=False)


def export_onnx(classifier, directory: str) -> tuple[str, str, str]:
    """Our weights through transformers into ONNX: (float32 model, int8 model, HF directory)."""
    hf_dir = os.path.join(directory, "huggingface")
    kbk.to_huggingface(classifier.encoder, hf_dir, tokenizer=classifier.preprocessor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.logging.set_verbosity_error()  # "classifier newly initialized": set below
        model = transformers.BertForSequenceClassification.from_pretrained(hf_dir, num_labels=2)
    kernel, bias = classifier.get_layer("logits").get_weights()
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(kernel.T))
        model.classifier.bias.copy_(torch.from_numpy(bias))
    model.eval()
    example = tuple(torch.ones((2, 8), dtype=torch.int64) for _ in ONNX_INPUTS)
    float32_path = os.path.join(directory, "model.onnx")
    int8_path = os.path.join(directory, "model.int8.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model, example, float32_path, dynamo=False, opset_version=17,
            input_names=list(ONNX_INPUTS), output_names=["logits"],
            dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS},
                          "logits": {0: "batch"}},
        )
    quantize_dynamic(float32_path, int8_path, weight_type=QuantType.QInt8)
    return float32_path, int8_path, hf_dir


def onnx_session(path: str, threads: int, profile_prefix: str | None = None):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


# === Batches and engines: each engine is a Step over the batches ==================


def id_batches(tokenizer, text_batches: list[list[str]]) -> list[dict[str, np.ndarray]]:
    """`BertTokenizerFast` ids of each batch under our names, int32, padded to its longest."""
    batches = []
    for texts in text_batches:
        encoded = tokenizer(texts, padding="longest", truncation=True,
                            max_length=SEQUENCE_LENGTH, return_tensors="np")
        batches.append({name: encoded[ONNX_NAMES[name]].astype(np.int32) for name in ID_NAMES})
    return batches


def padded_to_bucket(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`batch` padded with zeros (padding_mask 0) to the smallest of `XLA_BUCKETS` that holds it."""
    length = batch["input_ids"].shape[1]
    bucket = min(b for b in XLA_BUCKETS if b >= length)
    return {name: np.pad(ids, ((0, 0), (0, bucket - length))) for name, ids in batch.items()}


def signature_step(function, inputs: list[dict]) -> Step:
    """A reloaded SavedModel signature (or endpoint) returning `logits`."""
    def step(i):
        return function(**inputs[i])["logits"].numpy().argmax(-1)

    return step


def keras_step(classifier, inputs: list[dict], jit_compile: bool) -> Step:
    """The Keras classifier itself in a `tf.function` (no export), with or without XLA.

    XLA compiles once per input shape (the warm-up calls each); without XLA
    one trace with dynamic batch and length serves every batch, as in the export.
    """
    forward = tf.function(lambda x: classifier(x, training=False), jit_compile=jit_compile,
                          input_signature=None if jit_compile else [ID_SPEC])

    def step(i):
        return forward(inputs[i]).numpy().argmax(-1)

    return step


def frozen_step(model, inputs: list[dict]) -> Step:
    """The Keras model with its weights frozen into graph constants (no export).

    Constant weights let TensorFlow's oneDNN matmuls keep their reordered
    (blocked) weights between calls and fold mixed precision's weight casts.
    """
    forward = tf.function(lambda x: model(x, training=False)).get_concrete_function(ID_SPEC)
    frozen = convert_variables_to_constants_v2(forward)

    def step(i):
        return tf.nest.flatten(frozen(**inputs[i]))[0].numpy().argmax(-1)

    return step


def onnx_step(session, inputs: list[dict]) -> Step:
    def step(i):
        return session.run(["logits"], inputs[i])[0].argmax(-1)

    return step


def onnx_text_step(session, tokenizer, text_batches: list[list[str]]) -> Step:
    """Text in for ONNX Runtime: `BertTokenizerFast` (as a deployer would run it), then the model."""
    def step(i):
        encoded = tokenizer(text_batches[i], padding="longest", truncation=True,
                            max_length=SEQUENCE_LENGTH, return_tensors="np")
        feed = {name: encoded[name] for name in ONNX_INPUTS}
        return session.run(["logits"], feed)[0].argmax(-1)

    return step


def timed_passes(steps: dict[str, Step], warmup: dict[str, list[int]], batches: int,
                 repeats: int) -> tuple[dict[str, Timing], dict[str, np.ndarray]]:
    """Seconds per pass over all `batches` of each step, the steps taking turns.

    Each step is first called on its `warmup` batch indices. Returns the
    timings (first_call_seconds: the warm-up) and each step's predicted labels.
    """
    warmup_seconds, times, predictions = {}, {name: [] for name in steps}, {}
    for name, step in steps.items():
        start = time.perf_counter()
        for i in warmup[name]:
            step(i)
        warmup_seconds[name] = time.perf_counter() - start
        log(f"  warmed up {name} ({warmup_seconds[name]:.1f} s)")
    for round_index in range(repeats):
        for name, step in steps.items():
            with gc_paused():
                start = time.perf_counter()
                labels = [step(i) for i in range(batches)]
                times[name].append(time.perf_counter() - start)
            predictions[name] = np.concatenate(labels)
        log(f"  round {round_index + 1}/{repeats}: "
            + ", ".join(f"{name} {times[name][-1]:.1f} s" for name in steps))
    return ({name: Timing(tuple(times[name]), warmup_seconds[name]) for name in steps},
            predictions)


@contextlib.contextmanager
def gc_paused():
    """Python's garbage collector off inside the block, as `timeit` (and `_timing.measure`) do."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def latency_ms(step: Callable[[], object], budget_seconds: float, min_repeats: int) -> dict:
    timing = measure(step, budget_seconds=budget_seconds, min_repeats=min_repeats, warmup=3)
    times = np.asarray(timing.times) * 1000
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "calls": len(times)}


# === bfloat16: which kernels, and the matmul peaks ================================

# Runs one text batch through an export's serving_default; with ONEDNN_VERBOSE=1
# oneDNN prints a line for each primitive it executes.
ONEDNN_PROBE = """
import sys
import tensorflow as tf
import tensorflow_text  # registers the TF Text ops
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
for _ in range(2):
    serve(text=tf.constant(sys.argv[2:]))["logits"].numpy()
"""


def onednn_kernels(export_dir: str, texts: list[str]) -> dict:
    """oneDNN primitives run by `export_dir` on `texts`: {"kind impl src-dtype": [calls, ms]}."""
    env = dict(os.environ, ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="2")
    try:
        child = subprocess.run([sys.executable, "-c", ONEDNN_PROBE, export_dir, *texts], env=env,
                               capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"error": "the ONEDNN_VERBOSE child timed out"}
    if child.returncode:
        return {"error": child.stderr.strip().splitlines()[-1:]}
    kernels = collections.defaultdict(lambda: [0, 0.0])
    for line in child.stdout.splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in fields:
            continue
        at = fields.index("exec")
        source = re.search(r"src[:_]([a-z0-9]+)", fields[at + 5])
        key = f"{fields[at + 2]} {fields[at + 3] or '-'} {source.group(1) if source else '?'}"
        kernels[key][0] += 1
        kernels[key][1] += float(fields[-1])
    return dict(kernels)


def bf16_isa(kernels: dict) -> str:
    """Which oneDNN implementations ran the bf16 matrix products, by share of their time."""
    if "error" in kernels:
        return f"unknown ({kernels['error']})"
    seconds = collections.Counter()
    for key, (_, ms) in kernels.items():
        kind, implementation, source = key.split()
        if source == "bf16" and kind in ("matmul", "inner_product", "gemm_api"):
            seconds[f"{kind} {implementation}"] += ms
    total = sum(seconds.values())
    if not total:
        return "none: no bf16 matrix product ran in oneDNN"
    amx = sum(ms for name, ms in seconds.items() if "amx" in name) / total
    shares = ", ".join(f"{name} {100 * ms / total:.0f}%" for name, ms in seconds.most_common())
    return f"AMX for {100 * amx:.0f}% of the bf16 matrix-product time ({shares})"


def cpu_flags() -> dict[str, bool]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")),
                         [])
    except OSError:
        flags = []
    return {flag: flag in flags for flag in ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16")}


def matmul_gflops(dtype: str, budget_seconds: float, size: int = 2048) -> float:
    """Best-of-median GFLOP/s of one `size`-square `tf.matmul` in `dtype`."""
    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    timing = measure(lambda: product(a, b).numpy(), budget_seconds=budget_seconds, min_repeats=5)
    return 2 * size**3 / timing.median / 1e9


# === Where the time goes: profiles by op type =====================================

CATEGORIES = (  # first match of the op type (and, for TensorFlow, the op's name) wins
    ("matmul", r"MatMul|Gemm|Attention"),
    ("LayerNorm", r"LayerNorm|layer_norm"),
    ("softmax", r"Softmax"),
    ("GELU", r"Gelu|gelu|Erf"),
    ("layout", r"Transpose|Reshape|Concat|Slice|Gather|Squeeze|Unsqueeze|ExpandDims|Shape|"
               r"Pack|Split|Identity|Cast|Tile"),
)
CALL_OPS = ("StatefulPartitionedCall", "PartitionedCall")  # function calls wrap other ops


def category(description: str) -> str:
    return next((name for name, pattern in CATEGORIES if re.search(pattern, description)),
                "other")


def tensorflow_profile(function, inputs: list[dict], logdir: str) -> dict:
    """Op time of `function` on `inputs` by op type, from a TensorFlow profiler trace."""
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for batch in inputs:
        function(**batch)["logits"].numpy()
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(sorted(glob.glob(f"{logdir}/plugins/profile/*/*.xplane.pb"))[-1], "rb") as f:
        space.ParseFromString(f.read())
    seconds, executions = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for event in line.events:
                match = re.fullmatch(r"([^\s:]+):([A-Za-z_]\w*)",
                                     plane.event_metadata[event.metadata_id].name)
                if match and match.group(2) not in CALL_OPS:
                    key = (match.group(2), category(f"{match.group(2)} {match.group(1)}"))
                    seconds[key] += event.duration_ps / 1e12
                    executions[key] += 1
    return profile_summary(seconds, executions, wall, len(inputs))


def onnx_profile(path: str, threads: int, inputs: list[dict], prefix: str) -> dict:
    """Op time of an ONNX model on `inputs` by op type, from onnxruntime's profiler."""
    session = onnx_session(path, threads, profile_prefix=prefix)
    session.run(["logits"], inputs[0])  # warm-up; its events are dropped below
    start = time.perf_counter()
    for batch in inputs:
        session.run(["logits"], batch)
    wall = time.perf_counter() - start
    with open(session.end_profiling(), encoding="utf-8") as f:
        events = json.load(f)
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    seconds, executions = collections.Counter(), collections.Counter()
    for event in events:
        if (event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
                and event["ts"] >= runs[1]):
            op_type = event["args"]["op_name"]
            key = (op_type, category(op_type))
            seconds[key] += event["dur"] / 1e6
            executions[key] += 1
    return profile_summary(seconds, executions, wall, len(inputs))


def profile_summary(seconds: collections.Counter, executions: collections.Counter, wall: float,
                    batches: int) -> dict:
    by_category = collections.Counter()
    for (_, name), value in seconds.items():
        by_category[name] += value
    total = sum(seconds.values())
    return {
        "wall_ms_per_batch": 1000 * wall / batches,
        "op_ms_per_batch": 1000 * total / batches,
        "ops_per_batch": sum(executions.values()) / batches,
        "categories_ms_per_batch": {name: 1000 * value / batches
                                    for name, value in by_category.most_common()},
        "op_types": [{"op": op, "category": name, "ms_per_batch": 1000 * value / batches,
                      "per_batch": executions[(op, name)] / batches}
                     for (op, name), value in seconds.most_common()],
    }


# === Report =======================================================================


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    met = value >= target if higher_is_better else value <= target
    return "PASS" if met else "FALL SHORT"


def throughput_table(out: BenchReport, timings: dict[str, Timing],
                     predictions: dict[str, np.ndarray], reference: str, count: int,
                     labels: np.ndarray, title: str) -> dict:
    """Rows of sequences/s, relative to `reference`, accuracy and agreement with `reference`."""
    results = {
        name: dict(timing.to_dict(), sequences_per_second=count / timing.median,
                   accuracy=float(np.mean(predictions[name] == labels)),
                   agreement=float(np.mean(predictions[name] == predictions[reference])))
        for name, timing in timings.items()
    }
    rows = [
        [name, f"{r['sequences_per_second']:.1f}", f"{100 * timings[name].spread:.0f}%",
         f"{r['sequences_per_second'] / results[reference]['sequences_per_second']:.2f}x",
         f"{100 * r['accuracy']:.2f}", f"{100 * r['agreement']:.1f}"]
        for name, r in results.items()
    ]
    headers = ["engine", "sequences/s", "IQR", f"vs {reference.split(' (')[0]}", "accuracy %",
               "same label %"]
    out.table(headers, rows, title=title)
    return results


def profile_tables(out: BenchReport, tensorflow: dict, onnx: dict, title: str,
                   top: int = 8) -> None:
    categories = list(dict.fromkeys([*tensorflow["categories_ms_per_batch"],
                                     *onnx["categories_ms_per_batch"]]))

    def share(profile, name):
        value = profile["categories_ms_per_batch"].get(name, 0.0)
        return [f"{value:.1f}", f"{100 * value / profile['op_ms_per_batch']:.0f}%"]

    rows = [[name, *share(tensorflow, name), *share(onnx, name)] for name in categories]
    for label, key, digits in (("sum of op times", "op_ms_per_batch", 1),
                               ("wall (profiled)", "wall_ms_per_batch", 1),
                               ("op executions", "ops_per_batch", 0)):
        rows.append([label, f"{tensorflow[key]:.{digits}f}", "", f"{onnx[key]:.{digits}f}", ""])
    out.table(["per batch", "predict_ids ms", "share", "ONNX fp32 ms", "share"], rows,
              title=title)
    op_rows = []
    for index in range(top):
        row = []
        for profile in (tensorflow, onnx):
            if index < len(profile["op_types"]):
                op = profile["op_types"][index]
                row += [op["op"], f"{op['ms_per_batch']:.1f}", f"{op['per_batch']:.0f}"]
            else:
                row += ["", "", ""]
        op_rows.append(row)
    print()
    out.table(["predict_ids op", "ms", "runs", "ONNX fp32 op", "ms", "runs"], op_rows,
              title="Top op types (per batch):")


# === Main =========================================================================


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 4 test batches, 256 training snippets, 1 round; "
                        "checks that it works, measures nothing")
    parser.add_argument("--threads", type=int, default=2,
                        help="intra-op threads of TensorFlow and ONNX Runtime (default 2)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed passes over the test split per engine (default 3)")
    parser.add_argument("--profile-batches", type=int, default=10,
                        help="id batches in each op profile (default 10)")
    parser.add_argument("--work-dir", default=os.path.join("runs", "serving_throughput"),
                        help="exports, profiles and the cached classifier go here "
                        "(default runs/serving_throughput)")
    parser.add_argument("--classifier", metavar="PATH",
                        help="the fine-tuned classifier (.keras): loaded when it exists, else "
                        "fine-tuned and saved there (default WORK_DIR/classifier.keras; "
                        "--quick fine-tunes a throwaway one)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    profile_batches = 2 if args.quick else args.profile_batches
    latency_budget, latency_repeats = (0.2, 20) if args.quick else (2.0, 200)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    cores = usable_cores()
    meta = {
        "quick": args.quick, "threads": args.threads, "repeats": repeats, "cores": cores,
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "cpu_flags": cpu_flags(), "load_average_start": os.getloadavg()[0],
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "keras_hub": keras_hub.__version__, "onnxruntime": onnxruntime.__version__,
                     "torch": torch.__version__, "transformers": transformers.__version__},
    }
    if meta["load_average_start"] > 0.5 * cores:
        log(f"warning: load average {meta['load_average_start']:.2f} on {cores} CPU(s); "
            "the machine is busy and the timings will be noisy")

    train, test = load_rotten_tomatoes("train"), load_rotten_tomatoes("test")
    if args.quick:
        train, test = train.subset(range(256)), test.subset(range(4 * BATCH_SIZE))
    texts, labels = list(test.texts), np.asarray(test.labels)
    work_dir = os.path.abspath(args.work_dir)
    classifier_path = args.classifier or (
        None if args.quick else os.path.join(work_dir, "classifier.keras"))
    classifier = fine_tuned_classifier(classifier_path, train, args.quick)

    exports = os.path.join(work_dir, "exports")
    shutil.rmtree(exports, ignore_errors=True)
    log("exporting: ours float32, ours bfloat16, keras-hub, ONNX float32 and int8")
    float32_dir = export_saved_model(classifier, os.path.join(exports, "ours_float32"))
    ours = tf.saved_model.load(float32_dir).signatures
    bf16_dir = export_saved_model(classifier, os.path.join(exports, "ours_bfloat16"),
                                  dtype="bfloat16")
    ours_bf16 = tf.saved_model.load(bf16_dir).signatures
    export_keras_hub(classifier, os.path.join(exports, "keras_hub"))
    keras_hub_serve = tf.saved_model.load(os.path.join(exports, "keras_hub")).signatures[
        "serving_default"]
    onnx_float32, onnx_int8, hf_dir = export_onnx(classifier, os.path.join(exports, "onnx"))
    sessions = {"float32": onnx_session(onnx_float32, args.threads),
                "int8": onnx_session(onnx_int8, args.threads)}
    fast_tokenizer = transformers.BertTokenizerFast.from_pretrained(hf_dir)

    text_batches = batches_of(texts)
    strings = [{"text": tf.constant(batch)} for batch in text_batches]
    ids = id_batches(fast_tokenizer, text_batches)
    tf_ids = [{name: tf.constant(v) for name, v in batch.items()} for batch in ids]
    onnx_ids = [{ONNX_NAMES[name]: v.astype(np.int64) for name, v in batch.items()}
                for batch in ids]
    bucketed = [{name: tf.constant(v) for name, v in padded_to_bucket(batch).items()}
                for batch in ids]
    count, batches = len(texts), len(text_batches)

    # Text in: the reference is ours; ONNX runs transformers' tokenizer first.
    text_steps = {
        "ours float32 (serving_default)": signature_step(ours["serving_default"], strings),
        "ours bfloat16 (serving_default)": signature_step(ours_bf16["serving_default"], strings),
        "keras-hub BertTextClassifier": signature_step(keras_hub_serve, strings),
        "ONNX Runtime float32 + BertTokenizerFast": onnx_text_step(
            sessions["float32"], fast_tokenizer, text_batches),
        "ONNX Runtime int8 + BertTokenizerFast": onnx_text_step(
            sessions["int8"], fast_tokenizer, text_batches),
    }
    xla_label = f"diagnostic: Keras model, XLA, buckets {'/'.join(map(str, XLA_BUCKETS))}"
    id_steps = {
        "ours float32 (predict_ids)": signature_step(ours["predict_ids"], tf_ids),
        "ours bfloat16 (predict_ids)": signature_step(ours_bf16["predict_ids"], tf_ids),
        "ONNX Runtime float32": onnx_step(sessions["float32"], onnx_ids),
        "ONNX Runtime int8": onnx_step(sessions["int8"], onnx_ids),
        "diagnostic: Keras model, tf.function, not exported": keras_step(
            classifier, tf_ids, jit_compile=False),
        xla_label: keras_step(classifier, bucketed, jit_compile=True),
        "diagnostic: Keras model float32, weights frozen": frozen_step(classifier, tf_ids),
        "diagnostic: Keras model bfloat16, weights frozen": frozen_step(
            with_dtype(classifier, "bfloat16"), tf_ids),
    }
    first_and_last = sorted({0, batches - 1})
    shapes = {tuple(batch["input_ids"].shape): i for i, batch in enumerate(bucketed)}
    warmup = {name: first_and_last for name in [*text_steps, *id_steps]}
    warmup[xla_label] = sorted(shapes.values())  # XLA compiles each shape once

    log(f"text in: {count} snippets, {batches} batches, {repeats} round(s)")
    text_timings, text_predictions = timed_passes(text_steps, warmup, batches, repeats)
    log("ids in")
    id_timings, id_predictions = timed_passes(id_steps, warmup, batches, repeats)

    log("one sentence, batch 1")
    token_counts = [len(x) for x in fast_tokenizer(texts, truncation=True,
                                                    max_length=SEQUENCE_LENGTH)["input_ids"]]
    sentence = texts[int(np.argsort(token_counts)[len(texts) // 2])]
    one_text = [{"text": tf.constant([sentence])}]
    one_ids = id_batches(fast_tokenizer, [[sentence]])
    one_tf_ids = [{name: tf.constant(v) for name, v in one_ids[0].items()}]
    one_onnx_ids = [{ONNX_NAMES[name]: v.astype(np.int64) for name, v in one_ids[0].items()}]
    single = {
        "ours float32 (serving_default)": signature_step(ours["serving_default"], one_text),
        "ours bfloat16 (serving_default)": signature_step(ours_bf16["serving_default"], one_text),
        "keras-hub BertTextClassifier": signature_step(keras_hub_serve, one_text),
        "ONNX Runtime float32 + BertTokenizerFast": onnx_text_step(
            sessions["float32"], fast_tokenizer, [[sentence]]),
        "ours float32 (predict_ids)": signature_step(ours["predict_ids"], one_tf_ids),
        "ours bfloat16 (predict_ids)": signature_step(ours_bf16["predict_ids"], one_tf_ids),
        "ONNX Runtime float32": onnx_step(sessions["float32"], one_onnx_ids),
        "ONNX Runtime int8": onnx_step(sessions["int8"], one_onnx_ids),
        "diagnostic: Keras model float32, weights frozen": frozen_step(classifier, one_tf_ids),
        "diagnostic: Keras model bfloat16, weights frozen": frozen_step(
            with_dtype(classifier, "bfloat16"), one_tf_ids),
    }
    latency = {name: latency_ms(lambda step=step: step(0), latency_budget, latency_repeats)
               for name, step in single.items()}

    log("bfloat16: oneDNN kernels (ONEDNN_VERBOSE=1 children) and matmul peaks")
    kernels = {"bfloat16": onednn_kernels(bf16_dir, text_batches[0]),
               "float32": onednn_kernels(float32_dir, text_batches[0])}
    peak_budget = 0.3 if args.quick else 3.0
    peaks = {dtype: matmul_gflops(dtype, peak_budget) for dtype in ("float32", "bfloat16")}

    log("where the time goes: op profiles")
    profiles = {
        "predict_ids": tensorflow_profile(ours["predict_ids"], tf_ids[:profile_batches],
                                          os.path.join(work_dir, "profile")),
        "onnx_float32": onnx_profile(onnx_float32, args.threads, onnx_ids[:profile_batches],
                                     os.path.join(work_dir, "onnx_profile")),
        # Batch 1 shows the fixed cost of a call: op count times per-op overhead.
        "predict_ids_batch_1": tensorflow_profile(ours["predict_ids"], one_tf_ids * 20,
                                                  os.path.join(work_dir, "profile_batch_1")),
        "onnx_float32_batch_1": onnx_profile(onnx_float32, args.threads, one_onnx_ids * 20,
                                             os.path.join(work_dir, "onnx_profile_batch_1")),
    }
    meta["load_average_end"] = os.getloadavg()[0]
    out = BenchReport("serving_throughput", quick=args.quick,
                      description=__doc__.splitlines()[0])
    summary = report(out, meta, text_timings, text_predictions, id_timings, id_predictions,
                     latency, kernels, peaks, profiles, count, labels, sentence)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        print(f"\nWrote {args.json}")
    out.write()
    return summary


def report(out, meta, text_timings, text_predictions, id_timings, id_predictions, latency,
           kernels, peaks, profiles, count, labels, sentence) -> dict:
    out.note(f"{meta['cores']} usable CPU(s); TensorFlow and ONNX Runtime {meta['threads']} "
             f"intra-op threads; load average at start {meta['load_average_start']:.2f}, at end "
             f"{meta['load_average_end']:.2f}"
             f"{'  [QUICK: not a measurement]' if meta['quick'] else ''}")
    print()
    text = throughput_table(out, text_timings, text_predictions,
                            "ours float32 (serving_default)", count, labels,
                            f"Text in: Rotten Tomatoes test, {count} snippets in batches of "
                            f"{BATCH_SIZE}, median of {meta['repeats']} round-robin pass(es)")
    print()
    ids = throughput_table(out, id_timings, id_predictions, "ours float32 (predict_ids)",
                           count, labels,
                           "Ids in: the same BertTokenizerFast id batches for every engine")

    print()
    out.table(["engine", "p50 ms", "p99 ms", "calls"],
              [[name, f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", str(r["calls"])]
               for name, r in latency.items()],
              title=f"One sentence, batch 1 ({len(sentence.split())} words: "
              f"{sentence[:60]!r}...)")

    kernels_title = ("bfloat16: oneDNN primitives run on one batch (kind, implementation, "
                     "source type)")
    rows = [[dtype, key, str(calls), f"{ms:.1f}"]
            for dtype, found in kernels.items() if "error" not in found
            for key, (calls, ms) in sorted(found.items(), key=lambda kv: -kv[1][1])]
    print()
    if rows:
        out.table(["export", "primitive", "calls", "ms"], rows, title=kernels_title)
    else:
        out.note(f"{kernels_title}\n  (none)")
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}"
                      for flag, present in meta["cpu_flags"].items())
    isa = bf16_isa(kernels["bfloat16"])
    out.note(f"CPU flags: {flags}; tf.matmul 2048^2 peak: float32 {peaks['float32']:.0f} "
             f"GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s "
             f"({peaks['bfloat16'] / peaks['float32']:.2f}x)\n"
             f"bf16 matrix products ran on: {isa}")

    print()
    profile_tables(out, profiles["predict_ids"], profiles["onnx_float32"],
                   f"Where predict_ids' time goes vs ONNX Runtime float32 (profiled, "
                   f"{profiles['predict_ids']['wall_ms_per_batch']:.0f} vs "
                   f"{profiles['onnx_float32']['wall_ms_per_batch']:.0f} ms per batch, "
                   "profilers on):")
    print()
    profile_tables(out, profiles["predict_ids_batch_1"], profiles["onnx_float32_batch_1"],
                   "The same for the one sentence of the latency table (batch 1, 20 calls):",
                   top=4)

    def speed(results, name):
        return results[name]["sequences_per_second"]

    ours_text, ours_ids = speed(text, "ours float32 (serving_default)"), speed(
        ids, "ours float32 (predict_ids)")
    targets = {
        "text_in_vs_keras_hub": ours_text / speed(text, "keras-hub BertTextClassifier"),
        "bf16_speedup_text_in": speed(text, "ours bfloat16 (serving_default)") / ours_text,
        "bf16_speedup_ids_in": speed(ids, "ours bfloat16 (predict_ids)") / ours_ids,
        "bf16_accuracy_loss_points": 100 * (text["ours float32 (serving_default)"]["accuracy"]
                                            - text["ours bfloat16 (serving_default)"]["accuracy"]),
        "predict_ids_vs_onnx_float32": ours_ids / speed(ids, "ONNX Runtime float32"),
        "text_in_vs_onnx_float32": ours_text / speed(
            text, "ONNX Runtime float32 + BertTokenizerFast"),
    }
    lines = ["\nTargets" + (" (quick run: not a measurement)" if meta["quick"] else "")]
    lines.append(f"  text in: ours {targets['text_in_vs_keras_hub']:.2f}x keras-hub "
                 f"({verdict(targets['text_in_vs_keras_hub'], TARGET_VS_KERAS_HUB)}: target >= "
                 f"{TARGET_VS_KERAS_HUB}x)")
    for key, label in (("bf16_speedup_text_in", "serving_default"),
                       ("bf16_speedup_ids_in", "predict_ids")):
        lines.append(f"  bfloat16 {label}: {targets[key]:.2f}x float32 "
                     f"({verdict(targets[key], TARGET_BF16_SPEEDUP)}: target >= "
                     f"{TARGET_BF16_SPEEDUP}x)")
    lines.append(
        f"  bfloat16 accuracy loss: {targets['bf16_accuracy_loss_points']:+.2f} points "
        f"({verdict(targets['bf16_accuracy_loss_points'], TARGET_BF16_ACCURACY_LOSS, False)}: "
        f"target <= {TARGET_BF16_ACCURACY_LOSS}); {isa.split(' (')[0]}")
    lines.append(
        f"  predict_ids: {targets['predict_ids_vs_onnx_float32']:.2f}x ONNX Runtime float32 "
        f"({verdict(targets['predict_ids_vs_onnx_float32'], TARGET_VS_ONNX)}: target >= "
        f"{TARGET_VS_ONNX}x)")
    lines.append(
        f"  serving_default: {targets['text_in_vs_onnx_float32']:.2f}x ONNX Runtime float32 + "
        f"BertTokenizerFast ({verdict(targets['text_in_vs_onnx_float32'], TARGET_VS_ONNX)}: "
        f"target >= {TARGET_VS_ONNX}x)")
    out.note("\n".join(lines))
    out.chart("text_in", ratio_chart(
        "Text in: sequences/s over ours float32 serving_default", {
            name: speed(text, name) / ours_text for name in text},
        xlabel="sequences/s over ours float32 (serving_default)"))
    out.chart("ids_in", ratio_chart(
        "Ids in: sequences/s over ours float32 predict_ids", {
            name: speed(ids, name) / ours_ids for name in ids},
        xlabel="sequences/s over ours float32 (predict_ids)"))
    return dict(meta=meta, text_in=text, ids_in=ids, latency=latency, onednn_kernels=kernels,
                bf16_isa=isa, matmul_peak_gflops=peaks, profiles=profiles, targets=targets,
                latency_sentence=sentence)


if __name__ == "__main__":
    main()
