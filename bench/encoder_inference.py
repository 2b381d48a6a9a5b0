"""Encoder inference throughput on CPU: keras_bert_kit vs keras-hub vs Hugging Face (torch).

What it measures
----------------
BERT-base (12 layers, hidden 768, 12 heads, FFN 3072) and DistilBERT-base (6 layers,
same widths), float32 inference on one batch of `--batch` x `--seq` token ids
(default 8 x 128, no padding), random weights, for three implementations:

* this project: `keras_bert_kit.BertEncoder` / `DistilBertEncoder` from the
  "bert_base" / "distilbert_base" presets;
* keras-hub: `keras_hub.models.BertBackbone` / `DistilBertBackbone` of the same sizes;
* Hugging Face transformers on torch: `BertModel` / `DistilBertModel` built from a
  config of the same sizes, `model.eval()`, called under `torch.inference_mode()`.

Each Keras model is timed on each standard inference path,
`tf.function(lambda x: model(x, training=False))` with `jit_compile=False` and with
`jit_compile=True` (XLA); the faster one is reported (the "path" column; the other is
listed below the table and kept in the JSON). Torch runs eagerly with the model's
default attention implementation.

Every timed call ends with `.numpy()` on the sequence output, so no lazy or
asynchronous execution can escape the timer. Each path is warmed up first (the first
call traces and compiles; its time is reported separately), then timed call by call
until `--budget-seconds` have passed and at least 10 calls are timed. Throughput is
batch / median time; the spread is the interquartile range as a % of the median.
TensorFlow (intra-op threads) and torch (`torch.set_num_threads`) both get the number
of CPUs this process may use (its affinity mask, capped by a cgroup quota).

FLOPs and the matmul peak
-------------------------
GFLOP/s come from an analytic count of the forward pass's matrix multiplications, each
counted as 2*m*n*k: per layer the fused QKV projection, the attention output
projection, the two feed-forward projections and the two attention batch matmuls
(Q K^T and P V), plus BERT's pooler dense layer. Embedding lookups and elementwise
work (bias, softmax, GELU, LayerNorm, residuals) are ignored, so this slightly
undercounts the real work. The peak is the best GFLOP/s of `tf.matmul` on square
float32 matrices (1024, 2048, 3072; in a tf.function, with and without XLA; median of
repeats), measured in the same run; each model's GFLOP/s is shown as a fraction of it.

Targets, checked for this project's encoders and printed as PASS / FALL SHORT:
sequences/s >= 1.1x keras-hub's, and GFLOP/s >= 0.9 of the matmul peak.

The id checks' cost
-------------------
The encoders check their id inputs inside the graph (ranges, shapes; see
`keras_bert_kit/models/inputs.py`). Their cost is measured in the same run: this
project's encoder called as users call it (checked) against a plain functional model
over the same layers and inputs (`keras.Model(encoder.input, encoder.output)`, which
skips the encoder's `call` and so its checks), both in a `tf.function` without XLA
(XLA compiles the assertions away). The two are timed in alternating blocks, so drift
in the machine's load hits both alike; their ratio of medians, minus 1, is the A/B
cost, printed with the graphs' op counts. On a busy machine its noise (the IQRs) can
exceed the cost itself, so the checks are also timed alone: `encoder.check_inputs` in
its own `tf.function` returning the checked ids, and, to tell the checks from what any
call costs, a `tf.function` returning the same ids unchecked (`tf.identity`). The
checks' time (including that call overhead, an upper bound) over the unchecked
forward pass is the cost checked against the target, under 1% (PASS / FALL SHORT);
the difference of the two, their marginal cost, is printed beside it.
`--check-cost-only` measures just this.

Notes:
* The implementations compute the same matmuls but not identical elementwise ops:
  keras-hub's BertBackbone uses the tanh-approximate GELU, the others the exact (erf) one.
* The environment is used as found. torch's OpenMP runtime (libgomp) spin-waits
  between parallel regions, which on a busy or virtualised CPU can make torch several
  times slower (on one shared 2-vCPU VM: DistilBERT 8x128, 2 threads, 2.3 s per batch
  by default, 0.9 s with OMP_WAIT_POLICY=PASSIVE, 1.4 s with 1 thread). The variables
  that matter (OMP_WAIT_POLICY, OMP_NUM_THREADS, ...) are recorded in the JSON.

Running
-------
    .venv/bin/python bench/encoder_inference.py                  # full run, ~5 minutes
    .venv/bin/python bench/encoder_inference.py --quick --seq 32  # smoke run, not a measurement
    .venv/bin/python bench/encoder_inference.py --models bert --budget-seconds 20 --json out.json

Run the full benchmark on an otherwise idle machine; the load average is printed at
the start and the end. Progress goes to stderr, the results to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import keras_bert_kit as kbk  # noqa: E402

# bench/ is sys.path[0] when this file is run as a script.
from _results import (  # noqa: E402
    KERAS_PATHS,
    BenchReport,
    PeakCandidate,
    cpu_model,
    machine_info,
    measure_matmul_peak,
    ratio_chart,
)
from _timing import Timing, measure, usable_cores  # noqa: E402

TARGET_VS_KERAS_HUB = 1.1
TARGET_FRACTION_OF_PEAK = 0.9
TARGET_CHECK_COST = 0.01  # the id checks' share of the forward pass, at most
CHECK_COST_BLOCK = 5  # calls per model in each alternating block
PEAK_MATMUL_SIZES = (1024, 2048, 3072)
# Recorded in the JSON: they change the speed of TensorFlow or torch.
ENVIRONMENT_VARIABLES = ("TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                         "GOMP_SPINCOUNT", "MKL_NUM_THREADS")  # fmt: skip

Step = Callable[[], object]  # one forward pass, returning only once its output exists


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# === Architectures and FLOPs ===================================================


@dataclasses.dataclass(frozen=True)
class Architecture:
    key: str
    title: str
    config: kbk.configs.EncoderConfig

    @property
    def is_bert(self) -> bool:
        """BERT has segment embeddings and a pooler dense layer; DistilBERT has neither."""
        return isinstance(self.config, kbk.BertConfig)


ARCHITECTURES = {
    "bert": Architecture("bert", "BERT-base", kbk.BertConfig.from_preset("bert_base")),
    "distilbert": Architecture(
        "distilbert", "DistilBERT-base", kbk.DistilBertConfig.from_preset("distilbert_base")
    ),
}


def forward_flops(arch: Architecture, batch: int, seq: int) -> int:
    """Matmul FLOPs (2*m*n*k each) of one forward pass; see the module docstring."""
    c = arch.config
    tokens = batch * seq
    hidden, ffn = c.hidden_size, c.intermediate_size
    projections = 2 * tokens * hidden * (3 * hidden + hidden + 2 * ffn)  # QKV, out, FFN in/out
    attention = 2 * (2 * batch * seq * seq * hidden)  # Q K^T and P V, all heads together
    pooler = 2 * batch * hidden * hidden if arch.is_bert else 0
    return c.num_layers * (projections + attention) + pooler


def make_inputs(arch: Architecture, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """int32 `[batch, seq]` inputs under keras-hub's names: random ids, two
    segments (BERT only), no padding."""
    rng = np.random.default_rng(seed)
    inputs = {
        "token_ids": rng.integers(1, arch.config.vocab_size, (batch, seq), dtype=np.int32)
    }
    if arch.is_bert:
        second_half = (np.arange(seq) >= seq // 2).astype(np.int32)
        inputs["segment_ids"] = np.tile(second_half, (batch, 1))
    inputs["padding_mask"] = np.ones((batch, seq), np.int32)
    return inputs


def renamed(inputs: dict, names: dict[str, str]) -> dict:
    return {names.get(name, name): value for name, value in inputs.items()}


# === Implementations: each builds its model and returns {path label: step} ======


def keras_paths(model: keras.Model, inputs: dict[str, np.ndarray]) -> dict[str, Step]:
    tensors = {name: tf.constant(value) for name, value in inputs.items()}

    def step_for(jit_compile: bool) -> Step:
        forward = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)

        def step():
            outputs = forward(tensors)
            sequence_output = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
            return sequence_output.numpy()

        return step

    return {label: step_for(jit) for label, jit in KERAS_PATHS.items()}


def project_paths(arch: Architecture, inputs: dict) -> dict[str, Step]:
    encoder_class = kbk.BertEncoder if arch.is_bert else kbk.DistilBertEncoder
    model = encoder_class(arch.config)
    return keras_paths(model, renamed(inputs, {"token_ids": "input_ids"}))


def keras_hub_paths(arch: Architecture, inputs: dict) -> dict[str, Step]:
    c = arch.config
    sizes = dict(
        vocabulary_size=c.vocab_size,
        num_layers=c.num_layers,
        num_heads=c.num_heads,
        hidden_dim=c.hidden_size,
        intermediate_dim=c.intermediate_size,
        dropout=c.dropout_rate,
        max_sequence_length=c.max_sequence_length,
    )
    if arch.is_bert:
        model = keras_hub.models.BertBackbone(num_segments=c.type_vocab_size, **sizes)
    else:
        model = keras_hub.models.DistilBertBackbone(**sizes)
    return keras_paths(model, inputs)


def torch_paths(arch: Architecture, inputs: dict) -> dict[str, Step]:
    c = arch.config
    if arch.is_bert:
        hf_config = transformers.BertConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_layers,
            num_attention_heads=c.num_heads,
            intermediate_size=c.intermediate_size,
            hidden_act="gelu",
            max_position_embeddings=c.max_sequence_length,
            type_vocab_size=c.type_vocab_size,
            layer_norm_eps=c.layer_norm_epsilon,
        )
        model = transformers.BertModel(hf_config)
    else:
        hf_config = transformers.DistilBertConfig(
            vocab_size=c.vocab_size,
            dim=c.hidden_size,
            n_layers=c.num_layers,
            n_heads=c.num_heads,
            hidden_dim=c.intermediate_size,
            activation="gelu",
            max_position_embeddings=c.max_sequence_length,
        )
        model = transformers.DistilBertModel(hf_config)
    model.eval()
    hf_names = {
        "token_ids": "input_ids",
        "segment_ids": "token_type_ids",
        "padding_mask": "attention_mask",
    }
    tensors = {
        name: torch.as_tensor(value, dtype=torch.long)
        for name, value in renamed(inputs, hf_names).items()
    }

    def step():
        with torch.inference_mode():
            return model(**tensors).last_hidden_state.numpy()

    return {f"eager, {model.config._attn_implementation} attention": step}


@dataclasses.dataclass(frozen=True)
class Implementation:
    key: str
    label: str
    build_paths: Callable[[Architecture, dict], dict[str, Step]]


IMPLEMENTATIONS = (
    Implementation("project", f"keras_bert_kit {kbk.__version__}", project_paths),
    Implementation("keras_hub", f"keras-hub {keras_hub.__version__}", keras_hub_paths),
    Implementation(
        "torch",
        f"transformers {transformers.__version__} (torch {torch.__version__})",
        torch_paths,
    ),
)


# === Measuring ==================================================================


@dataclasses.dataclass(frozen=True)
class TimingOptions:
    budget_seconds: float
    min_repeats: int

    def measure(self, step: Step) -> Timing:
        return measure(step, budget_seconds=self.budget_seconds, min_repeats=self.min_repeats)


@dataclasses.dataclass(frozen=True)
class Result:
    arch: Architecture
    implementation: Implementation
    timings: dict[str, Timing]  # every path tried
    batch: int
    flops: int

    @property
    def path(self) -> str:
        """The fastest path (lowest median)."""
        return min(self.timings, key=lambda path: self.timings[path].median)

    @property
    def timing(self) -> Timing:
        return self.timings[self.path]

    @property
    def sequences_per_second(self) -> float:
        return self.batch / self.timing.median

    @property
    def gflops(self) -> float:
        return self.flops / self.timing.median / 1e9

    def to_dict(self, peak_gflops: float) -> dict:
        return {
            "model": self.arch.key,
            "implementation": self.implementation.key,
            "implementation_label": self.implementation.label,
            "path": self.path,
            "sequences_per_second": self.sequences_per_second,
            "flops_per_batch": self.flops,
            "gflops": self.gflops,
            "fraction_of_peak": self.gflops / peak_gflops,
            "paths": {path: timing.to_dict() for path, timing in self.timings.items()},
        }


def describe(timing: Timing) -> str:
    return (
        f"median {timing.median * 1e3:.1f} ms, IQR {timing.spread:.1%}, "
        f"{len(timing.times)} repeats, first call {timing.first_call_seconds:.1f} s"
    )


def run_implementation(
    arch: Architecture,
    implementation: Implementation,
    inputs: dict,
    flops: int,
    options: TimingOptions,
) -> Result:
    log(f"{arch.title} / {implementation.label}: building")
    paths = implementation.build_paths(arch, inputs)
    timings = {}
    for path, step in paths.items():
        log(f"  {path}: warming up and timing")
        timings[path] = options.measure(step)
        log(f"  {path}: {describe(timings[path])}")
    del paths, step  # the steps hold the model: free it before the next one is built
    keras.backend.clear_session()
    gc.collect()
    batch = next(iter(inputs.values())).shape[0]
    return Result(arch, implementation, timings, batch, flops)


@dataclasses.dataclass(frozen=True)
class CheckCost:
    """The checked encoder's timing against the same graph without its checks."""

    arch: Architecture
    checked: Timing
    unchecked: Timing
    checks_alone: Timing
    passthrough: Timing  # the same call returning the ids unchecked
    checked_ops: int
    unchecked_ops: int

    @property
    def ab_cost(self) -> float:
        """Extra time of the checked forward pass, as a fraction of the unchecked one."""
        return self.checked.median / self.unchecked.median - 1

    @property
    def cost(self) -> float:
        """Time of the checks alone, as a fraction of the unchecked forward pass."""
        return self.checks_alone.median / self.unchecked.median

    @property
    def marginal_cost(self) -> float:
        """The checks' time beyond an unchecked call's, over the unchecked forward pass."""
        return (self.checks_alone.median - self.passthrough.median) / self.unchecked.median

    @property
    def verdict(self) -> str:
        return "PASS" if self.cost < TARGET_CHECK_COST else "FALL SHORT"

    def to_dict(self) -> dict:
        return {
            "model": self.arch.key,
            "cost": self.cost,
            "ab_cost": self.ab_cost,
            "marginal_cost": self.marginal_cost,
            "target": TARGET_CHECK_COST,
            "verdict": self.verdict,
            "checked": self.checked.to_dict(),
            "unchecked": self.unchecked.to_dict(),
            "checks_alone": self.checks_alone.to_dict(),
            "passthrough": self.passthrough.to_dict(),
            "graph_ops": {"checked": self.checked_ops, "unchecked": self.unchecked_ops},
        }


