"""Fine-tune an encoder for classification, tagging or extractive QA.

    python -m training.finetune --task classify --data rotten_tomatoes \\
        --init path/to/hf_model --out runs/rt

`--init` is a Hugging Face model directory, a `.keras` file (an encoder, a
pretrainer or a fine-tuned task model) or a preset name (random weights).
`--data` is a CSV/TSV, JSON Lines, CoNLL (tag) or SQuAD JSON (qa) file, or
`rotten_tomatoes`. Without `--eval-data`, `--validation-split` of the data is
held out. The output directory gets `model.keras` (the fine-tuned task model,
tokenizer included), `vocab.txt`, `metrics.json` and `curves.png`.

Each epoch ends with a checkpoint in `OUT/checkpoints/`: the same command
started again after an interruption resumes from it, and goes on as the
uninterrupted run would have; a checkpoint of a run with other settings is
refused. A non-finite loss stops the run and keeps the last good
checkpoint. The directory is removed once the outputs are written.
"""

from __future__ import annotations

import os
import sys
import warnings

import keras
import numpy as np

from training.settings import ArgumentParser, program_name, run_job

TASKS = ("classify", "tag", "qa")
BUILT_IN_DATA = {"rotten_tomatoes": "classify"}


def parse_args(argv=None):
    # Each help states its default once: "%(default)s" where argparse's default is the
    # default, words where the default depends on other options.
    parser = ArgumentParser(
        prog=program_name("training.finetune"),
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--task", required=True, choices=TASKS,
                        help="what to fine-tune for (required)")
    parser.add_argument("--data", required=True,
                        help="training data: a file, or the built-in 'rotten_tomatoes' (required)")
    parser.add_argument("--init", required=True,
                        help="Hugging Face model directory, .keras file, or preset name "
                        "(required)")
    parser.add_argument("--out", required=True,
                        help="output directory, created if needed; an unfinished run's epoch "
                        "checkpoints in OUT/checkpoints are resumed from (required)")
    parser.add_argument("--eval-data", help="evaluation data, same format as --data (default: "
                        "Rotten Tomatoes' test split, or --validation-split of --data)")
    parser.add_argument("--validation-split", type=float, default=0.1,
                        help="share of --data held out for evaluation when --eval-data is "
                        "absent (default: %(default)s)")
    parser.add_argument("--vocab", help="vocab.txt, when --init does not come with one "
                        "(default: the one of --init; for a preset, the standard uncased "
                        "BERT vocabulary)")
    parser.add_argument("--cased", action="store_true",
                        help="with --vocab or a preset: keep case, a cased vocabulary "
                        "(default: uncased)")

    columns = parser.add_argument_group("data columns (CSV columns / JSON Lines keys)")
    columns.add_argument("--text-column", default="text",
                         help="classify: the text (default: %(default)s)")
    columns.add_argument("--text-pair-column",
                         help="classify: the second text of a pair (default: none, single "
                         "texts)")
    columns.add_argument("--label-column", default="label",
                         help="classify: the label (default: %(default)s)")
    columns.add_argument("--words-column", default="tokens",
                         help="tag: the words (default: %(default)s)")
    columns.add_argument("--tags-column", default="tags",
                         help="tag: the tags (default: %(default)s)")
    columns.add_argument("--question-column", default="question",
                         help="qa: the question (default: %(default)s)")
    columns.add_argument("--context-column", default="context",
                         help="qa: the context (default: %(default)s)")
    columns.add_argument("--answers-column", default="answers",
                         help="qa: answers (JSON Lines), or the answer text column (CSV) "
                         "(default: %(default)s)")
    columns.add_argument("--answer-start-column", default="answer_start",
                         help="qa, CSV: the answer's character offset in the context "
                         "(default: %(default)s)")

    model = parser.add_argument_group("model")
    model.add_argument("--sequence-length", type=int, default=None,
                       help="tokens per example (default: 128; 384 for qa)")
    model.add_argument("--stride", type=int, default=128,
                       help="qa: tokens of overlap between windows of a long context "
                       "(default: %(default)s)")
    model.add_argument("--max-question-length", type=int, default=None,
                       help="qa: questions are cut to this many tokens "
                       "(default: 64, at most half of --sequence-length)")
    model.add_argument("--pooling", choices=("cls", "mean"), default="cls",
                       help="classify: [CLS] pooling or mean over tokens (default: "
                       "%(default)s)")
    model.add_argument("--dropout", type=float, default=0.1,
                       help="dropout before the head (default: %(default)s)")

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=3,
                          help="passes over the training data (default: %(default)s)")
    training.add_argument("--batch-size", type=int, default=32,
                          help="examples per step (default: %(default)s)")
    training.add_argument("--learning-rate", type=float, default=5e-5,
                          help="peak learning rate (default: %(default)s)")
    training.add_argument("--warmup-fraction", type=float, default=0.1,
                          help="share of the steps spent warming up, then linear decay "
                          "(default: %(default)s)")
    training.add_argument("--weight-decay", type=float, default=0.01,
                          help="AdamW weight decay, not on LayerNorm and biases "
                          "(default: %(default)s)")
    training.add_argument("--clipnorm", type=float, default=1.0,
                          help="global gradient-norm clipping, 0 disables "
                          "(default: %(default)s)")
    training.add_argument("--precision", choices=("float32", "mixed_bfloat16", "mixed_float16"),
                          default="float32",
                          help="float32, mixed_bfloat16 (CPU) or mixed_float16 (GPU) "
                          "(default: %(default)s)")
    training.add_argument("--max-examples", type=int,
                          help="use only the first N training examples, for quick runs "
                          "(default: all)")
    training.add_argument("--seed", type=int, default=0,
                          help="seed of the data split, shuffling and initialisation "
                          "(default: %(default)s)")
    training.add_argument("--quiet", action="store_true",
                          help="one line per epoch instead of a progress bar (default: off)")
    args = parser.parse_args(argv)

    if args.data in BUILT_IN_DATA and BUILT_IN_DATA[args.data] != args.task:
        parser.error(f"--data {args.data} is a {BUILT_IN_DATA[args.data]} data set.")
    if not 0 < args.validation_split < 1:
        parser.error("--validation-split must be in (0, 1).")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1.")
    if args.max_examples is not None and args.max_examples < 1:
        parser.error("--max-examples must be at least 1.")
    if args.sequence_length is None:
        args.sequence_length = 384 if args.task == "qa" else 128
    return args


