"""Export a .keras model as a SavedModel that TensorFlow Serving loads, check it and time it.

    python -m training.export --model runs/rt/model.keras --out exports/sentiment

`--model` is a `.keras` file of a keras_bert_kit model: a fine-tuned task
(SequenceClassifier, TokenClassifier, SpanExtractor; its tokenizer goes in),
an encoder (exported for embeddings) or a pretrainer (fill-mask). Encoders and
pretrainers carry no tokenizer: the vocabulary is `--vocab`, else the
`vocab.txt` beside the model. `--out` is the model's base directory, as TF
Serving's `--model_base_path`; the export becomes its version `--version`
(by default the next integer: 1, 2, ...), written atomically.

The export is then reloaded and compared with the Keras model on
`--verify-texts` (or a few built-in sentences): a difference beyond the
tolerance is an error (exit status 2; the export stays). A table follows:
each signature's inputs and outputs, its agreement with Keras (largest
absolute difference of the float outputs / share of equal labels, ids and
strings) and its median latency on one sentence; then the size of the
version directory and the `docker run tensorflow/serving` command that
serves the base directory on ports 8500 (gRPC) and 8501 (REST).

With `--tflite`, LiteRT (.tflite) models for phones and small devices are
written instead of the SavedModel:

    python -m training.export --model runs/rt/model.keras --out exports/tflite \\
        --tflite none,float16,dynamic_range,int8 --eval-data rotten_tomatoes

one per quantization, `--out/<model stem>_<quantization>[_text].tflite`, each
with its settings (`.json`) and vocabulary (`.vocab.txt`); existing files are
replaced only with `--overwrite`. Without `--text-input` a model takes int32
ids (`predict_ids`: the app tokenizes, with the vocabulary and settings beside
it); with it, text (`serving_default`, classifiers and encoders only).
Each variant is compared with Keras on the verification texts (largest
absolute difference of its float outputs, a classifier's logits and
probabilities; share of equal labels) and timed on one sentence at a time
(median ms, one thread, host tokenization excluded for ids-in models);
classifiers are scored on `--eval-data` too. The float32 variant (`none`)
must match within `--tolerance` (default 1e-4) with every label equal, else
the command fails (exit status 2, after the table; the files stay); the
quantized variants are reported, never failed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
import zipfile

from training.settings import ArgumentParser, program_name, run_job

SERVING_IMAGE = "tensorflow/serving:2.20.0"
MEGABYTE = 2**20
# int8 calibration texts taken from --representative-data (or its default).
REPRESENTATIVE_TEXTS = 200
# Examples per LiteRT call when scoring --eval-data.
EVALUATION_BATCH = 32

# Compared with the Keras model when no --verify-texts is given.
BUILT_IN_TEXTS = (
    "A gripping, beautifully acted film.",
    "The plot falls apart in the second half and none of the jokes land.",
    "It rained in Paris all week, so we stayed in and read.",
)
BUILT_IN_PAIRS = (
    ("A man is playing a guitar on stage.", "Someone is performing music."),
    ("The cat sleeps on the sofa.", "A dog is running in the park."),
    ("The meeting was moved to Friday.", "The meeting is no longer on Thursday."),
)
BUILT_IN_QUESTIONS = (
    ("When was the tower completed?",
     "The Eiffel Tower, completed in 1889, stands in Paris. It is 330 metres tall."),
    ("How tall is the tower?",
     "The Eiffel Tower, completed in 1889, stands in Paris. It is 330 metres tall."),
    ("Who wrote the novel?", "The novel was written by Mary Shelley and published in 1818."),
)


def parse_args(argv=None):
    parser = ArgumentParser(
        prog=program_name("training.export"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the example as laid out
    )
    parser.add_argument("--model", required=True,
                        help="the .keras file: a fine-tuned task, an encoder or a pretrainer")
    parser.add_argument("--out", required=True,
                        help="the model's base directory (TF Serving's --model_base_path); "
                        "its last part names the model in the docker command")
    parser.add_argument("--version", type=int, default=None,
                        help="version number (default: one more than the highest in --out)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --version (with --tflite: existing "
                        ".tflite files)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="compute precision; bfloat16 (float32 outputs) is for CPUs with "
                        "AVX512-BF16 or AMX (default: %(default)s)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="write no assets.extra/tf_serving_warmup_requests")

    signatures = parser.add_argument_group("signatures")
    signatures.add_argument("--pairs", action="store_true",
                            help="sequence classifier: serving_default reads text pairs "
                            "(text and text_pair)")
    signatures.add_argument("--signatures", type=signature_names, default=None,
                            help="comma-separated signatures to write (default: all of the "
                            "model's). predict_ids alone needs no TF Text op: every TF "
                            "Serving release loads it")
    signatures.add_argument("--top-k", type=int, default=5,
                            help="pretrainer: tokens fill_mask returns per [MASK] "
                            "(default: %(default)s)")
    signatures.add_argument("--max-answer-length", type=int, default=30,
                            help="span extractor: the longest answer, in tokens "
                            "(default: %(default)s)")

    tokenizer = parser.add_argument_group(
        "tokenizer of an encoder or pretrainer (a task model carries its own)")
    tokenizer.add_argument("--vocab",
                           help="vocab.txt (default: the vocab.txt beside --model)")
    tokenizer.add_argument("--cased", action="store_true",
                           help="keep case (a cased vocabulary); by default text is lowercased")
    tokenizer.add_argument("--sequence-length", type=int, default=None,
                           help="the most tokens per text, [CLS] and [SEP] included "
                           "(default: the encoder's position table); with --tflite, for "
                           "every kind of model (see --tflite)")

    checks = parser.add_argument_group("checks")
    checks.add_argument("--verify-texts",
                        help="UTF-8 file of texts to compare the export with Keras on, one per "
                        "line; two tab-separated fields for text pairs (--pairs) and span "
                        "extractors (question, context) (default: built-in sentences)")
    checks.add_argument("--tolerance", type=float, default=None,
                        help="largest allowed difference of a float output "
                        "(default: 1e-5 for float32, 5e-2 for bfloat16; with --tflite, for "
                        "the none variant: 1e-4)")
    checks.add_argument("--latency-calls", type=int, default=20,
                        help="timed calls of each signature on one sentence, after one "
                        "warm-up call (default: %(default)s)")

    tflite = parser.add_argument_group(
        "TFLite (with --tflite only TFLite files are written, no SavedModel)")
    tflite.add_argument("--tflite", type=quantization_list, metavar="QUANTIZATIONS",
                        help="comma-separated quantizations, of none (float32), float16, "
                        "dynamic_range (int8 weights), int8 (int8 weights and activations): "
                        "writes --out/<model stem>_<quantization>[_text].tflite, with its "
                        ".json settings and .vocab.txt, for each; --sequence-length then "
                        "fixes the ids-in model's input length (the app pads to it) or cuts a "
                        "text-in model's texts, for every kind of model")
    tflite.add_argument("--text-input", action="store_true",
                        help="text-in models, the tokenizer inside (classifiers and "
                        "encoders); by default ids-in models (int32 ids, builtin ops only)")
    tflite.add_argument("--eval-data", metavar="rotten_tomatoes|FILE",
                        help="classifiers: accuracy of each variant and of the Keras model on "
                        "this data: rotten_tomatoes (its test split) or a CSV, TSV or JSON "
                        "Lines file as python -m training.finetune reads it")
    tflite.add_argument("--representative-data", metavar="rotten_tomatoes|FILE",
                        help="int8: calibration texts, the first 200 of rotten_tomatoes (its "
                        "train split) or of a file read as --verify-texts (default: "
                        "rotten_tomatoes when it is --eval-data, else the verification texts)")
    tflite.add_argument("--text-column", default="text",
                        help="--eval-data: the text's CSV column / JSON key (default: "
                        "%(default)s)")
    tflite.add_argument("--text-pair-column",
                        help="--eval-data of a --pairs classifier: the second text's column")
    tflite.add_argument("--label-column", default="label",
                        help="--eval-data: the label's column, names or ids of the model's "
                        "labels (default: %(default)s)")
    args = parser.parse_args(argv)

    if args.version is not None and args.version < 0:
        parser.error("--version must be at least 0.")
    for name in ("top_k", "max_answer_length", "latency_calls", "sequence_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1.")
    if args.tolerance is not None and not args.tolerance >= 0:
        parser.error("--tolerance must be a number at least 0.")
    if args.tflite is None:
        given = [option for option, value in (("--text-input", args.text_input),
                                              ("--eval-data", args.eval_data),
                                              ("--representative-data",
                                               args.representative_data)) if value]
        if given:
            parser.error(f"{', '.join(given)}: for TFLite exports; add --tflite.")
    else:
        given = [option for option, value in (("--version", args.version is not None),
                                              ("--dtype bfloat16", args.dtype != "float32"),
                                              ("--no-warmup", not args.warmup),
                                              ("--signatures", args.signatures)) if value]
        if given:
            parser.error(f"{', '.join(given)}: for SavedModel exports, not --tflite.")
    return args


def signature_names(text):
    """`--signatures`'s value: the names it lists, each once (the model checks them)."""
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not names:
        raise argparse.ArgumentTypeError("give a comma-separated list of signature names.")
    return names


