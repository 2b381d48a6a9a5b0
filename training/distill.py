"""Distil a teacher into a smaller student with `Distiller.fit`.

    python -m training.distill --config training/configs/distill_rotten_tomatoes.yaml

The mode follows the teacher:
- a fine-tuned task model (`.keras` from `python -m training.finetune`:
  classifier, tagger or QA): task distillation on the task's data, scored on
  held-out data for the teacher and the student;
- a pretrainer (`.keras` from `python -m training.pretrain`, or a Hugging
  Face directory with an MLM head): general distillation into a DistilBERT
  pretrainer on raw text, with dynamic masking.
Every setting lives in the YAML config; command-line options override it.
The output directory gets `student.keras` (the student alone: it needs
nothing of the teacher; a task student carries its tokenizer), `vocab.txt`,
`encoder.keras` (general mode), `metrics.json` and `curves.png`.

Each epoch (general mode: each `log_every` steps) ends with a checkpoint in
`OUT/checkpoints/`: the same command started again after an interruption
resumes from it, and goes on as the uninterrupted run would have; a
checkpoint of a run with other settings is refused. A non-finite loss stops
the run and keeps the last good checkpoint. The directory is removed once
the outputs are written.
"""

from __future__ import annotations

import math
import os
import sys
import types
import warnings

import keras

from keras_bert_kit.distillation.distiller import check_temperature
from keras_bert_kit.models.pretrainers import check_loss_weight
from keras_bert_kit.validation import check_number
from training import common
from training.settings import check_positive_ints, parse_settings, program_name, run_job

SETTINGS = {
    "teacher": (None, "the teacher: a fine-tuned task model .keras (task distillation), or a "
                      "pretrainer .keras or Hugging Face directory (general distillation)"),
    "vocab": (None, "vocab.txt of a teacher that carries none (default: vocab.txt beside a "
                    ".keras teacher, or the Hugging Face directory's)"),
    "lowercase": (True, "general mode, with `vocab`: lowercase text (uncased vocabulary)"),
    "student": ("from_teacher", "'from_teacher': a DistilBERT with the teacher's sizes that "
                                "starts as `student_layers` of the teacher; a .keras file of an "
                                "encoder, a pretrainer or a task model (e.g. the encoder.keras "
                                "of a general distillation), whose encoder the student starts "
                                "as (its heads fresh; a pretrainer's MLM head kept in general "
                                "mode); or a preset name or mapping (as pretrain's `model`), "
                                "randomly initialised with the teacher's vocabulary"),
    "student_layers": (None, "from_teacher: the teacher layers (0-based) to copy, one per "
                             "student layer (default: every other one)"),
    "data": (None, "task mode: 'rotten_tomatoes' or a data file (as training.finetune reads "
                   "it); general mode: 'news' or a .txt file or folder of them"),
    "eval_data": (None, "task mode: evaluation data (default: `validation_split` of `data`, "
                        "or Rotten Tomatoes' test split)"),
    "validation_split": (0.1, "task mode: share of `data` held out when `eval_data` is absent"),
    "columns": ({}, "task mode: column / key names of the data file, as training.finetune's "
                    "options (e.g. {text_column: review, label_column: stars})"),
    "max_examples": (None, "task mode: use only the first N training examples"),
    "temperature": (2.0, "softmax temperature of the soft targets"),
    "alpha_ce": (5.0, "weight of the soft-target loss (KL x T²)"),
    "alpha_hard": (2.0, "weight of the student's own loss on the true targets"),
    "alpha_cos": (1.0, "weight of the cosine loss between last hidden states"),
    "alpha_hidden": (0.0, "weight of the hidden-state MSE through `layer_map`"),
    "alpha_attention": (0.0, "weight of the attention KL through `layer_map`"),
    "layer_map": (None, "{student layer: teacher layer} for the hidden and attention losses "
                        "(0: embeddings; default: spread evenly)"),
    "epochs": (3, "task mode: passes over the training data"),
    "steps": (2000, "general mode: optimizer steps"),
    "log_every": (200, "general mode: steps per logged epoch (and evaluation)"),
    # General mode makes its data as the pretraining job does, with the same settings.
    **{key: (default, f"general mode: {help_}")
       for key, (default, help_) in common.PRETRAINING_DATA_SETTINGS.items()},
    "batch_size": (32, "examples per step"),
    "learning_rate": (5e-5, "peak learning rate"),
    "warmup_fraction": (0.1, "share of the steps spent warming up, then linear decay to 0"),
    "weight_decay": (0.01, "AdamW weight decay (not on LayerNorm and biases)"),
    "clipnorm": (1.0, "global gradient-norm clipping (null: none)"),
    "strategy": ("default", "'default' (one device) or 'mirrored' (all local devices)"),
    "precision": ("float32", "'float32', 'mixed_bfloat16' or 'mixed_float16'"),
    "jit_compile": ("auto", "XLA: 'auto', true or false"),
    "seed": (0, "seed of the data order, masking and initialisation"),
    "out": ("runs/distill", "output directory"),
}