# -- model and vocabulary -----------------------------------------------------------


def load_encoder(path, name):
    """(encoder, loaded model) of a .keras file of an encoder, a pretrainer or a task model.

    `name` names the setting in errors.
    """
    import keras_bert_kit as kbk

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name} {path}: no such file.")
    loaded = keras.saving.load_model(path)
    encoder = getattr(loaded, "encoder", loaded)
    if not isinstance(encoder, (kbk.BertEncoder, kbk.DistilBertEncoder)):
        raise ValueError(
            f"{name} {path} holds a {type(loaded).__name__}; expected an encoder, a "
            "pretrainer or a fine-tuned task model."
        )
    return encoder, loaded


def resolve_init(init, vocab, cased):
    """(encoder, tokenizer) for `--init`."""
    import keras_bert_kit as kbk

    def tokenizer_from(path):
        return kbk.BertTokenizer(path, lowercase=not cased)

    if os.path.isdir(init):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a checkpoint's unused heads are expected here
            encoder = kbk.from_huggingface(init, target="encoder")
        tokenizer = (tokenizer_from(vocab) if vocab
                     else kbk.preprocessor_from_huggingface(init).tokenizer)
        return encoder, tokenizer
    if init.endswith(".keras"):
        encoder, loaded = load_encoder(init, "--init")
        preprocessor = getattr(loaded, "preprocessor", None)
        if vocab:
            tokenizer = tokenizer_from(vocab)
        elif preprocessor is not None:
            tokenizer = preprocessor.tokenizer
        elif os.path.isfile(os.path.join(os.path.dirname(init), "vocab.txt")):
            tokenizer = tokenizer_from(os.path.join(os.path.dirname(init), "vocab.txt"))
        else:
            raise ValueError(f"--init {init} has no vocab.txt beside it: pass --vocab.")
        return encoder, tokenizer
    if init in kbk.PRESETS:
        print(f"Note: {init} is a preset: training starts from random weights.", file=sys.stderr)
        encoder = kbk.models.encoder_from_config(kbk.config_from_preset(init))
        if not vocab:
            from keras_bert_kit.assets import bert_uncased_vocab_path

            vocab = bert_uncased_vocab_path()
        return encoder, tokenizer_from(vocab)
    raise ValueError(
        f"--init {init!r} is neither a directory (Hugging Face model), a .keras file nor a "
        f"preset ({', '.join(sorted(kbk.PRESETS))})."
    )