def quantization_list(text):
    """`--tflite`'s value: the quantizations it names, each once, in order."""
    from keras_bert_kit.export.tflite import QUANTIZATIONS

    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in QUANTIZATIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown quantization {unknown[0]!r}; give a comma-separated list of "
            f"{', '.join(QUANTIZATIONS)}.")
    return tuple(dict.fromkeys(names))


# -- model and preprocessor -----------------------------------------------------------


def load_model(path):
    """The keras_bert_kit model in the .keras file `path`."""
    import keras

    from keras_bert_kit.export import model_kind

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--model {path}: no such file.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"--model {path} is not a .keras file (a zip archive that "
                         "model.save() writes).")
    try:
        model = keras.saving.load_model(path)
    except Exception as e:  # whatever the archive holds, the user hears which file failed
        raise ValueError(f"--model {path} does not load as a Keras model: {e}") from e
    try:
        model_kind(model)
    except ValueError as e:
        raise ValueError(f"--model {path}: {e}") from e
    return model


def make_preprocessor(model, args):
    """A BertPreprocessor for an encoder or a pretrainer; None for a task (it has its own).

    Also checks the options that concern one kind of model only.
    """
    import keras_bert_kit as kbk
    from keras_bert_kit.export import model_kind
    from keras_bert_kit.export.signatures import encoder_of

    kind = model_kind(model)
    if args.pairs and kind != "classifier":
        raise ValueError(f"--pairs is for sequence classifiers; --model {args.model} holds a "
                         f"{type(model).__name__}.")
    if kind not in ("encoder", "pretrainer"):
        # With --tflite, --sequence-length goes to export_tflite, for any kind.
        given = [option for option, value in (("--vocab", args.vocab), ("--cased", args.cased),
                                              ("--sequence-length",
                                               args.sequence_length and not args.tflite))
                 if value]
        if given:
            raise ValueError(f"{', '.join(given)}: for encoders and pretrainers; this "
                             f"{type(model).__name__} carries its own tokenizer.")
        return None
    vocab = args.vocab or os.path.join(os.path.dirname(os.path.abspath(args.model)), "vocab.txt")
    if args.vocab and not os.path.isfile(vocab):
        raise FileNotFoundError(f"--vocab {vocab}: no such file.")
    if not os.path.isfile(vocab):
        raise ValueError(f"--model {args.model} holds a {type(model).__name__}, which carries "
                         f"no tokenizer, and there is no {vocab}: pass --vocab (its vocab.txt).")
    tokenizer = kbk.BertTokenizer(vocab, lowercase=not args.cased)
    # Defaults to the encoder's position table, and refuses a longer one.
    return kbk.BertPreprocessor.for_encoder(encoder_of(model), tokenizer,
                                            sequence_length=args.sequence_length)