def measure_alternating(steps: dict[str, Step], options: TimingOptions) -> dict[str, Timing]:
    """Times each step in alternating blocks of `CHECK_COST_BLOCK` calls (order
    reversed every round) until the budget is spent and each has `min_repeats` calls."""
    first_call = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        first_call[name] = time.perf_counter() - start
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    deadline = time.perf_counter() + options.budget_seconds
    gc.collect()
    gc.disable()
    try:
        while time.perf_counter() < deadline or min(map(len, times.values())) < options.min_repeats:
            for name in order:
                for _ in range(CHECK_COST_BLOCK):
                    start = time.perf_counter()
                    steps[name]()
                    times[name].append(time.perf_counter() - start)
            order.reverse()
    finally:
        gc.enable()
    return {name: Timing(tuple(times[name]), first_call[name]) for name in steps}


def measure_check_cost(arch: Architecture, inputs: dict, options: TimingOptions) -> CheckCost:
    encoder_class = kbk.BertEncoder if arch.is_bert else kbk.DistilBertEncoder
    encoder = encoder_class(arch.config)
    unchecked = keras.Model(encoder.input, encoder.output)
    tensors = {
        name: tf.constant(value)
        for name, value in renamed(inputs, {"token_ids": "input_ids"}).items()
    }
    forwards = {
        "checked": tf.function(lambda x: encoder(x, training=False)["sequence_output"]),
        "unchecked": tf.function(lambda x: unchecked(x, training=False)["sequence_output"]),
    }
    ops = {
        name: len(forward.get_concrete_function(tensors).graph.get_operations())
        for name, forward in forwards.items()
    }
    log(f"{arch.title}: id checks' cost, timing checked and unchecked alternately")
    steps = {
        name: lambda forward=forward: forward(tensors).numpy()
        for name, forward in forwards.items()
    }
    timings = measure_alternating(steps, options)
    check = tf.function(encoder.check_inputs)
    passthrough = tf.function(lambda x: {name: tf.identity(ids) for name, ids in x.items()})
    alone = measure_alternating(
        {
            name: lambda call=call: [ids.numpy() for ids in call(tensors).values()]
            for name, call in (("checks", check), ("passthrough", passthrough))
        },
        options,
    )
    result = CheckCost(arch, timings["checked"], timings["unchecked"], alone["checks"],
                       alone["passthrough"], ops["checked"], ops["unchecked"])  # fmt: skip
    log(f"  checked: {describe(result.checked)}; unchecked: {describe(result.unchecked)}; "
        f"checks alone: {describe(result.checks_alone)}; passthrough: "
        f"{describe(result.passthrough)}")  # fmt: skip
    del encoder, unchecked, forwards, steps, check, passthrough
    keras.backend.clear_session()
    gc.collect()
    return result


