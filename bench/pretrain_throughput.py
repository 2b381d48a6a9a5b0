"""Pretraining throughput: `BertPretrainer.fit` vs keras-hub `BertMaskedLM.fit`, same inputs.

Both models are `bert_small` (4 layers, hidden 512, 8 heads, 30522 tokens),
trained on the same pre-masked batches (batch 32, sequence 128, 20 predictions
per sequence), with AdamW at a constant 1e-4, in float32, in this one process.
keras-hub's `BertMaskedLM` is the closest peer: it has the MLM head only, while
`BertPretrainer` also trains the NSP head (a small extra cost). Each trains
with its own package's AdamW: `keras.optimizers.AdamW` for keras-hub,
`kbk.optimization.AdamW` (the same update in TensorFlow's fused kernel, what
`BertPretrainer.compile()` builds) for this project, which is also timed with
Keras' AdamW. Each is timed with XLA on and off; the table shows training
sequences/s (median over steps after warm-up) and the ratio to keras-hub's
best. Target: >= 1.3x.

    .venv/bin/python bench/pretrain_throughput.py            # ~10 minutes on 2 cores
    .venv/bin/python bench/pretrain_throughput.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from _results import BenchReport, ratio_chart  # noqa: E402
from _timing import usable_cores  # noqa: E402

TARGET_VS_KERAS_HUB = 1.3
SIZES = dict(num_layers=4, hidden=512, heads=8, vocab=30522)


def batches(count, batch_size, seq_len, predictions, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.integers(1000, SIZES["vocab"], (batch_size, seq_len)).astype("int32")
        positions = np.sort(np.stack([rng.choice(np.arange(1, seq_len - 1), predictions,
                                                 replace=False) for _ in range(batch_size)]))
        out.append(dict(
            input_ids=ids,
            segment_ids=(np.arange(seq_len)[None] >= seq_len // 2).repeat(batch_size, 0)
            .astype("int32"),
            padding_mask=np.ones((batch_size, seq_len), "int32"),
            masked_positions=positions.astype("int32"),
            masked_ids=np.take_along_axis(ids, positions, 1).astype("int32"),
            masked_weights=np.ones((batch_size, predictions), "float32"),
            nsp_label=rng.integers(0, 2, batch_size).astype("int32"),
        ))
    return out


class StepTimer(keras.callbacks.Callback):
    """Seconds of each training step."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def time_ours(data, jit, warmup, keras_adamw=False):
    import keras_bert_kit as kbk

    keras.utils.set_random_seed(0)
    config = kbk.BertConfig(num_layers=SIZES["num_layers"], hidden_size=SIZES["hidden"],
                            num_heads=SIZES["heads"], vocab_size=SIZES["vocab"])
    model = kbk.BertPretrainer(kbk.BertEncoder(config))
    optimizer = (keras.optimizers.AdamW if keras_adamw else kbk.optimization.AdamW)(1e-4)
    model.compile(optimizer=optimizer, jit_compile=jit)
    dataset = tf.data.Dataset.from_tensor_slices(
        {k: np.stack([b[k] for b in data]) for k in data[0]}
    ).unbatch().batch(len(data[0]["input_ids"]))
    timer = StepTimer()
    model.fit(dataset, epochs=1, callbacks=[timer], verbose=0)
    return timer.times[warmup:]


def time_keras_hub(data, jit, warmup):
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=SIZES["vocab"], num_layers=SIZES["num_layers"], num_heads=SIZES["heads"],
        hidden_dim=SIZES["hidden"], intermediate_dim=4 * SIZES["hidden"],
        max_sequence_length=512,
    )
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy()],
                  jit_compile=jit)
    x = {
        "token_ids": np.stack([b["input_ids"] for b in data]),
        "segment_ids": np.stack([b["segment_ids"] for b in data]),
        "padding_mask": np.stack([b["padding_mask"] for b in data]),
        "mask_positions": np.stack([b["masked_positions"] for b in data]),
    }
    y = np.stack([b["masked_ids"] for b in data])
    weights = np.stack([b["masked_weights"] for b in data])
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).unbatch().batch(
        len(data[0]["input_ids"]))
    timer = StepTimer()
    model.fit(dataset, epochs=1, callbacks=[timer], verbose=0)
    return timer.times[warmup:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps, smaller batch")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run")
    args = parser.parse_args(argv)
    batch_size, seq_len = (8, 64) if args.quick else (32, 128)
    steps, warmup = (4, 2) if args.quick else (args.steps, 5)
    data = batches(steps + warmup, batch_size, seq_len, predictions=20)
    out = BenchReport("pretrain_throughput", quick=args.quick,
                      description=__doc__.split("\n\n")[0])
    out.note(f"bert_small, batch {batch_size} x {seq_len}, {steps} timed steps after {warmup} "
             f"warm-up, {usable_cores()} cores")

    results = {}
    runs = [("keras_bert_kit BertPretrainer (MLM+NSP)", time_ours, (False, True)),
            ("keras_bert_kit BertPretrainer, Keras' AdamW",
             lambda *a: time_ours(*a, keras_adamw=True), (False,)),
            ("keras-hub BertMaskedLM (MLM)", time_keras_hub, (False, True))]
    for name, runner, jits in runs:
        for jit in jits:
            times = runner(data, jit, warmup)
            results[(name, jit)] = batch_size / statistics.median(times)
            print(f"{name}, XLA {'on' if jit else 'off'}: "
                  f"{results[(name, jit)]:.1f} sequences/s", flush=True)
    peer = max(v for (name, _), v in results.items() if name.startswith("keras-hub"))
    rows = [[name, "on" if jit else "off", f"{value:.1f}", f"{value / peer:.2f}x"]
            for (name, jit), value in results.items()]
    print()
    out.table(["model", "XLA", "sequences/s", "vs keras-hub best"], rows)
    ours = max(v for (name, _), v in results.items() if name == runs[0][0])
    verdict = "PASS" if ours / peer >= TARGET_VS_KERAS_HUB else "FAIL"
    out.note(f"\nbest of ours vs best of keras-hub: {ours / peer:.2f}x ({verdict}: target >= "
             f"{TARGET_VS_KERAS_HUB}x)")
    labels = {key: f"{key[0]}, XLA {'on' if key[1] else 'off'}" for key in results}
    out.chart("vs_keras_hub", ratio_chart(
        "Pretraining bert_small: training sequences/s over keras-hub BertMaskedLM's best",
        {labels[key]: value / peer for key, value in results.items()},
        xlabel="sequences/s over keras-hub's best",
        target={labels[key]: TARGET_VS_KERAS_HUB for key in results if key[0] == runs[0][0]}))
    out.write()


if __name__ == "__main__":
    main()
