"""Fine-tuning quality and speed: keras_bert_kit vs transformers (torch), same weights and recipe.

all-MiniLM-L6-v2 is fine-tuned on the Rotten Tomatoes train split and scored
on the test split (the crc32 split of `keras_bert_kit.datasets`), once with
`keras_bert_kit.SequenceClassifier` and once with transformers'
`BertForSequenceClassification`, in this one process. The recipe is the
same on both sides: [CLS]-pooler head with dropout 0.1, AdamW (weight decay
0.01 off for LayerNorm and biases, epsilon 1e-6), linear warmup over 6% of
the steps then linear decay to 0, global-norm clipping at 1.0, batch 32,
lr 5e-5, 3 epochs, at most 128 tokens. Each side pads batches the way it
normally would: transformers to the longest example of each random batch
(`DataCollatorWithPadding`), keras_bert_kit to length buckets (32/64/128).

Reported: test accuracy of each, the difference in points, and the training
wall time per epoch (data preparation included, evaluation excluded).
Targets: accuracy within 0.5 point of torch, an epoch no slower than torch's.

    .venv/bin/python bench/finetune_quality.py                 # full run, ~25 minutes on 2 cores
    .venv/bin/python bench/finetune_quality.py --quick         # smoke run: 256 examples, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from _results import BenchReport, ratio_chart  # noqa: E402
from _timing import usable_cores  # noqa: E402

RECIPE = dict(epochs=3, batch_size=32, learning_rate=5e-5, warmup_fraction=0.06,
              weight_decay=0.01, clipnorm=1.0, max_length=128, epsilon=1e-6, seed=0)


def load_data(limit):
    from keras_bert_kit.datasets import load_rotten_tomatoes

    train, test = load_rotten_tomatoes("train"), load_rotten_tomatoes("test")
    if limit:
        train, test = train.subset(range(limit)), test.subset(range(limit // 4))
    return train, test


def run_keras(model_dir, train, test, recipe):
    import keras

    import keras_bert_kit as kbk

    keras.utils.set_random_seed(recipe["seed"])
    encoder = kbk.from_huggingface(model_dir)
    preprocessor = kbk.SequenceClassifierPreprocessor(
        kbk.preprocessor_from_huggingface(model_dir).tokenizer, recipe["max_length"]
    )
    model = kbk.SequenceClassifier(encoder, 2, preprocessor=preprocessor, dropout=0.1)
    data = preprocessor.dataset(list(train.texts), np.asarray(train.labels),
                                batch_size=recipe["batch_size"], shuffle=True,
                                seed=recipe["seed"])
    steps = int(data.cardinality()) * recipe["epochs"]
    model.compile(optimizer=kbk.create_optimizer(
        recipe["learning_rate"], num_train_steps=steps,
        warmup_fraction=recipe["warmup_fraction"], weight_decay=recipe["weight_decay"],
        clipnorm=recipe["clipnorm"], epsilon=recipe["epsilon"],
    ))

    epoch_seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.start)

    model.fit(data, epochs=recipe["epochs"], callbacks=[Timer()], verbose=2)
    logits = model.predict(list(test.texts), batch_size=64, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, -1) == np.asarray(test.labels)))
    return dict(accuracy=accuracy, epoch_seconds=epoch_seconds,
                jit_compile=bool(model.jit_compile), steps=steps)


def run_torch(model_dir, train, test, recipe, threads):
    import torch
    import transformers

    torch.manual_seed(recipe["seed"])
    torch.set_num_threads(threads)
    tokenizer = transformers.BertTokenizerFast.from_pretrained(model_dir)
    model = transformers.BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=2, classifier_dropout=0.1
    )
    collator = transformers.DataCollatorWithPadding(tokenizer)

    def encode(texts):
        return tokenizer(list(texts), truncation=True, max_length=recipe["max_length"])

    train_encodings = encode(train.texts)
    labels = np.asarray(train.labels)
    batches_per_epoch = math.ceil(len(labels) / recipe["batch_size"])
    steps = batches_per_epoch * recipe["epochs"]
    no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe["learning_rate"], eps=recipe["epsilon"],
    )
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, round(recipe["warmup_fraction"] * steps), steps
    )
    generator = np.random.default_rng(recipe["seed"])
    epoch_seconds = []
    model.train()
    for _ in range(recipe["epochs"]):
        start = time.perf_counter()
        order = generator.permutation(len(labels))
        for b in range(batches_per_epoch):
            index = order[b * recipe["batch_size"]:(b + 1) * recipe["batch_size"]]
            batch = collator([{k: train_encodings[k][i] for k in train_encodings} for i in index])
            batch["labels"] = torch.tensor(labels[index])
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["clipnorm"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        epoch_seconds.append(time.perf_counter() - start)
        print(f"torch epoch {len(epoch_seconds)}: {epoch_seconds[-1]:.1f} s, "
              f"last loss {loss.item():.4f}", flush=True)
    model.eval()
    test_encodings = encode(test.texts)
    predictions = []
    with torch.no_grad():
        for b in range(0, len(test.labels), 64):
            batch = collator([{k: test_encodings[k][i] for k in test_encodings}
                              for i in range(b, min(b + 64, len(test.labels)))])
            predictions.append(model(**batch).logits.argmax(-1).numpy())
    accuracy = float(np.mean(np.concatenate(predictions) == np.asarray(test.labels)))
    return dict(accuracy=accuracy, epoch_seconds=epoch_seconds, steps=steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="256 training examples, 1 epoch: checks that it works")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from keras_bert_kit.assets import minilm_model_dir

    recipe = dict(RECIPE, epochs=1) if args.quick else dict(RECIPE)
    train, test = load_data(256 if args.quick else None)
    threads = usable_cores()
    out = BenchReport("finetune_quality", quick=args.quick,
                      description=__doc__.split("\n\n")[0])
    out.note(f"Rotten Tomatoes: {len(train)} train / {len(test)} test; {threads} cores; "
             f"recipe {recipe}")
    model_dir = minilm_model_dir()

    results = {"keras_bert_kit": run_keras(model_dir, train, test, recipe)}
    results["transformers (torch)"] = run_torch(model_dir, train, test, recipe, threads)

    ours, torch_run = results["keras_bert_kit"], results["transformers (torch)"]
    rows = []
    for name, result in results.items():
        epoch = float(np.mean(result["epoch_seconds"]))
        rows.append([name, f"{100 * result['accuracy']:.2f}", f"{epoch:.1f}",
                     f"{np.mean(torch_run['epoch_seconds']) / epoch:.2f}x"])
    print()
    out.table(["run", "test accuracy %", "s / epoch", "speed vs torch"], rows)
    gap = 100 * (ours["accuracy"] - torch_run["accuracy"])
    faster = np.mean(torch_run["epoch_seconds"]) / np.mean(ours["epoch_seconds"])
    # Within 0.5 point, or better than torch.
    verdict = "PASS" if gap >= -0.5 else "FAIL"
    out.note(f"\naccuracy difference: {gap:+.2f} points ({verdict}: target within 0.5 point)\n"
             f"epoch speed: {faster:.2f}x torch ({'PASS' if faster >= 1.0 else 'FAIL'}: "
             f"the target is >= 1.0x)\n"
             f"keras_bert_kit ran with jit_compile={ours['jit_compile']}")
    accuracy_ratio = ours["accuracy"] / torch_run["accuracy"]
    out.chart("vs_torch", ratio_chart(
        "Fine-tuning MiniLM-L6 on Rotten Tomatoes: keras_bert_kit vs transformers (torch)",
        {"epoch speed (torch s / ours)": faster, "test accuracy (ours / torch)": accuracy_ratio},
        xlabel="keras_bert_kit over transformers (torch)"))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(recipe=recipe, results=results, cores=threads), f, indent=2)
    out.write()


if __name__ == "__main__":
    main()