# -- texts ----------------------------------------------------------------------------


def read_texts(path, fields, option="--verify-texts"):
    """The texts in `path` (`option`'s file): one a line, or `fields` tab-separated strings."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{option} {path}: no such file.")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [(number, line.rstrip("\r\n")) for number, line in enumerate(f, 1)]
    except UnicodeDecodeError as e:
        raise ValueError(f"{option} {path} is not UTF-8 text: {e}") from e
    texts = []
    for number, line in lines:
        if not line.strip():
            continue
        if fields == 1:
            texts.append(line)
            continue
        parts = line.split("\t")
        if len(parts) != fields:
            raise ValueError(f"{path}:{number}: expected {fields} tab-separated fields, "
                             f"found {len(parts)}.")
        texts.append(tuple(parts))
    if not texts:
        raise ValueError(f"{option} {path} holds no text.")
    return texts


def verification_texts(builder, path):
    """`--verify-texts`, or built-in texts of the shape `serving_default` reads."""
    if path:
        return read_texts(path, len(builder.text_inputs))
    if builder.kind == "qa":
        return list(BUILT_IN_QUESTIONS)
    return list(BUILT_IN_PAIRS if len(builder.text_inputs) == 2 else BUILT_IN_TEXTS)


# -- measurements ---------------------------------------------------------------------


def directory_megabytes(path):
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, name)) for name in files)
    return total / MEGABYTE


def median_latency_ms(function, samples, calls):
    """Median milliseconds of `calls` calls of `function(**sample)`, after one untimed call.

    The calls take the `samples` (dicts of inputs) in turn.
    """
    import numpy as np

    function(**samples[0])
    times = []
    for call in range(calls):
        start = time.perf_counter()
        outputs = function(**samples[call % len(samples)])
        for value in outputs.values():
            np.asarray(value)  # waits for the result, on any device
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def text_table(header, rows):
    """`rows` under `header`, each column as wide as its widest cell."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in lines)