# === Reporting ==================================================================


def verdict(value: float, target: float) -> str:
    return "PASS" if value >= target else "FALL SHORT"


def comparisons(results: list[Result], peak: float) -> dict[str, dict]:
    """Per architecture: this project vs keras-hub and torch, and against the targets."""
    by_arch: dict[str, dict[str, Result]] = {}
    for result in results:
        by_arch.setdefault(result.arch.key, {})[result.implementation.key] = result
    summary = {}
    for arch_key, found in by_arch.items():
        project = found["project"]
        vs_keras_hub = project.sequences_per_second / found["keras_hub"].sequences_per_second
        vs_torch = project.sequences_per_second / found["torch"].sequences_per_second
        fraction = project.gflops / peak
        summary[arch_key] = {
            "title": project.arch.title,
            "project_vs_keras_hub": vs_keras_hub,
            "project_vs_torch": vs_torch,
            "project_fraction_of_peak": fraction,
            "vs_keras_hub_verdict": verdict(vs_keras_hub, TARGET_VS_KERAS_HUB),
            "fraction_of_peak_verdict": verdict(fraction, TARGET_FRACTION_OF_PEAK),
        }
    return summary


def print_header(out: BenchReport, meta: dict, peak_candidates: list[PeakCandidate]) -> None:
    out.note(
        f"\nEncoder inference, float32, batch {meta['batch']} x seq {meta['seq']}, "
        f"{meta['cores']} CPU(s) ({meta['cpu']}); load average at start "
        f"{meta['load_average_start']:.2f}, at end {meta['load_average_end']:.2f}"
    )
    if meta["quick"]:
        out.note("QUICK (smoke) run: too few repeats for the numbers to mean anything.")
    best = max(peak_candidates, key=lambda candidate: candidate.gflops)
    tried = ", ".join(f"{c.size} {c.path} {c.gflops:.1f}" for c in peak_candidates)
    out.note(f"fp32 matmul peak: {best.gflops:.1f} GFLOP/s (tf.matmul {best.size}^2, "
             f"{best.path})\n  all tried (GFLOP/s): {tried}")


