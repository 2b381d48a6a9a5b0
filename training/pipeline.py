"""The main job: a teacher, fine-tuned, distilled, evaluated, exported, served and reported.

    python -m training.pipeline [--out runs/pipeline] [--full] [--teacher minilm|scratch|HF_DIR]
        [--data rotten_tomatoes|FILE.csv|FILE.jsonl] [--force] [--config FILE.yaml]

Stages, each in OUT/stages/<name>/ (see training.stages: a finished stage is
checked and skipped on the next run; a stage killed mid-way runs again, and
fine-tuning and distillation resume from their last epoch checkpoint):
  1. teacher: all-MiniLM-L6-v2 (default), a Hugging Face BERT directory, or
     `scratch`: a WordPiece vocabulary and a small BERT pretrained (MLM + NSP)
     on the news corpus (then general distillation comes before task distillation);
  2. finetune: the teacher fine-tuned on the data (Rotten Tomatoes' train split,
     or a CSV / JSON Lines file of text,label of which 10% is held out as the test split);
  3. distill: a DistilBERT student made of every other teacher layer, task-distilled;
  4. evaluate: both on the test split (accuracy, macro-F1, throughput, latency, size);
  5. export: SavedModels in TF Serving layout, TFLite float and dynamic-range;
  6. serve: both served on a free loopback port, asked over gRPC and REST;
  7. report: OUT/metrics.json, OUT/report.md, OUT/report.html, OUT/charts/.

--full runs the full recipe (3 epochs of fine-tuning and of distillation);
--force runs every stage again. The recipe's settings (listed below) can be
changed in a YAML --config file or by their options.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
import urllib.request
import warnings

from training.settings import (
    ArgumentParser,
    check_positive_ints,
    parse_settings,
    program_name,
    run_job,
)
from training.stages import (
    ProgressBar,
    Stage,
    file_digest,
    manifest_of,
    run_stages,
    stage_dir,
)

MEGABYTE = 2**20
MINILM_NAME = "all-MiniLM-L6-v2"
# Examples per call when a whole test split goes through an export.
EVALUATION_BATCH = 32
# Batches predicted before the timed pass over the test split.
WARMUP_BATCHES = 4
# What the serve stage asks the served models, and the largest difference of
# a probability it accepts between the server and the Keras model.
SERVE_SENTENCES = (
    "A gripping, beautifully acted film.",
    "The plot falls apart in the second half and none of the jokes land.",
    "Funny, warm and far smarter than it looks.",
    "Two hours I will never get back.",
)
SERVE_TOLERANCE = 1e-4
# Pretraining and general distillation of a `--teacher scratch` BERT: the
# settings of training/configs/bert_mini_news.yaml and distill_news.yaml
# that the recipe does not change.
SCRATCH_PRETRAINING = dict(mask_rate=0.25, max_predictions_per_seq=12, eval_fraction=0.05,
                           learning_rate=1e-3, warmup_steps=100)
GENERAL_DISTILLATION = dict(mask_rate=0.25, max_predictions_per_seq=12, eval_fraction=0.05,
                            temperature=2.0, alpha_ce=5.0, alpha_hard=2.0, alpha_cos=1.0,
                            learning_rate=5e-4, warmup_fraction=0.05)
# Logged epochs (and checkpoints) of a step-counted job.
STEP_JOB_EPOCHS = 4

# The recipe: {setting: (default, help)}. The task-distillation settings are
# bench/distill_quality.py's; the default run does one epoch of each training
# stage, which `make run` finishes in about 13 minutes on 2 cores (see the
# README), and --full the benchmark's three.
RECIPE = {
    "teacher": ("minilm", "minilm (all-MiniLM-L6-v2), scratch (pretrain a small BERT on the "
                          "news corpus), or a Hugging Face BERT model directory"),
    "data": ("rotten_tomatoes", "rotten_tomatoes, or a CSV/TSV or JSON Lines file of labelled "
                                "texts"),
    "out": ("runs/pipeline", "output directory"),
    "text_column": ("text", "a data file's text column (JSON Lines: key)"),
    "label_column": ("label", "a data file's label column (JSON Lines: key)"),
    "test_split": (0.1, "share of a data file held out as the test split"),
    "max_examples": (None, "train on the first N training examples only (null: all)"),
    "max_test_examples": (None, "evaluate and export on the first N test examples only "
                                "(null: all)"),
    "sequence_length": (128, "the most tokens per text"),
    "batch_size": (32, "examples per training and evaluation step"),
    "finetune_epochs": (1, "fine-tuning epochs"),
    "finetune_learning_rate": (5e-5, "fine-tuning peak learning rate"),
    "finetune_warmup_fraction": (0.06, "fine-tuning: share of the steps warming up"),
    "distill_epochs": (1, "task-distillation epochs"),
    "distill_learning_rate": (1e-4, "task-distillation peak learning rate"),
    "distill_warmup_fraction": (0.06, "task distillation: share of the steps warming up"),
    "student_layers": (None, "teacher layers the student starts as (null: every other one)"),
    "temperature": (2.0, "distillation softmax temperature"),
    "alpha_ce": (1.0, "weight of the soft-target loss"),
    "alpha_hard": (1.0, "weight of the student's loss on the labels"),
    "alpha_cos": (1.0, "weight of the hidden-state cosine loss"),
    "scratch_model": ("bert_mini", "scratch: the BERT to pretrain (a preset, or a mapping as "
                                   "training.pretrain's `model`)"),
    "scratch_vocab_size": (8000, "scratch: WordPiece vocabulary size"),
    "scratch_max_documents": (None, "scratch: pretrain on the first N news articles only "
                                    "(null: all 3,788)"),
    "scratch_sequence_length": (48, "scratch: tokens per pretraining example"),
    "scratch_batch_size": (48, "scratch: pretraining and general-distillation batch size"),
    "scratch_steps": (1000, "scratch: pretraining steps"),
    "general_distill_steps": (500, "scratch: general-distillation steps"),
    "latency_calls": (20, "timed calls per latency measurement (one sentence each)"),
    "seed": (0, "seed of the data split, shuffling and initialisation"),
}
# What --full changes.
FULL_RECIPE = {"finetune_epochs": 3, "distill_epochs": 3, "scratch_steps": 2000,
               "general_distill_steps": 1000}
# Settings that say what runs, not how: the rest is the recipe.
RUN_FLAGS = {"full": "the full recipe: 3 epochs of fine-tuning and of distillation",
             "force": "run every stage again, finished or not"}
RUN_SETTINGS = ("teacher", "data", "out", "quiet", *RUN_FLAGS)
TEACHER_CHOICES = ("minilm", "scratch")
DATA_EXTENSIONS = (".csv", ".tsv", ".jsonl")


class ServingMismatchError(ValueError):
    """The served models answered otherwise than the Keras models."""


# -- settings ---------------------------------------------------------------------------


def recipe_spec(full):
    if not full:
        return RECIPE
    return {key: (FULL_RECIPE.get(key, default), help_)
            for key, (default, help_) in RECIPE.items()}


def parse_args(argv=None):
    """The settings: the recipe (--full's with `--full`), a --config file, then options."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = ArgumentParser(add_help=False, allow_abbrev=False)
    flags.add_argument("--full", action="store_true")
    flags.add_argument("--force", action="store_true")
    known, _ = flags.parse_known_args(argv)
    return parse_settings(program_name("training.pipeline"), __doc__, recipe_spec(known.full),
                          check_settings, argv, flags=RUN_FLAGS)


def check_teacher(teacher):
    if teacher in TEACHER_CHOICES:
        return
    if isinstance(teacher, str) and os.path.isdir(teacher):
        missing = [name for name in ("config.json", "vocab.txt")
                   if not os.path.isfile(os.path.join(teacher, name))]
        if not missing:
            return
        raise ValueError(f"--teacher {teacher}: a Hugging Face BERT directory needs "
                         f"{' and '.join(missing)}.")
    raise ValueError(f"--teacher must be {', '.join(TEACHER_CHOICES)} or a Hugging Face BERT "
                     f"model directory; got {teacher!r}.")


def check_settings(s):
    from keras_bert_kit.distillation.distiller import check_temperature
    from keras_bert_kit.models.pretrainers import check_loss_weight
    from keras_bert_kit.validation import check_number

    check_teacher(s["teacher"])
    data = s["data"]
    if data != "rotten_tomatoes" and not (
            isinstance(data, str) and data.lower().endswith(DATA_EXTENSIONS)):
        raise ValueError(f"--data must be rotten_tomatoes or a {', '.join(DATA_EXTENSIONS)} "
                         f"file; got {data!r}.")
    if not isinstance(s["out"], str) or not s["out"]:
        raise ValueError(f"--out must be a directory path; got {s['out']!r}.")
    check_positive_ints(s, ("sequence_length", "batch_size", "finetune_epochs",
                            "distill_epochs", "scratch_vocab_size", "scratch_sequence_length",
                            "scratch_batch_size", "scratch_steps", "general_distill_steps",
                            "latency_calls"))
    check_positive_ints(s, [key for key in ("max_examples", "max_test_examples",
                                            "scratch_max_documents") if s[key] is not None])
    check_number("test_split", s["test_split"], 0, 1, include_minimum=False,
                 include_maximum=False)
    for key in ("finetune_learning_rate", "distill_learning_rate"):
        check_number(key, s[key], 0, include_minimum=False, finite=True)
    for key in ("finetune_warmup_fraction", "distill_warmup_fraction"):
        check_number(key, s[key], 0, 1)
    check_temperature(s["temperature"])
    for key in ("alpha_ce", "alpha_hard", "alpha_cos"):
        check_loss_weight(key, s[key])
    layers = s["student_layers"]
    if layers is not None and (not isinstance(layers, list) or not layers or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in layers)):
        raise ValueError(f"`student_layers` must be a list of teacher layer indices or null; "
                         f"got {layers!r}.")
    for key in ("text_column", "label_column"):
        if not isinstance(s[key], str) or not s[key]:
            raise ValueError(f"`{key}` must be a column name; got {s[key]!r}.")