def docker_command(base_dir):
    """The `docker run` command serving `base_dir` with the official TF Serving image."""
    base_dir = os.path.abspath(base_dir)
    name = os.path.basename(base_dir)
    return (f"docker run -p 8500:8500 -p 8501:8501 "
            f"-v {shlex.quote(base_dir)}:{shlex.quote(f'/models/{name}')} "
            f"-e MODEL_NAME={shlex.quote(name)} {SERVING_IMAGE}")


# -- TFLite ---------------------------------------------------------------------------


def tflite_paths(args):
    """{quantization: the .tflite file it goes to}, refusing existing files without --overwrite."""
    stem = os.path.splitext(os.path.basename(args.model))[0]
    suffix = "_text" if args.text_input else ""
    paths = {quantization: os.path.join(args.out, f"{stem}_{quantization}{suffix}.tflite")
             for quantization in args.tflite}
    if not args.overwrite:
        existing = [path for path in paths.values() if os.path.lexists(path)]
        if existing:
            raise FileExistsError(f"{', '.join(existing)} exist(s): pass --overwrite to "
                                  "replace, or another --out.")
    return paths


def evaluation_data(model, builder, args):
    """--eval-data as LabeledTexts whose label ids are the model's; None without it."""
    from keras_bert_kit import datasets
    from training.finetune import load_data

    if not args.eval_data:
        return None
    if builder.kind != "classifier":
        raise ValueError(f"--eval-data scores sequence classifiers; --model {args.model} "
                         f"holds a {type(model).__name__}.")
    if bool(args.text_pair_column) != builder.pairs:
        raise ValueError("--text-pair-column and --pairs go together: a pair classifier's "
                         "--eval-data needs its second texts' column.")
    names = model.label_names
    if args.eval_data == "rotten_tomatoes":
        data = datasets.load_rotten_tomatoes("test")
        if builder.pairs or model.num_classes != 2 or names not in (None, data.label_names):
            raise ValueError(
                f"--eval-data rotten_tomatoes holds single texts labelled {data.label_names}; "
                f"--model {args.model} is a {model.num_classes}-class classifier"
                f"{' of text pairs' if builder.pairs else ''} with the labels {names}.")
        return data
    data = load_data("classify", args.eval_data, args, names=names)
    if len(data.label_names) > model.num_classes:
        raise ValueError(f"--eval-data {args.eval_data} has {len(data.label_names)} labels; "
                         f"--model {args.model} has {model.num_classes} classes.")
    return data