# -- data ---------------------------------------------------------------------------


def _extension(path):
    return os.path.splitext(path)[1].lower()


def load_data(task, path, args, names=None):
    """The task's examples from `path`; `names` are the label/tag names to map to."""
    from keras_bert_kit import datasets

    if path == "rotten_tomatoes":
        return datasets.load_rotten_tomatoes("train")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file.")
    extension = _extension(path)
    delimiter = "\t" if extension == ".tsv" else ","
    if task == "classify":
        if extension in (".csv", ".tsv"):
            return datasets.load_csv(path, args.text_column, args.label_column,
                                     args.text_pair_column, label_names=names,
                                     delimiter=delimiter)
        return datasets.load_jsonl(path, args.text_column, args.label_column,
                                   args.text_pair_column, label_names=names)
    if task == "tag":
        if extension in (".csv", ".tsv"):
            return datasets.load_tagged_csv(path, args.words_column, args.tags_column,
                                            tag_names=names, delimiter=delimiter)
        if extension in (".jsonl", ".json"):
            return datasets.load_tagged_jsonl(path, args.words_column, args.tags_column,
                                              tag_names=names)
        return datasets.load_conll(path, tag_names=names)
    if extension in (".csv", ".tsv"):
        return datasets.load_qa_csv(path, args.question_column, args.context_column,
                                    args.answers_column, args.answer_start_column,
                                    delimiter=delimiter)
    if extension == ".json":
        return datasets.load_squad_json(path)
    return datasets.load_qa_jsonl(path, args.question_column, args.context_column,
                                  args.answers_column)


def _names(task, data):
    if task == "classify":
        return data.label_names
    if task == "tag":
        return data.tag_names
    return None


def split_data(task, args):
    """(train, eval) examples."""
    from keras_bert_kit import datasets

    train = load_data(task, args.data, args)
    names = _names(task, train)
    if task != "qa" and names is None:
        raise ValueError(f"{args.data}: the training data has no labels.")
    if args.data == "rotten_tomatoes" and not args.eval_data:
        evaluation = datasets.load_rotten_tomatoes("test")
    elif args.eval_data:
        evaluation = load_data(task, args.eval_data, args, names=names)
    else:
        order = np.random.default_rng(args.seed).permutation(len(train))
        held_out = max(1, int(round(args.validation_split * len(train))))
        if held_out >= len(train):
            raise ValueError(
                f"{args.data}: {len(train)} example(s) are too few to hold out "
                f"{args.validation_split:.0%} for evaluation; pass --eval-data."
            )
        evaluation = train.subset(sorted(order[:held_out]))
        train = train.subset(sorted(order[held_out:]))
    if task == "qa" and evaluation.answers is None:
        raise ValueError("The evaluation data has no answers to score against.")
    if args.max_examples:
        train = train.subset(range(min(args.max_examples, len(train))))
    return train, evaluation


# -- tasks --------------------------------------------------------------------------


def build_task(task, encoder, tokenizer, train, args):
    import keras_bert_kit as kbk

    if task == "classify":
        preprocessor = kbk.SequenceClassifierPreprocessor(tokenizer, args.sequence_length)
        return kbk.SequenceClassifier(
            encoder, len(train.label_names), preprocessor=preprocessor, pooling=args.pooling,
            dropout=args.dropout, label_names=train.label_names,
        )
    if task == "tag":
        preprocessor = kbk.TokenClassifierPreprocessor(tokenizer, args.sequence_length)
        return kbk.TokenClassifier(
            encoder, len(train.tag_names), preprocessor=preprocessor, dropout=args.dropout,
            tag_names=train.tag_names,
        )
    max_question_length = args.max_question_length or min(64, args.sequence_length // 2)
    preprocessor = kbk.SpanExtractorPreprocessor(
        tokenizer, sequence_length=args.sequence_length, stride=args.stride,
        max_question_length=max_question_length,
    )
    return kbk.SpanExtractor(encoder, preprocessor=preprocessor, dropout=args.dropout)


def fit_arguments(task, data):
    """(x, y) of a data set for `fit` and `evaluate`."""
    # Lists: a tuple of texts would read as a text pair.
    if task == "classify":
        texts = list(data.texts)
        x = texts if data.text_pairs is None else (texts, list(data.text_pairs))
        return x, np.asarray(data.labels)
    if task == "tag":
        return list(data.words), list(data.tags)
    return (list(data.questions), list(data.contexts)), list(data.answers)


def score(task, model, data, batch_size):
    """The task's own metrics on `data`."""
    from keras_bert_kit import metrics

    if task == "classify":
        x, y = fit_arguments(task, data)
        predicted = np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)
        return dict(
            accuracy=metrics.accuracy(y, predicted),
            macro_f1=metrics.macro_f1(y, predicted, num_classes=len(data.label_names)),
        )
    if task == "tag":
        predicted = model.predict_tags(data.words, batch_size=batch_size)
        names = data.tag_names
        true = [[names[t] for t in sentence] for sentence in data.tags]
        guess = [[names[t] for t in sentence] for sentence in predicted]
        flat_true = [t for s in data.tags for t in s]
        flat_guess = [t for s in predicted for t in s]
        entities = metrics.entity_scores(true, guess)
        return dict(
            token_accuracy=metrics.accuracy(flat_true, flat_guess),
            entity_precision=entities["precision"],
            entity_recall=entities["recall"],
            entity_f1=entities["f1"],
            per_type=entities["per_type"],
        )
    answers = model.answer(data.questions, data.contexts, batch_size=batch_size)
    references = [[text for text, _ in example] for example in data.answers]
    return metrics.squad_scores([a["text"] for a in answers], references)