def job_arguments(values):
    """`values` as the options of a training.settings job (`--key VALUE`, VALUE as JSON)."""
    argv = []
    for key, value in values.items():
        argv += [f"--{key.replace('_', '-')}", json.dumps(value, ensure_ascii=False)]
    return argv


def check_writable(out):
    """Creates `out` if needed and checks that files can be written in it."""
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ValueError(f"--out {out} is not a writable directory: "
                         f"{e.strerror or e}.") from None


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores}


def versions():
    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__}


def confusion_matrix(labels, predicted, num_classes):
    """counts[true][predicted]."""
    import numpy as np

    counts = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(counts, (np.asarray(labels), np.asarray(predicted)), 1)
    return counts.tolist()


def save_for_serving(source, target):
    """The model in `source` saved at `target` without its optimizer state.

    The jobs save their models compiled, AdamW's two moments included: three
    times the weights' size. What is served and shipped is the model alone.
    """
    import keras

    model = keras.saving.load_model(source, compile=False)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = os.path.join(os.path.dirname(target), f".partial.{os.path.basename(target)}")
    model.save(partial)  # Keras wants the .keras extension: the name marks it instead
    os.replace(partial, target)


def job_metrics(out):
    """The metrics.json a training job wrote in `out`."""
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def megabytes(path):
    return os.path.getsize(path) / MEGABYTE