# Settings that do not change what a run computes: a checkpoint resumes across them.
UNCHECKED_ON_RESUME = ("out", "quiet", "strategy", "jit_compile")

TASK_NAMES = {"SequenceClassifier": "classify", "TokenClassifier": "tag", "SpanExtractor": "qa"}


def parse_args(argv=None):
    return parse_settings(program_name("training.distill"), __doc__.split("\n\n")[0], SETTINGS,
                          _check_settings, argv)


def _check_settings(s):
    for key in ("teacher", "data"):
        if not s[key]:
            raise ValueError(f"`{key}` is required (in --config or as --{key}).")
    check_positive_ints(s, ("epochs", "steps", "log_every", "batch_size", "max_seq_length",
                            "max_predictions_per_seq", "dupe_factor"))
    check_temperature(s["temperature"])
    for key in ("alpha_ce", "alpha_hard", "alpha_cos", "alpha_hidden", "alpha_attention"):
        check_loss_weight(key, s[key])
    check_number("validation_split", s["validation_split"], 0, 1, include_minimum=False,
                 include_maximum=False)
    if not isinstance(s["columns"], dict):
        raise ValueError(f"`columns` must be a mapping; got {s['columns']!r}.")
    if s["strategy"] not in ("default", "mirrored"):
        raise ValueError(f"`strategy` must be default or mirrored; got {s['strategy']!r}.")
    if s["precision"] not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(f"`precision` must be float32, mixed_bfloat16 or mixed_float16; got "
                         f"{s['precision']!r}.")
    if s["jit_compile"] not in ("auto", True, False):
        raise ValueError(f"`jit_compile` must be auto, true or false; got {s['jit_compile']!r}.")


# -- models ---------------------------------------------------------------------------


