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
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
import zipfile

from training.settings import ArgumentParser, run_job

SERVING_IMAGE = "tensorflow/serving:2.20.0"
MEGABYTE = 2**20

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
        prog="python -m training.export",
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
                        help="replace an existing --version")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="compute precision; bfloat16 (float32 outputs) is for CPUs with "
                        "AVX512-BF16 or AMX (default: %(default)s)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="write no assets.extra/tf_serving_warmup_requests")

    signatures = parser.add_argument_group("signatures")
    signatures.add_argument("--pairs", action="store_true",
                            help="sequence classifier: serving_default reads text pairs "
                            "(text and text_pair)")
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
                           "(default: the encoder's position table)")

    checks = parser.add_argument_group("checks")
    checks.add_argument("--verify-texts",
                        help="UTF-8 file of texts to compare the export with Keras on, one per "
                        "line; two tab-separated fields for text pairs (--pairs) and span "
                        "extractors (question, context) (default: built-in sentences)")
    checks.add_argument("--tolerance", type=float, default=None,
                        help="largest allowed difference of a float output "
                        "(default: 1e-5 for float32, 5e-2 for bfloat16)")
    checks.add_argument("--latency-calls", type=int, default=20,
                        help="timed calls of each signature on one sentence, after one "
                        "warm-up call (default: %(default)s)")
    args = parser.parse_args(argv)

    if args.version is not None and args.version < 0:
        parser.error("--version must be at least 0.")
    for name in ("top_k", "max_answer_length", "latency_calls", "sequence_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1.")
    if args.tolerance is not None and not args.tolerance >= 0:
        parser.error("--tolerance must be a number at least 0.")
    return args


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
        given = [option for option, value in (("--vocab", args.vocab), ("--cased", args.cased),
                                              ("--sequence-length", args.sequence_length))
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


def read_texts(path, fields):
    """The texts in `path`: one a line, or `fields` tab-separated strings a line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [(number, line.rstrip("\r\n")) for number, line in enumerate(f, 1)]
    except UnicodeDecodeError as e:
        raise ValueError(f"--verify-texts {path} is not UTF-8 text: {e}") from e
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
        raise ValueError(f"--verify-texts {path} holds no text.")
    return texts


def verification_texts(builder, path):
    """`--verify-texts`, or built-in texts of the shape `serving_default` reads."""
    fields = len(builder.text_inputs)
    if path and not os.path.isfile(path):
        raise FileNotFoundError(f"--verify-texts {path}: no such file.")
    if path:
        return read_texts(path, fields)
    if builder.kind == "qa":
        return list(BUILT_IN_QUESTIONS)
    return list(BUILT_IN_PAIRS if fields == 2 else BUILT_IN_TEXTS)


# -- measurements ---------------------------------------------------------------------


def directory_megabytes(path):
    total = 0
    for folder, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(folder, name)) for name in files)
    return total / MEGABYTE


def median_latency_ms(function, inputs, calls):
    """Median milliseconds of `calls` calls of `function(**inputs)`, after one untimed call."""
    function(**inputs)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        outputs = function(**inputs)
        for value in outputs.values():
            value.numpy()  # waits for the result, on any device
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
                               max_answer_length=args.max_answer_length)
    texts = verification_texts(builder, args.verify_texts)
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
        warmup=args.warmup, overwrite=args.overwrite,
    )
    parity = verify_export(model, export_dir, texts, preprocessor=preprocessor,
                           tolerance=args.tolerance)

    loaded = tf.saved_model.load(export_dir)
    one_sentence = verification_inputs(builder, texts[:1])
    signatures = read_export_settings(export_dir)["signatures"]
    rows = []
    for name in builder.names:
        latency = median_latency_ms(loaded.signatures[name], one_sentence[name],
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