def representative_texts(builder, args, texts):
    """int8 calibration texts: --representative-data, else rotten_tomatoes or `texts`."""
    from keras_bert_kit import datasets

    source = args.representative_data or (
        "rotten_tomatoes" if args.eval_data == "rotten_tomatoes" else None)
    if source == "rotten_tomatoes":
        texts = datasets.load_rotten_tomatoes("train").texts
    elif source:
        texts = read_texts(source, len(builder.text_inputs), "--representative-data")
    return list(texts[:REPRESENTATIVE_TEXTS])


def tflite_inputs(model, texts):
    """A TFLiteModel's inputs for `texts` (strings, or (first, second) pairs)."""
    pairs = isinstance(texts[0], tuple)
    firsts = [text[0] for text in texts] if pairs else list(texts)
    seconds = [text[1] for text in texts] if pairs else None
    if not model.text_input:
        return model.features(firsts, seconds)  # host tokenization, as an app does it
    return {"text": firsts, **({"text_pair": seconds} if pairs else {})}


def tflite_accuracy(path, data):
    """The share of `data` that the classifier in `path` labels right."""
    from keras_bert_kit import metrics
    from keras_bert_kit.export import TFLiteModel

    model = TFLiteModel(path)
    examples = list(zip(data.texts, data.text_pairs)) if data.text_pairs else list(data.texts)
    predicted = []
    for start in range(0, len(examples), EVALUATION_BATCH):
        batch = examples[start:start + EVALUATION_BATCH]
        predicted.extend(model(**tflite_inputs(model, batch))["label_id"].tolist())
    return metrics.accuracy(list(data.labels), predicted)


def compare_tflite(model, path, texts, preprocessor, quantization, tolerance):
    """(verify_export's report for `path`, the ExportVerificationError or None).

    The float32 variant is held to `tolerance` (default: verify_export's) and
    every label equal; quantized variants are measured only.
    """
    import math

    from keras_bert_kit.export import ExportVerificationError, verify_export

    if quantization == "none":
        try:
            return verify_export(model, path, texts, preprocessor=preprocessor,
                                 tolerance=tolerance), None
        except ExportVerificationError as error:
            failure = error
    else:
        failure = None
    report = verify_export(model, path, texts, preprocessor=preprocessor,
                           tolerance=math.inf, min_agreement=0.0)
    return report, failure


def run_tflite(args, model, preprocessor, builder, texts):
    """Writes, checks and times one .tflite per --tflite quantization; returns their paths."""
    from keras_bert_kit.export import TFLiteModel, export_tflite
    from training.finetune import score

    evaluation = evaluation_data(model, builder, args)
    calibration = representative_texts(builder, args, texts) if "int8" in args.tflite else None
    paths = tflite_paths(args)
    form, signature = (("text in", "serving_default") if args.text_input
                       else ("ids in", "predict_ids"))
    print(f"Exporting {type(model).__name__} ({builder.kind}, {form}) to {args.out} as "
          f"{', '.join(args.tflite)}...", flush=True)
    rows, failure = [], None
    for quantization, path in paths.items():
        export_tflite(model, path, quantization, text_input=args.text_input,
                      sequence_length=args.sequence_length, representative_texts=calibration,
                      preprocessor=preprocessor, pairs=args.pairs, top_k=args.top_k)
        report, problem = compare_tflite(model, path, texts, preprocessor, quantization,
                                         args.tolerance)
        failure = failure or problem
        parity = report[signature]
        one_thread = TFLiteModel(path, num_threads=1)
        samples = [tflite_inputs(one_thread, [text]) for text in texts]
        row = [
            os.path.basename(path),
            f"{os.path.getsize(path) / MEGABYTE:.2f}",
            f"{parity['output_diffs'].get('probabilities', parity['max_abs_diff']):.1e}",
            f"{parity['agreement']:.0%}",
            f"{median_latency_ms(one_thread, samples, args.latency_calls):.2f}",
        ]
        if evaluation is not None:
            row.append(f"{tflite_accuracy(path, evaluation):.2%}")
        rows.append(row)
    header = ["file", "MB", "vs Keras: max |diff|" + (" of probabilities" if builder.kind ==
                                                      "classifier" else ""), "agreement",
              "median ms, 1 sentence, 1 thread"]
    if evaluation is not None:
        header.append("accuracy")
    print(f"\n{len(rows)} TFLite model(s) in {args.out} ({form}, signature "
          f"{signature}, compared on {len(texts)} text(s))\n")
    print(text_table(header, rows))
    if evaluation is not None:
        keras_accuracy = score("classify", model, evaluation, EVALUATION_BATCH)["accuracy"]
        print(f"\nKeras model: accuracy {keras_accuracy:.2%} on the {len(evaluation)} "
              f"example(s) of --eval-data {args.eval_data}")
    if failure is not None:
        raise failure
    return list(paths.values())