def print_results_table(out: BenchReport, results: list[Result], peak: float) -> None:
    """One row per model and implementation, on its fastest path. The last column is
    keras_bert_kit's sequences/s divided by the row's: the ratios this project vs X."""
    project = {r.arch.key: r for r in results if r.implementation.key == "project"}
    headers = ["model", "implementation", "path", "seq/s", "ms/batch", "IQR", "n",
               "GFLOP/s", "of peak", "kbk / this"]  # fmt: skip
    rows = [
        [
            r.arch.title,
            r.implementation.label,
            r.path,
            f"{r.sequences_per_second:.2f}",
            f"{r.timing.median * 1e3:.1f}",
            f"{r.timing.spread:.1%}",
            str(len(r.timing.times)),
            f"{r.gflops:.1f}",
            f"{r.gflops / peak:.2f}",
            f"{project[r.arch.key].sequences_per_second / r.sequences_per_second:.2f}x",
        ]
        for r in results
    ]
    print()
    out.table(headers, rows, footnote=(
        "IQR: interquartile range of the per-batch times, % of the median; n: timed calls; "
        "kbk / this: keras_bert_kit's seq/s over the row's (> 1: keras_bert_kit is faster)."))


def print_paths_tried(out: BenchReport, results: list[Result]) -> None:
    lines = ["\nPaths tried (median ms/batch; first call = trace + compile):"]
    for r in results:
        tried = "; ".join(
            f"{path} {t.median * 1e3:.1f} ms (first {t.first_call_seconds:.1f} s)"
            for path, t in r.timings.items()
        )
        lines.append(f"  {r.arch.title} / {r.implementation.label}: {tried}")
    out.note("\n".join(lines))


