"""What the command-line jobs share: pretraining data, strategies, models, XLA, callbacks.

`training.pretrain` and `training.distill` (general mode) make pretraining
data the same way, from the same settings; every job picks its
`tf.distribute` strategy and XLA setting with the same rules.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from training.settings import quote

# The pretraining-data settings (a share of each job's SETTINGS table): each
# name, its default and what it means (shown by --help).
PRETRAINING_DATA_SETTINGS = {
    "max_seq_length": (128, "tokens per example, [CLS] and [SEP]s included"),
    "mask_rate": (0.15, "share of each example's tokens chosen for prediction (BERT: 0.15)"),
    "max_predictions_per_seq": (20, "masked positions per example at most"),
    "whole_word_masking": (False, "mask all pieces of a word together"),
    "dupe_factor": (1, "passes over the corpus making examples, each split differently"),
    "short_seq_prob": (0.1, "share of examples aiming at a random shorter length"),
    "eval_fraction": (0.05, "share of the documents held out for evaluation"),
}


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


# -- strategy and model -----------------------------------------------------------------


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


# -- XLA ------------------------------------------------------------------------------


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
        if self.keeps(logs):
            super().on_epoch_end(epoch, logs)

    def keeps(self, logs):
        """Whether the model at the end of an epoch with these `logs` is fit to keep."""
        if logs and not all(math.isfinite(v) for v in logs.values() if isinstance(v, float)):
            return False
        return not getattr(self.model, "_stopped_on_nan", False)


def checkpoint_epoch(directory):
    """The epochs done by the BackupAndRestore checkpoint in `directory` (0: none)."""
    path = os.path.join(directory, "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return json.load(f)["epoch"]


def _write_json(value, path):
    with open(path + ".partial", "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
    os.replace(path + ".partial", path)


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def random_states(model):
    """The model's random-number generator states (dropout's seeds): not among its weights."""
    kept = {id(v) for v in model.weights} | {id(v) for v in model.metrics_variables}
    return [v for v in model.variables if id(v) not in kept]


class EpochCheckpoints(SafeBackupAndRestore):
    """Epoch checkpoints in `directory` that the same command, started again, resumes from.

    BackupAndRestore keeps the model's weights with the optimizer's state,
    and the epoch. Beside them, `run.json` holds `settings`: a checkpoint of
    a run with other settings is refused (ValueError) rather than resumed;
    and `epochs.json` holds each finished epoch's logs, training seconds and
    the model's random-number generator states (dropout), which Keras leaves
    out of the weights. So a resumed run goes on where the interrupted one
    stopped (bit for bit, given the same data stream: `resume_data`), and
    `history` and `seconds_per_epoch` cover every epoch. The files of an
    epoch are written before Keras's, so that a kill between them leaves the
    previous epoch's checkpoint whole. `remove` deletes the directory, once
    the run's outputs are written.

    `settings` must be JSON-able (others are compared by their text).
    """

    def __init__(self, directory, settings):
        super().__init__(directory, save_freq="epoch", delete_checkpoint=False)
        self.directory = directory
        self.settings = json.loads(json.dumps(settings, default=str))
        self._run_path = os.path.join(directory, "run.json")
        self._epochs_path = os.path.join(directory, "epochs.json")
        done = checkpoint_epoch(directory)
        self.epochs = []
        if done:
            self._check_run()
            self.epochs = _read_json(self._epochs_path)[:done]
            if len(self.epochs) != done:
                raise ValueError(f"{self._epochs_path} lists {len(self.epochs)} epoch(s), but "
                                 f"the checkpoint is of epoch {done}: delete {directory} to "
                                 "start afresh.")
            print(f"Resuming from the checkpoint of epoch {done} in {directory}.", flush=True)

    def _check_run(self):
        if not os.path.exists(self._run_path):
            raise ValueError(f"{self.directory} holds a checkpoint without run.json, not one "
                             "of this job: delete it to start afresh.")
        saved = _read_json(self._run_path)
        changed = [f"{key} {quote(saved.get(key))} then, {quote(self.settings.get(key))} now"
                   for key in sorted(set(saved) | set(self.settings))
                   if saved.get(key) != self.settings.get(key)]
        if changed:
            raise ValueError(f"{self.directory} holds the checkpoint of another run ("
                             f"{'; '.join(changed)}): run with its settings to resume it, "
                             "or delete the directory to start afresh.")

    @property
    def done_epochs(self):
        return len(self.epochs)

    @property
    def history(self):
        """{name: [value per epoch]} of every finished epoch, resumed runs' included."""
        names = dict.fromkeys(name for epoch in self.epochs for name in epoch["logs"])
        return {name: [epoch["logs"].get(name) for epoch in self.epochs] for name in names}

    @property
    def seconds_per_epoch(self):
        """Each finished epoch's training time (its evaluation excluded)."""
        return [epoch["seconds"] for epoch in self.epochs]

    def resume_data(self, stream, steps_per_epoch):
        """`stream` past the finished epochs, for a `fit` reading `steps_per_epoch` per epoch.

        `stream` is endless (e.g. a `repeat()` of the data set, which
        reshuffles it each pass): `fit` reads it through one iterator, so its
        order is the same however many iterators Keras makes of it, and what
        follows the skipped batches is what the interrupted run would have read.
        """
        return stream.skip(self.done_epochs * steps_per_epoch)

    def raise_if_stopped(self, nan_guard, learning_rate):
        """Raises a FloatingPointError if `nan_guard` (a StopOnNaN) stopped the run.

        `learning_rate` names how the user sets it, for the advice.
        """
        if nan_guard.step is not None:
            raise FloatingPointError(
                f"The loss became non-finite at step {nan_guard.step}; stopped. The checkpoint "
                f"of the last good epoch ({self.done_epochs}) is kept in {self.directory}: "
                f"lower {learning_rate} or check the data, then run the same command to "
                "resume from it."
            )

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.epochs:
            states = self.epochs[-1]["random_states"]
            variables = random_states(self.model)
            if len(states) != len(variables):
                raise ValueError(f"The checkpoint in {self.directory} has {len(states)} random "
                                 f"generator state(s); the model {len(variables)}.")
            for variable, state in zip(variables, states):
                variable.assign(np.asarray(state, dtype=variable.dtype))

    def on_epoch_begin(self, epoch, logs=None):
        self._started = self._last_batch_end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last_batch_end = time.perf_counter()
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if not self.keeps(logs):
            return
        os.makedirs(self.directory, exist_ok=True)
        if not self.epochs:  # (Over a run.json left by a run killed before its first epoch.)
            _write_json(self.settings, self._run_path)
        self.epochs.append(dict(
            logs={name: float(value) for name, value in (logs or {}).items()},
            seconds=self._last_batch_end - self._started,
            random_states=[np.asarray(v).tolist() for v in random_states(self.model)],
        ))
        _write_json(self.epochs, self._epochs_path)
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