# -- the job --------------------------------------------------------------------------


def run(args):
    import tensorflow as tf

    from keras_bert_kit.export import (
        SignatureBuilder,
        export_saved_model,
        read_export_settings,
        verify_export,
    )
    from keras_bert_kit.export.verify import verification_inputs

    model = load_model(args.model)
    preprocessor = make_preprocessor(model, args)
    # Checks the options against the model before anything is written.
    builder = SignatureBuilder(model, preprocessor, pairs=args.pairs, top_k=args.top_k,
                               max_answer_length=args.max_answer_length,
                               signatures=args.signatures)
    texts = verification_texts(builder, args.verify_texts)
    if args.tflite:
        return run_tflite(args, model, preprocessor, builder, texts)
    if args.version is not None and not args.overwrite:
        target = os.path.join(args.out, str(args.version))
        if os.path.lexists(target):
            raise FileExistsError(f"{target} exists: pass --overwrite to replace it, or "
                                  "another --version.")

    print(f"Exporting {type(model).__name__} ({builder.kind}, {args.dtype}) to {args.out}...",
          flush=True)
    export_dir = export_saved_model(
        model, args.out, args.version, preprocessor=preprocessor, pairs=args.pairs,
        dtype=args.dtype, top_k=args.top_k, max_answer_length=args.max_answer_length,
        warmup=args.warmup, overwrite=args.overwrite, signatures=args.signatures,
    )
    parity = verify_export(model, export_dir, texts, preprocessor=preprocessor,
                           tolerance=args.tolerance)

    loaded = tf.saved_model.load(export_dir)
    one_sentence = verification_inputs(builder, texts[:1])
    signatures = read_export_settings(export_dir)["signatures"]
    rows = []
    for name in builder.names:
        latency = median_latency_ms(loaded.signatures[name], [one_sentence[name]],
                                    args.latency_calls)
        rows.append([
            name,
            ", ".join(signatures[name]["inputs"]),
            ", ".join(signatures[name]["outputs"]),
            f"{parity[name]['max_abs_diff']:.1e} / {parity[name]['agreement']:.0%}",
            f"{latency:.2f}",
        ])
    header = ["signature", "inputs", "outputs", "vs Keras: max |diff| / agreement",
              "median ms, 1 sentence"]
    print(f"\nVersion {os.path.basename(export_dir)}: {export_dir} "
          f"({directory_megabytes(export_dir):.1f} MB, {args.dtype}, compared on "
          f"{len(texts)} text(s))\n")
    print(text_table(header, rows))
    print("\nServe it with TensorFlow Serving (gRPC on 8500, REST on 8501):")
    print(f"  {docker_command(args.out)}")
    return export_dir


def main(argv=None):
    # OSError: an unwritable --out, --out a file, an existing --version.
    return run_job(run, parse_args(argv), errors=(ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