def print_targets(out: BenchReport, summary: dict[str, dict]) -> None:
    lines = [
        f"\nTargets for keras_bert_kit: >= {TARGET_VS_KERAS_HUB}x keras-hub's sequences/s, "
        f">= {TARGET_FRACTION_OF_PEAK} of the fp32 matmul peak."
    ]
    for s in summary.values():
        lines.append(
            f"  {s['title']}: vs keras-hub {s['project_vs_keras_hub']:.2f}x "
            f"[{s['vs_keras_hub_verdict']}], fraction of matmul peak "
            f"{s['project_fraction_of_peak']:.2f} [{s['fraction_of_peak_verdict']}]; "
            f"vs torch {s['project_vs_torch']:.2f}x (no target)"
        )
    out.note("\n".join(lines))


def print_check_costs(out: BenchReport, costs: list[CheckCost]) -> None:
    lines = [
        f"\nId checks' cost (tf.function, no XLA; target < {TARGET_CHECK_COST:.0%} of the "
        "forward pass):"
    ]
    for c in costs:
        lines.append(
            f"  {c.arch.title}: checks alone {c.checks_alone.median * 1e3:.3f} ms (IQR "
            f"{c.checks_alone.spread:.1%}) = {c.cost:.3%} of the unchecked forward pass "
            f"[{c.verdict}]; beyond an unchecked call's {c.passthrough.median * 1e3:.3f} ms: "
            f"{c.marginal_cost:.3%}\n"
            f"    A/B: checked {c.checked.median * 1e3:.2f} ms (IQR {c.checked.spread:.1%}, "
            f"n={len(c.checked.times)}) vs unchecked {c.unchecked.median * 1e3:.2f} ms "
            f"(IQR {c.unchecked.spread:.1%}, n={len(c.unchecked.times)}): {c.ab_cost:+.2%}; "
            f"graph ops {c.checked_ops} vs {c.unchecked_ops}"
        )
    out.note("\n".join(lines))