def load_teacher(settings):
    """(teacher model, tokenizer): a task model or a pretrainer."""
    import keras_bert_kit as kbk
    from keras_bert_kit.models import Pretrainer
    from keras_bert_kit.tasks import Task

    path = str(settings["teacher"])
    if os.path.isdir(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a checkpoint's unused weights are expected
            teacher = kbk.from_huggingface(path, target="pretrainer")
        vocab = settings["vocab"] or os.path.join(path, "vocab.txt")
    elif path.endswith(".keras"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"teacher {path}: no such file.")
        teacher = keras.saving.load_model(path)
        vocab = settings["vocab"] or os.path.join(os.path.dirname(path), "vocab.txt")
    else:
        raise ValueError(f"teacher {path!r} is neither a .keras file nor a Hugging Face "
                         "model directory.")
    if isinstance(teacher, Task):
        if teacher.preprocessor is None:
            raise ValueError(f"The task model in {path} has no preprocessor (tokenizer): save "
                             "it with one, as training.finetune does.")
        return teacher, teacher.preprocessor.tokenizer
    if not isinstance(teacher, Pretrainer):
        raise ValueError(f"teacher {path} holds a {type(teacher).__name__}; expected a "
                         "fine-tuned task model or a pretrainer.")
    if not os.path.isfile(vocab):
        raise FileNotFoundError(f"No vocabulary for the teacher: {vocab} does not exist; set "
                                "`vocab`.")
    tokenizer = kbk.BertTokenizer(vocab, lowercase=settings["lowercase"])
    if tokenizer.vocabulary_size() != teacher.encoder.config.vocab_size:
        raise ValueError(f"{vocab} has {tokenizer.vocabulary_size()} tokens, but the teacher "
                         f"embeds {teacher.encoder.config.vocab_size}: it is not the teacher's "
                         "vocabulary.")
    return teacher, tokenizer


def make_student(settings, teacher, tokenizer):
    """A student of the teacher's kind: the same task (its head fresh), or a pretrainer.

    `from_teacher` students start as teacher layers (and, for a pretrainer,
    its MLM head); others start from their config's initialiser.
    """
    import keras_bert_kit as kbk
    from keras_bert_kit.tasks import Task

    if settings["student"] == "from_teacher":
        student = kbk.init_student_from_teacher(teacher, layers=settings["student_layers"])
    elif settings["student_layers"] is not None:
        raise ValueError("`student_layers` applies to `student: from_teacher` only.")
    elif str(settings["student"]).endswith(".keras"):
        student = student_from_file(str(settings["student"]), teacher, settings)
    else:
        max_length = teacher.encoder.config.max_sequence_length
        student = common.make_pretrainer(settings["student"], tokenizer.vocabulary_size(),
                                           max_length)
        if isinstance(teacher, Task):
            student = student.encoder
    if not isinstance(teacher, Task):
        return student
    config = teacher.get_config()
    config.update(encoder=student, preprocessor=teacher.preprocessor,
                  name=f"student_{TASK_NAMES[type(teacher).__name__]}")
    return type(teacher)(**config)


def student_from_file(path, teacher, settings):
    """The student of `student: PATH.keras`: its encoder (task mode), or its pretrainer.

    The Distiller checks the pair (vocabulary, widths for the cosine loss);
    the positions the data needs are checked here.
    """
    from keras_bert_kit.models import Pretrainer, pretrainer_for
    from keras_bert_kit.tasks import Task
    from training import finetune

    encoder, loaded = finetune.load_encoder(path, "student")
    if isinstance(teacher, Task):
        needed, what = teacher.preprocessor.sequence_length, "the teacher's preprocessor makes"
    else:
        needed, what = settings["max_seq_length"], "max_seq_length asks for"
    if encoder.config.max_sequence_length < needed:
        raise ValueError(f"student {path}: its encoder takes {encoder.config.max_sequence_length} "
                         f"positions, fewer than the {needed} tokens per example {what}.")
    if isinstance(teacher, Task):
        return encoder
    return loaded if isinstance(loaded, Pretrainer) else pretrainer_for(encoder)


# -- data -----------------------------------------------------------------------------


def finetune_arguments(settings, task):
    """The namespace training.finetune's data functions read."""
    from training import finetune

    defaults = vars(finetune.parse_args(["--task", task, "--data", "x", "--init", "x",
                                         "--out", "x"]))
    unknown = sorted(set(settings["columns"]) - {k for k in defaults if k.endswith("_column")})
    if unknown:
        raise ValueError(f"`columns`: unknown name(s) {unknown}.")
    return types.SimpleNamespace(**{
        **defaults, **settings["columns"], "data": settings["data"],
        "eval_data": settings["eval_data"], "validation_split": settings["validation_split"],
        "seed": settings["seed"], "max_examples": settings["max_examples"],
    })


def task_datasets(settings, teacher, task):
    """(train batches, eval batches, train examples, eval examples) for task distillation."""
    from training import finetune

    args = finetune_arguments(settings, task)
    train, evaluation = finetune.split_data(task, args)
    x, y = finetune.fit_arguments(task, train)
    batches = teacher.preprocessor.dataset(x, y, batch_size=settings["batch_size"],
                                           shuffle=True, seed=settings["seed"])
    eval_x, eval_y = finetune.fit_arguments(task, evaluation)
    eval_batches = teacher.preprocessor.dataset(eval_x, eval_y,
                                                batch_size=settings["batch_size"])
    return batches, eval_batches, train, evaluation


def general_datasets(settings, tokenizer):
    """(train stream, eval batches, train examples, eval examples), each masked in order.

    The masker draws from one random generator; in tf.data's parallel map,
    batches draw in whatever order their threads run, and no two runs mask
    alike. On one thread the n-th batch gets the n-th draw, so a run masks
    the same way every time, and a resumed run, skipping the batches read,
    masks on as the interrupted one would have.
    """
    import tensorflow as tf

    documents = common.load_documents(settings["data"])
    train, evaluation, train_count, eval_count = common.make_datasets(
        settings, tokenizer, documents, settings["batch_size"])
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    return train.with_options(options), evaluation.with_options(options), train_count, eval_count


# -- the run --------------------------------------------------------------------------


def run(settings):
    import keras_bert_kit as kbk
    from keras_bert_kit.tasks import Task
    from training import finetune
    from training.reporting import plot_curves, write_metrics

    out = settings["out"]
    os.makedirs(out, exist_ok=True)
    if settings["precision"] != "float32":
        keras.mixed_precision.set_dtype_policy(settings["precision"])
    keras.utils.set_random_seed(settings["seed"])
    checkpoints = common.EpochCheckpoints(
        os.path.join(out, "checkpoints"),
        {k: v for k, v in settings.items() if k not in UNCHECKED_ON_RESUME},
    )
    strategy = common.make_strategy(settings["strategy"])

    with strategy.scope():
        teacher, tokenizer = load_teacher(settings)
        task = TASK_NAMES.get(type(teacher).__name__) if isinstance(teacher, Task) else None
        student = make_student(settings, teacher, tokenizer)
        # Checks the pair and every loss setting before any data work.
        distiller = kbk.Distiller(
            teacher, student, temperature=settings["temperature"],
            alpha_ce=settings["alpha_ce"], alpha_hard=settings["alpha_hard"],
            alpha_cos=settings["alpha_cos"], alpha_hidden=settings["alpha_hidden"],
            alpha_attention=settings["alpha_attention"], layer_map=settings["layer_map"])

    if task:
        train, evaluation, train_examples, eval_examples = task_datasets(settings, teacher, task)
        steps_per_epoch = int(train.cardinality())
        # One stream, reshuffled each pass, that a resumed run reads on in.
        train = train.repeat()
        epochs, train_count = settings["epochs"], len(train_examples)
        num_train_steps = steps_per_epoch * epochs
    else:
        train, evaluation, train_count, _ = general_datasets(settings, tokenizer)
        steps_per_epoch = min(settings["log_every"], settings["steps"])
        epochs = math.ceil(settings["steps"] / steps_per_epoch)
        num_train_steps = settings["steps"]

    jit_compile = common.resolve_xla(settings["jit_compile"], strategy)
    with strategy.scope():
        distiller.compile(optimizer=kbk.create_optimizer(
            settings["learning_rate"], num_train_steps=num_train_steps,
            warmup_fraction=settings["warmup_fraction"], weight_decay=settings["weight_decay"],
            clipnorm=settings["clipnorm"]), jit_compile=jit_compile)
    mode = f"task distillation ({task})" if task else "general distillation"
    print(f"{mode}: {type(teacher).__name__} teacher ({teacher.count_params():,} parameters) "
          f"-> {type(student).__name__} student ({student.count_params():,}), "
          f"{train_count:,} training examples, {epochs} epoch(s) of {steps_per_epoch} steps.",
          flush=True)

    nan_guard = common.StopOnNaN(steps_per_epoch)
    distiller.fit(checkpoints.resume_data(train, steps_per_epoch), epochs=epochs,
                  steps_per_epoch=steps_per_epoch, validation_data=evaluation,
                  shuffle=False,  # shuffled already
                  callbacks=[nan_guard, checkpoints], verbose=2 if settings["quiet"] else 1)
    checkpoints.raise_if_stopped(nan_guard, "`learning_rate`")

    if task:
        scores = {role: finetune.score(task, model, eval_examples, settings["batch_size"])
                  for role, model in (("teacher", teacher), ("student", student))}
    else:
        teacher.compile()
        scores = {"teacher": teacher.evaluate(evaluation, return_dict=True, verbose=0),
                  "student": distiller.evaluate(evaluation, return_dict=True, verbose=0)}

    student_path = os.path.join(out, "student.keras")
    student.save(student_path)
    if not task:
        student.encoder.save(os.path.join(out, "encoder.keras"))
    tokenizer.save_vocabulary(os.path.join(out, "vocab.txt"))
    plot_curves(checkpoints.history, out, f"{mode}: {type(student).__name__} student")
    write_metrics(dict(
        settings=settings, mode=mode, train_examples=train_count,
        teacher_parameters=teacher.count_params(), student_parameters=student.count_params(),
        seconds=sum(checkpoints.seconds_per_epoch),
        seconds_per_epoch=checkpoints.seconds_per_epoch, history=checkpoints.history,
        eval=scores,
    ), out)
    checkpoints.remove()  # The run is finished: nothing to resume.
    for role, values in scores.items():
        print(f"{role}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()
                                      if isinstance(v, float)), flush=True)
    print(f"Wrote {student_path}, vocab.txt, metrics.json and curves.png to {out}", flush=True)
    return scores


def main(argv=None):
    return run_job(run, parse_args(argv),
                   errors=(ValueError, FileNotFoundError, FloatingPointError))


if __name__ == "__main__":
    sys.exit(main())