# Settings that do not change what a run computes: a checkpoint resumes across them.
UNCHECKED_ON_RESUME = ("out", "quiet")


def run(args):
    from training.common import EpochCheckpoints, StopOnNaN

    if args.precision != "float32":
        keras.mixed_precision.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    checkpoints = EpochCheckpoints(
        os.path.join(args.out, "checkpoints"),
        {k: v for k, v in vars(args).items() if k not in UNCHECKED_ON_RESUME},
    )

    train, evaluation = split_data(args.task, args)
    encoder, tokenizer = resolve_init(args.init, args.vocab, args.cased)
    model = build_task(args.task, encoder, tokenizer, train, args)
    model.compile(
        learning_rate=args.learning_rate,
        warmup_fraction=args.warmup_fraction,
        weight_decay=args.weight_decay,
        clipnorm=args.clipnorm or None,
    )
    print(f"Fine-tuning {type(encoder).__name__} ({encoder.count_params():,} parameters) for "
          f"{args.task} on {len(train):,} examples; evaluating on {len(evaluation):,}.")
    x, y = fit_arguments(args.task, train)
    # The batches are made here, not by `fit`, as one stream reshuffled each
    # pass: a resumed run reads on from where the interrupted one stopped.
    batches = model.preprocessor.dataset(x, y, batch_size=args.batch_size, shuffle=True,
                                         seed=args.seed)
    steps_per_epoch = int(batches.cardinality())
    nan_guard = StopOnNaN(steps_per_epoch)
    model.fit(
        checkpoints.resume_data(batches.repeat(), steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
        validation_data=fit_arguments(args.task, evaluation),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=[nan_guard, checkpoints],
        verbose=2 if args.quiet else 1,
    )
    checkpoints.raise_if_stopped(nan_guard, "--learning-rate")
    scores = score(args.task, model, evaluation, args.batch_size)

    model_path = os.path.join(args.out, "model.keras")
    model.save(model_path)
    tokenizer.save_vocabulary(os.path.join(args.out, "vocab.txt"))
    from training.reporting import plot_curves, write_metrics

    plot_curves(checkpoints.history, args.out,
                f"{args.task}: {os.path.basename(str(args.init))}")
    write_metrics(
        dict(
            task=args.task,
            init=args.init,
            data=args.data,
            eval_data=args.eval_data or f"{args.validation_split:.0%} of --data held out",
            train_examples=len(train),
            eval_examples=len(evaluation),
            parameters=encoder.count_params(),
            seconds_per_epoch=checkpoints.seconds_per_epoch,
            history=checkpoints.history,
            eval=scores,
            arguments=vars(args),
        ),
        args.out,
    )
    checkpoints.remove()  # The run is finished: nothing to resume.
    summary = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float))
    print(f"Evaluation: {summary}")
    print(f"Wrote {model_path}, vocab.txt, metrics.json and curves.png to {args.out}")
    return scores


def main(argv=None):
    # Data and argument problems are the user's to fix: say what, not a traceback.
    return run_job(run, parse_args(argv),
                   errors=(ValueError, FileNotFoundError, FloatingPointError))


if __name__ == "__main__":
    sys.exit(main())