def ratios_chart(summary: dict[str, dict]):
    ratios, targets = {}, {}
    for s in summary.values():
        ratios[f"{s['title']}: vs keras-hub"] = s["project_vs_keras_hub"]
        targets[f"{s['title']}: vs keras-hub"] = TARGET_VS_KERAS_HUB
        ratios[f"{s['title']}: vs torch"] = s["project_vs_torch"]
        ratios[f"{s['title']}: fraction of matmul peak"] = s["project_fraction_of_peak"]
        targets[f"{s['title']}: fraction of matmul peak"] = TARGET_FRACTION_OF_PEAK
    return ratio_chart("keras_bert_kit encoder inference, float32 CPU", ratios,
                       xlabel="keras_bert_kit sequences/s over the peer's; GFLOP/s over the "
                       "fp32 matmul peak", target=targets)


def report(
    out: BenchReport,
    results: list[Result],
    peak_candidates: list[PeakCandidate],
    check_costs: list[CheckCost],
    meta: dict,
) -> dict:
    """Prints the results (kept in `out`) and returns them as a JSON-ready dict."""
    check_cost_report = {
        "meta": meta,
        "check_costs": [c.to_dict() for c in check_costs],
        "targets": {"check_cost": TARGET_CHECK_COST},
    }
    if not results:  # --check-cost-only
        print_check_costs(out, check_costs)
        return check_cost_report
    best = max(peak_candidates, key=lambda candidate: candidate.gflops)
    summary = comparisons(results, best.gflops)
    print_header(out, meta, peak_candidates)
    print_results_table(out, results, best.gflops)
    print_paths_tried(out, results)
    print_targets(out, summary)
    print_check_costs(out, check_costs)
    out.chart("ratios", ratios_chart(summary))
    return {
        **check_cost_report,
        "matmul_peak": {
            "gflops": best.gflops,
            "size": best.size,
            "path": best.path,
            "candidates": [c.to_dict() for c in peak_candidates],
        },
        "targets": {
            "project_vs_keras_hub": TARGET_VS_KERAS_HUB,
            "project_fraction_of_peak": TARGET_FRACTION_OF_PEAK,
            "check_cost": TARGET_CHECK_COST,
        },
        "results": [r.to_dict(best.gflops) for r in results],
        "comparisons": summary,
    }