# -- the pipeline -----------------------------------------------------------------------


class Pipeline:
    """The run's settings, its data and its stages."""

    def __init__(self, settings):
        self.settings = settings
        self.out = os.path.abspath(settings["out"])
        teacher = settings["teacher"]
        self.teacher = teacher if teacher in TEACHER_CHOICES else os.path.abspath(teacher)
        data = settings["data"]
        self.data = data if data == "rotten_tomatoes" else os.path.abspath(data)
        self.train = self.test = None

    # -- before any work ------------------------------------------------------------

    def prepare(self):
        """Checks --out, the asset packages and the data; nothing heavy runs before this."""
        from keras_bert_kit import assets
        from training import finetune

        check_writable(self.out)
        if self.teacher == "minilm":
            assets.minilm_model_dir()
        if self.teacher == "scratch":
            assets.news_articles_path()
        if self.data == "rotten_tomatoes":
            assets.rotten_tomatoes_path()
        args = finetune.parse_args(self.finetune_arguments("unused", self.out))
        self.train, self.test = finetune.split_data("classify", args)

    @property
    def scratch(self):
        return self.teacher == "scratch"

    def data_settings(self):
        """What the split and the training examples depend on (a file: its contents)."""
        s = self.settings
        return {
            "data": self.data,
            "sha256": None if self.data == "rotten_tomatoes" else file_digest(self.data),
            **{key: s[key] for key in ("text_column", "label_column", "test_split",
                                       "max_examples", "seed")},
        }

    def recipe(self):
        return {key: value for key, value in self.settings.items() if key not in RUN_SETTINGS}

    def evaluation_data(self):
        """The test split, or its first `max_test_examples`."""
        limit = self.settings["max_test_examples"]
        return self.test if not limit else self.test.subset(range(min(limit, len(self.test))))

    def model_path(self, role):
        return os.path.join(self.out, "models", f"{role}.keras")

    def serving_dir(self):
        return os.path.join(self.out, "exports", "serving")

    def stages(self):
        s = self.settings
        data, recipe = self.data_settings(), self.recipe()
        scratch_keys = [key for key in RECIPE if key.startswith("scratch_")]
        # A teacher directory's files count as settings: another checkpoint there is new work.
        teacher_files = None if self.teacher in TEACHER_CHOICES else manifest_of(self.teacher,
                                                                                 ["."])
        teacher_settings = {"teacher": self.teacher, "files": teacher_files, "seed": s["seed"],
                            **({key: s[key] for key in scratch_keys} if self.scratch else {})}
        training_keys = ("sequence_length", "batch_size")
        finetune_keys = [key for key in RECIPE if key.startswith("finetune_")]
        distill_keys = ["student_layers", "temperature", "alpha_ce", "alpha_hard", "alpha_cos",
                        *(key for key in RECIPE if key.startswith("distill_"))]
        measure = {key: s[key] for key in ("max_test_examples", "latency_calls", "batch_size")}
        layers = "every other teacher layer" if s["student_layers"] is None else \
            f"teacher layers {s['student_layers']}"
        if self.scratch:
            layers = f"{layers}, distilled on the corpus"
        stages = [
            Stage("teacher", self.teacher_title(), self.build_teacher, teacher_settings),
            Stage("finetune", f"fine-tuning the teacher on {self.data_name()} "
                  f"({s['finetune_epochs']} epoch(s))", self.finetune,
                  {**data, **{key: s[key] for key in (*training_keys, *finetune_keys)}},
                  upstream=("teacher",), outputs=("models/teacher.keras",)),
        ]
        distill_upstream = ("teacher", "finetune")
        if self.scratch:
            stages.append(Stage(
                "general_distill", "general (MLM) distillation of a student on the news corpus",
                self.general_distill,
                {**teacher_settings, "general_distill_steps": s["general_distill_steps"],
                 "student_layers": s["student_layers"]},
                upstream=("teacher",)))
            distill_upstream += ("general_distill",)
        stages += [
            Stage("distill", f"task distillation into a student of {layers} "
                  f"({s['distill_epochs']} epoch(s))", self.distill,
                  {**data, **{key: s[key] for key in (*training_keys, *distill_keys)}},
                  upstream=distill_upstream, outputs=("models/student.keras",)),
            Stage("evaluate", "teacher and student on the test split", self.evaluate,
                  {**data, **measure}, upstream=("finetune", "distill")),
            Stage("export", "SavedModels for TF Serving, TFLite float and dynamic-range",
                  self.export, {**data, **measure}, upstream=("finetune", "distill"),
                  outputs=("exports",)),
            Stage("serve", "both models served on a free port, asked over gRPC and REST",
                  self.serve, {"sentences": SERVE_SENTENCES, "tolerance": SERVE_TOLERANCE},
                  upstream=("finetune", "distill", "export")),
        ]
        earlier = tuple(stage.name for stage in stages)
        stages.append(Stage("report", "metrics.json, report.md, report.html and charts",
                            self.report, {"recipe": recipe, "run": self.run_description()},
                            upstream=earlier,
                            outputs=("metrics.json", "report.md", "report.html", "charts")))
        return stages

    def run_description(self):
        return {"teacher": self.settings["teacher"], "data": self.settings["data"],
                "full": self.settings["full"]}

    def data_name(self):
        return self.data if self.data == "rotten_tomatoes" else os.path.basename(self.data)

    def teacher_title(self):
        if self.teacher == "minilm":
            return f"{MINILM_NAME} from its asset package"
        if self.scratch:
            return (f"a WordPiece vocabulary and a {self.settings['scratch_model']} pretrained "
                    f"(MLM + NSP) on the news corpus ({self.settings['scratch_steps']} steps)")
        return f"the Hugging Face model in {self.teacher}"

    # -- 1. teacher -----------------------------------------------------------------

    def build_teacher(self, context):
        if self.scratch:
            return self.pretrain_teacher(context)
        import keras_bert_kit as kbk
        from keras_bert_kit.assets import minilm_model_dir

        path = minilm_model_dir() if self.teacher == "minilm" else self.teacher
        bar = ProgressBar(2)
        bar.step(f"importing {path}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a checkpoint's unused heads are expected
            encoder = kbk.from_huggingface(path, target="encoder")
        tokenizer = kbk.preprocessor_from_huggingface(path).tokenizer
        bar.step("saving encoder.keras and vocab.txt")
        encoder.save(os.path.join(context.work_dir, "encoder.keras"))
        tokenizer.save_vocabulary(os.path.join(context.work_dir, "vocab.txt"))
        bar.close()
        return self.teacher_result(encoder, tokenizer.lowercase, None)

    def teacher_result(self, encoder, lowercase, pretraining):
        source = MINILM_NAME if self.teacher == "minilm" else (
            f"scratch ({self.settings['scratch_model']})" if self.scratch
            else os.path.basename(self.teacher))
        return {"source": source, "parameters": encoder.count_params(),
                "layers": encoder.config.num_layers, "hidden_size": encoder.config.hidden_size,
                "lowercase": lowercase, "pretraining": pretraining}

    def pretrain_teacher(self, context):
        import keras

        from keras_bert_kit.datasets import load_news_articles
        from training import pretrain

        s = self.settings
        corpus = "news"
        if s["scratch_max_documents"]:
            corpus = os.path.join(context.work_dir, "corpus.txt")
            documents = load_news_articles()[:s["scratch_max_documents"]]
            with open(corpus, "w", encoding="utf-8") as f:
                f.write("\n\n".join(documents) + "\n")
        steps = s["scratch_steps"]
        settings = pretrain.parse_args(job_arguments({
            **SCRATCH_PRETRAINING, "model": s["scratch_model"], "data": corpus,
            "vocab": f"train:{s['scratch_vocab_size']}", "lowercase": True,
            "max_seq_length": s["scratch_sequence_length"], "steps": steps,
            "batch_size": s["scratch_batch_size"],
            "checkpoint_every": max(1, steps // STEP_JOB_EPOCHS), "seed": s["seed"],
            "out": context.work_dir}) + (["--quiet"] if s["quiet"] else []))
        pretrain.run(settings)
        metrics = job_metrics(context.work_dir)
        encoder = keras.saving.load_model(os.path.join(context.work_dir, "encoder.keras"))
        return {**self.teacher_result(encoder, True, {
            "steps": steps, "vocab_size": s["scratch_vocab_size"], "seconds": metrics["seconds"],
            "train_examples": metrics["train_examples"], "history": metrics["history"],
            "eval": metrics["eval"]}), "corpus": corpus}

    # -- 2. fine-tuning -------------------------------------------------------------

    def finetune_arguments(self, init, out):
        s = self.settings
        argv = ["--task", "classify", "--data", self.data, "--init", init, "--out", out,
                "--validation-split", str(s["test_split"]), "--text-column", s["text_column"],
                "--label-column", s["label_column"],
                "--sequence-length", str(s["sequence_length"]),
                "--epochs", str(s["finetune_epochs"]), "--batch-size", str(s["batch_size"]),
                "--learning-rate", str(s["finetune_learning_rate"]),
                "--warmup-fraction", str(s["finetune_warmup_fraction"]),
                "--seed", str(s["seed"])]
        if s["max_examples"]:
            argv += ["--max-examples", str(s["max_examples"])]
        if s["quiet"]:
            argv.append("--quiet")
        return argv

    def finetune(self, context):
        from training import finetune

        teacher = context.records["teacher"]["result"]
        init = os.path.join(stage_dir(self.out, "teacher"), "encoder.keras")
        argv = self.finetune_arguments(init, context.work_dir)
        if not teacher["lowercase"]:
            argv.append("--cased")
        finetune.run(finetune.parse_args(argv))
        save_for_serving(os.path.join(context.work_dir, "model.keras"),
                         self.model_path("teacher"))
        metrics = job_metrics(context.work_dir)
        return {key: metrics[key] for key in ("train_examples", "eval_examples",
                                              "seconds_per_epoch", "history", "eval")} | {
            "epochs": self.settings["finetune_epochs"]}

    # -- 3. distillation ------------------------------------------------------------

    def distill_settings(self, values):
        from training import distill

        return distill.parse_args(job_arguments(values) +
                                  (["--quiet"] if self.settings["quiet"] else []))

    def general_distill(self, context):
        from training import distill

        s = self.settings
        teacher_dir = stage_dir(self.out, "teacher")
        steps = s["general_distill_steps"]
        settings = self.distill_settings({
            **GENERAL_DISTILLATION, "teacher": os.path.join(teacher_dir, "pretrainer.keras"),
            "data": context.records["teacher"]["result"]["corpus"], "student": "from_teacher",
            "student_layers": s["student_layers"], "max_seq_length": s["scratch_sequence_length"], "steps": steps,
            "log_every": max(1, steps // STEP_JOB_EPOCHS), "batch_size": s["scratch_batch_size"],
            "seed": s["seed"], "out": context.work_dir})
        distill.run(settings)
        metrics = job_metrics(context.work_dir)
        return {"steps": steps, "seconds": metrics["seconds"], "history": metrics["history"],
                "eval": metrics["eval"]}

    def distill(self, context):
        from keras_bert_kit.distillation import default_teacher_layers
        from training import distill

        s = self.settings
        depth = context.records["teacher"]["result"]["layers"]
        layers = s["student_layers"] or default_teacher_layers(depth, max(1, depth // 2))
        # A scratch teacher's student was made of the same layers and distilled on the
        # corpus first (general_distill): task distillation starts from that student.
        student = ({"student": os.path.join(stage_dir(self.out, "general_distill"),
                                            "encoder.keras"), "student_layers": None}
                   if self.scratch else {"student": "from_teacher", "student_layers": layers})
        settings = self.distill_settings({
            "teacher": self.model_path("teacher"), **student, "data": self.data,
            "validation_split": s["test_split"],
            "columns": {"text_column": s["text_column"], "label_column": s["label_column"]},
            "max_examples": s["max_examples"], "temperature": s["temperature"],
            "alpha_ce": s["alpha_ce"], "alpha_hard": s["alpha_hard"], "alpha_cos": s["alpha_cos"],
            "epochs": s["distill_epochs"], "batch_size": s["batch_size"],
            "learning_rate": s["distill_learning_rate"],
            "warmup_fraction": s["distill_warmup_fraction"], "seed": s["seed"],
            "out": context.work_dir})
        distill.run(settings)
        save_for_serving(os.path.join(context.work_dir, "student.keras"),
                        self.model_path("student"))
        metrics = job_metrics(context.work_dir)
        general = context.records.get("general_distill")
        return {"epochs": s["distill_epochs"], "student_layers": layers,
                "train_examples": metrics["train_examples"], "seconds": metrics["seconds"],
                "history": metrics["history"], "eval": metrics["eval"],
                "general": general["result"] if general else None}

    # -- 4. evaluation --------------------------------------------------------------

    def evaluate(self, context):
        import keras

        test = self.evaluation_data()
        bar = ProgressBar(2)
        results = {}
        for role in ("teacher", "student"):
            bar.step(f"{role}: {len(test):,} test examples, throughput and latency")
            model = keras.saving.load_model(self.model_path(role))
            results[role] = self.measure_keras(model, self.model_path(role), test)
        bar.close()
        return results

    def measure_keras(self, model, path, test):
        import numpy as np
        import tensorflow as tf

        from keras_bert_kit import metrics
        from training.export import median_latency_ms

        texts, batch_size = list(test.texts), self.settings["batch_size"]
        # A few batches first: the timed pass then finds the predict function traced
        # (for any batch shape, after the first few).
        model.predict(texts[:WARMUP_BATCHES * batch_size], batch_size=batch_size, verbose=0)
        started = time.perf_counter()
        logits = model.predict(texts, batch_size=batch_size, verbose=0)
        seconds = time.perf_counter() - started
        predicted = np.argmax(logits, axis=-1)
        classify = model.text_function()
        samples = [{"text": tf.constant([text])} for text in texts[:8]]
        classes = len(test.label_names)
        return {
            "accuracy": metrics.accuracy(test.labels, predicted),
            "macro_f1": metrics.macro_f1(test.labels, predicted, num_classes=classes),
            "sequences_per_second": len(texts) / seconds,
            "latency_ms": median_latency_ms(classify, samples, self.settings["latency_calls"]),
            "parameters": model.count_params(),
            "size_mb": megabytes(path),
            "confusion_matrix": confusion_matrix(test.labels, predicted, classes),
        }

    # -- 5. export ------------------------------------------------------------------

    def export(self, context):
        import keras

        test = self.evaluation_data()
        texts = list(SERVE_SENTENCES) + list(test.texts[:4])
        bar = ProgressBar(7)
        variants = []
        for role in ("teacher", "student"):
            model = keras.saving.load_model(self.model_path(role))
            bar.step(f"{role}: SavedModel")
            variants.append(self.export_saved_model(model, role, texts, test))
            for quantization in ("none", "dynamic_range"):
                bar.step(f"{role}: TFLite {quantization}")
                variants.append(self.export_tflite(model, role, quantization, texts, test))
        bar.step("models.config")
        self.write_model_config()
        bar.close()
        return {"variants": variants, "model_config": self.relative(self.model_config_path())}

    def relative(self, path):
        return os.path.relpath(path, self.out).replace(os.sep, "/")

    def export_saved_model(self, model, role, texts, test):
        import tensorflow as tf

        from keras_bert_kit import metrics
        from keras_bert_kit.export import export_saved_model, verify_export
        from training.export import directory_megabytes, median_latency_ms

        export_dir = export_saved_model(model, os.path.join(self.serving_dir(), role), 1,
                                        overwrite=True)
        parity = verify_export(model, export_dir, texts)["serving_default"]
        classify = tf.saved_model.load(export_dir).signatures["serving_default"]
        predicted = []
        for start in range(0, len(test), EVALUATION_BATCH):
            batch = tf.constant(list(test.texts[start:start + EVALUATION_BATCH]))
            predicted.extend(classify(text=batch)["label_id"].numpy().tolist())
        samples = [{"text": tf.constant([text])} for text in texts]
        return {
            "model": role, "format": "saved_model", "variant": "float32", "text_input": True,
            "path": self.relative(export_dir), "size_mb": directory_megabytes(export_dir),
            "latency_ms": median_latency_ms(classify, samples, self.settings["latency_calls"]),
            "accuracy": metrics.accuracy(test.labels, predicted),
            "max_abs_diff": parity["max_abs_diff"], "agreement": parity["agreement"],
        }

    def export_tflite(self, model, role, quantization, texts, test):
        """One .tflite: text in where it converts, else ids in; checked, timed and scored."""
        from keras_bert_kit.export import TFLiteExportError, TFLiteModel, export_tflite
        from training.export import (
            compare_tflite,
            median_latency_ms,
            tflite_accuracy,
            tflite_inputs,
        )

        directory = os.path.join(self.out, "exports", "tflite")
        os.makedirs(directory, exist_ok=True)
        try:
            path = export_tflite(model, os.path.join(directory, f"{role}_{quantization}_text"
                                                                ".tflite"),
                                 quantization, text_input=True)
            text_input = True
        except TFLiteExportError:
            path = export_tflite(model, os.path.join(directory, f"{role}_{quantization}.tflite"),
                                 quantization)
            text_input = False
        report, failure = compare_tflite(model, path, texts, None, quantization, None)
        if failure is not None:  # the float variant must match the Keras model
            raise failure
        parity = report["serving_default" if text_input else "predict_ids"]
        one_thread = TFLiteModel(path, num_threads=1)
        samples = [tflite_inputs(one_thread, [text]) for text in texts]
        return {
            "model": role, "format": "tflite", "variant": quantization, "text_input": text_input,
            "path": self.relative(path), "size_mb": megabytes(path),
            "latency_ms": median_latency_ms(one_thread, samples, self.settings["latency_calls"]),
            "accuracy": tflite_accuracy(path, test),
            "max_abs_diff": parity["max_abs_diff"], "agreement": parity["agreement"],
        }

    def model_config_path(self):
        return os.path.join(self.serving_dir(), "models.config")

    def write_model_config(self):
        """A ModelServerConfig serving both models, with absolute base paths (TF Serving's rule)."""
        def quoted(text):  # a text-proto string: JSON's escapes are among its own
            return json.dumps(text, ensure_ascii=False)

        entries = "".join(
            f"  config {{\n    name: {quoted(role)}\n"
            f"    base_path: {quoted(os.path.join(self.serving_dir(), role))}\n"
            f"    model_platform: \"tensorflow\"\n  }}\n"
            for role in ("teacher", "student"))
        path = self.model_config_path()
        with open(path + ".partial", "w", encoding="utf-8") as f:
            f.write(f"model_config_list {{\n{entries}}}\n")
        os.replace(path + ".partial", path)

    # -- 6. serving -----------------------------------------------------------------

    def serve(self, context):
        import keras
        import numpy as np

        from serving.client import ServingClient
        from serving.server import ModelServer, ServerOptions

        sentences = list(SERVE_SENTENCES)
        roles = ("teacher", "student")
        bar = ProgressBar(3 + len(roles))
        keras_answers = {}
        for role in roles:
            bar.step(f"{role}: Keras answers")
            answers = keras.saving.load_model(self.model_path(role)).text_function()(sentences)
            keras_answers[role] = {"labels": [label.decode() for label in
                                              answers["label"].numpy().tolist()],
                                   "probabilities": answers["probabilities"].numpy()}
        bar.step("starting the server")
        started = time.perf_counter()
        server = ModelServer(ServerOptions(
            port=0, rest_api_port=0, model_config_file=self.model_config_path(),
            file_system_poll_wait_seconds=0, max_num_load_retries=0))
        answers = {"grpc": {}, "rest": {}}
        try:
            server.start()
            for role in roles:
                bar.step(f"{role}: gRPC and REST")
                with ServingClient(f"127.0.0.1:{server.grpc_port}", role, deadline=60) as client:
                    outputs = client.predict(sentences)
                answers["grpc"][role] = {"labels": [str(label) for label in outputs["label"]],
                                         "probabilities": outputs["probabilities"]}
                answers["rest"][role] = self.ask_rest(server.rest_port, role, sentences)
        finally:
            server.stop(grace=5)
        bar.close()
        seconds = time.perf_counter() - started

        keras_labels = {role: keras_answers[role]["labels"] for role in roles}
        result = {"models": list(roles), "sentences": sentences, "keras_labels": keras_labels,
                  "max_abs_diff": {}, "seconds": seconds}
        problems = []
        for protocol, by_role in answers.items():
            result[f"{protocol}_labels"] = {role: by_role[role]["labels"] for role in roles}
            result["max_abs_diff"][protocol] = max(
                float(np.max(np.abs(np.asarray(by_role[role]["probabilities"]) -
                                    keras_answers[role]["probabilities"])))
                for role in roles)
            for role in roles:
                if by_role[role]["labels"] != keras_labels[role]:
                    problems.append(f"{protocol} labels of {role} {by_role[role]['labels']} "
                                    f"differ from Keras' {keras_labels[role]}")
            if result["max_abs_diff"][protocol] > SERVE_TOLERANCE:
                problems.append(f"{protocol} probabilities differ from Keras' by "
                                f"{result['max_abs_diff'][protocol]:.2g} (at most "
                                f"{SERVE_TOLERANCE:g})")
        if problems:
            raise ServingMismatchError("The served models answer otherwise than the Keras "
                                       "models: " + "; ".join(problems) + ".")
        result["equal"] = True
        return result

    @staticmethod
    def ask_rest(port, role, sentences):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/{role}:predict",
            data=json.dumps({"instances": sentences}).encode("utf-8"),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.load(response)["predictions"]
        return {"labels": [row["label"] for row in predictions],
                "probabilities": [row["probabilities"] for row in predictions]}

    # -- 7. report ------------------------------------------------------------------

    def report(self, context):
        from training.pipeline_report import write_report
        from training.reporting import write_metrics

        metrics = self.metrics(context.records)
        write_metrics(metrics, self.out)
        paths = write_report(self.out, metrics)
        return {"files": sorted(self.relative(path) for path in paths)}

    def metrics(self, records):
        results = {name: record["result"] for name, record in records.items()}
        stage_seconds = {name: record["seconds"] for name, record in records.items()}
        finetune, distill = results["finetune"], results["distill"]
        test = self.evaluation_data()
        return {
            "run": {**self.run_description(), "recipe": self.recipe(), "machine": machine(),
                    "versions": versions(), "stage_seconds": stage_seconds,
                    "total_seconds": sum(stage_seconds.values())},
            "data": {"name": self.data_name(), "label_names": list(test.label_names),
                     "train_examples": finetune["train_examples"],
                     "test_examples": len(test),
                     "test_source": "test split" if self.data == "rotten_tomatoes" else
                     f"{self.settings['test_split']:.0%} of {self.data_name()} held out"},
            "teacher": {key: value for key, value in results["teacher"].items()
                        if key not in ("corpus", "lowercase")},
            "finetune": {key: finetune[key] for key in ("epochs", "train_examples",
                                                        "seconds_per_epoch", "history")},
            "distill": {key: distill[key] for key in ("epochs", "student_layers", "seconds",
                                                      "history", "general")},
            "evaluate": results["evaluate"],
            "export": {"variants": results["export"]["variants"]},
            "serve": results["serve"],
            "commands": self.commands(),
        }

    def commands(self):
        from training.export import SERVING_IMAGE

        serving_dir = shlex.quote(self.serving_dir())
        config = shlex.quote(self.model_config_path())
        sentence = SERVE_SENTENCES[0]
        request = json.dumps({"instances": [sentence]})
        return {
            # The config names absolute paths: the container sees the same ones.
            "docker": f"docker run -p 8500:8500 -p 8501:8501 -v {serving_dir}:{serving_dir} "
                      f"{SERVING_IMAGE} --model_config_file={config}",
            "serve_locally": f"kbk-serve --port 8500 --rest_api_port 8501 "
                             f"--model_config_file {config}",
            "client": f"python -m serving.client --server localhost:8500 --model_name student "
                      f"{shlex.quote(sentence)}",
            "curl": f"curl -d {shlex.quote(request)} "
                    "localhost:8501/v1/models/student:predict",
        }


def run(settings):
    import tensorflow as tf

    pipeline = Pipeline(settings)
    pipeline.prepare()
    # TensorFlow's Python warnings in the jobs' paths (retracing when scoring
    # several models, the server's SavedModel loader) are about TF, not the run.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return run_pipeline(pipeline, settings)
    finally:
        logger.setLevel(level)


def run_pipeline(pipeline, settings):
    started = time.perf_counter()
    print(f"Pipeline: teacher {settings['teacher']}, data {pipeline.data_name()} "
          f"({len(pipeline.train):,} training examples, {len(pipeline.test):,} test), "
          f"{'full' if settings['full'] else 'default'} recipe, output in {pipeline.out}",
          flush=True)
    records = run_stages(pipeline.out, pipeline.stages(), force=settings["force"])
    print(f"\nDone in {time.perf_counter() - started:.0f} s. Report: "
          f"{os.path.join(pipeline.out, 'report.html')} (and report.md, metrics.json)",
          flush=True)
    return records


def main(argv=None):
    # OSError: an unwritable --out, a missing file. FloatingPointError: a
    # training job stopped on a non-finite loss (its checkpoint is kept).
    return run_job(run, parse_args(argv), errors=(ValueError, OSError, FloatingPointError))


if __name__ == "__main__":
    sys.exit(main())