# === Main =======================================================================


def configure_runtime(cores: int) -> None:
    """CPU only, and `cores` threads for TensorFlow's ops and for torch."""
    try:
        tf.config.set_visible_devices([], "GPU")
        tf.config.threading.set_intra_op_parallelism_threads(cores)
    except RuntimeError as e:  # TensorFlow's runtime already started
        log(f"warning: could not configure TensorFlow: {e}")
    torch.set_num_threads(cores)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="sequences per batch (default 8)")
    parser.add_argument("--seq", type=int, default=128, help="sequence length (default 128)")
    parser.add_argument(
        "--models",
        default="bert,distilbert",
        help=f"comma-separated, from {','.join(ARCHITECTURES)} (default: both)",
    )
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=12.0,
        help="timing budget per model and path (default 12; the matmul peak gets 1/4 "
        "of it per size and path)",
    )
    parser.add_argument(
        "--min-repeats", type=int, default=10, help="timed calls at least (default 10)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: no budget, 2 timed calls per path"
    )
    parser.add_argument(
        "--check-cost-only",
        action="store_true",
        help="measure only the id checks' cost (no matmul peak, no comparisons)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(args.models) - set(ARCHITECTURES))
    if unknown or not args.models:
        parser.error(f"--models: unknown {unknown}; choose from {sorted(ARCHITECTURES)}")
    if args.batch <= 0 or args.seq <= 0:
        parser.error("--batch and --seq must be positive")
    if args.quick:
        args.budget_seconds, args.min_repeats = 0.0, 2
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    cores = usable_cores()
    configure_runtime(cores)
    meta = {
        "batch": args.batch,
        "seq": args.seq,
        "models": args.models,
        "budget_seconds": args.budget_seconds,
        "min_repeats": args.min_repeats,
        "quick": args.quick,
        "cores": cores,
        "cpu": cpu_model(),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "torch_threads": torch.get_num_threads(),
        "environment": {
            name: os.environ.get(name, "unset")
            for name in ENVIRONMENT_VARIABLES
        },
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_bert_kit": kbk.__version__,
            "keras_hub": keras_hub.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "load_average_start": os.getloadavg()[0],
    }
    if meta["load_average_start"] > 0.5 * cores:
        log(f"warning: load average {meta['load_average_start']:.2f} on {cores} CPU(s); "
            "the machine is busy and the timings will be noisy")  # fmt: skip

    peak_candidates = []
    if not args.check_cost_only:
        peak_candidates = measure_matmul_peak(
            PEAK_MATMUL_SIZES, budget_seconds=args.budget_seconds / 4,
            min_repeats=max(2, args.min_repeats // 2), log=log)

    options = TimingOptions(args.budget_seconds, args.min_repeats)
    results, check_costs = [], []
    for arch in (ARCHITECTURES[name] for name in args.models):
        inputs = make_inputs(arch, args.batch, args.seq)
        flops = forward_flops(arch, args.batch, args.seq)
        if not args.check_cost_only:
            for implementation in IMPLEMENTATIONS:
                results.append(run_implementation(arch, implementation, inputs, flops, options))
        check_costs.append(measure_check_cost(arch, inputs, options))

    meta["load_average_end"] = os.getloadavg()[0]
    out = BenchReport("encoder_inference", quick=args.quick,
                      description=__doc__.splitlines()[0])
    summary = report(out, results, peak_candidates, check_costs, meta)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        print(f"\nWrote {args.json}")
    out.write(machine_info(peak_candidates) if peak_candidates else None)
    return summary


if __name__ == "__main__":
    main()
