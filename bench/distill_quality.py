"""Task distillation quality and speed: a 3-layer student of a fine-tuned MiniLM-L6 teacher.

1. Teacher: all-MiniLM-L6-v2 imported, fine-tuned on the Rotten Tomatoes
   train split (`SequenceClassifier`, the recipe of bench/finetune_quality.py).
2. Student: a DistilBERT-style model (no segment embeddings, no pooler) of 3
   layers, initialised from teacher layers 0, 2, 4 by
   `init_student_from_teacher`, then task-distilled with `Distiller` on the
   same train split: soft targets at temperature T, hard labels, and the
   cosine of the last hidden states.
3. Ablation: the same student, from the same initialisation, trained on the
   hard labels alone with the same optimizer, epochs and data.

Reported on the test split: teacher and student accuracy, retention (student
/ teacher), ablation accuracy, and inference throughput of student vs
teacher (sequences/s of `predict` over the whole test split, best of 5 runs
each, interleaved). Targets: retention >= 98.5%, the distilled student above
the ablation, student throughput >= 1.9x the teacher's.

    .venv/bin/python bench/distill_quality.py                    # ~35 minutes on 2 cores (idle)
    .venv/bin/python bench/distill_quality.py --teacher runs/t.keras  # reuse (or save) the teacher
    .venv/bin/python bench/distill_quality.py --quick            # smoke run: 256 examples
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from _results import BenchReport, ratio_chart  # noqa: E402
from _timing import usable_cores  # noqa: E402

TEACHER_RECIPE = dict(epochs=3, batch_size=32, learning_rate=5e-5, warmup_fraction=0.06,
                      max_length=128, seed=0)
STUDENT_RECIPE = dict(epochs=3, batch_size=32, learning_rate=1e-4, warmup_fraction=0.06,
                      layers=[0, 2, 4], temperature=2.0, alpha_ce=1.0, alpha_hard=1.0,
                      alpha_cos=1.0, seed=0)


def load_data(limit):
    from keras_bert_kit.datasets import load_rotten_tomatoes

    train, test = load_rotten_tomatoes("train"), load_rotten_tomatoes("test")
    if limit:
        train, test = train.subset(range(limit)), test.subset(range(limit // 4))
    return train, test


def optimizer(recipe, train_data):
    """AdamW whose warmup and decay span `recipe["epochs"]` passes over `train_data`."""
    import keras_bert_kit as kbk

    steps = int(train_data.cardinality()) * recipe["epochs"]
    return kbk.create_optimizer(recipe["learning_rate"], num_train_steps=steps,
                                warmup_fraction=recipe["warmup_fraction"])


def accuracy(model, data, labels):
    logits = model.predict(data, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == labels))


def fine_tune_teacher(model_dir, train_data, recipe, path):
    import keras

    import keras_bert_kit as kbk

    if path and os.path.exists(path):
        print(f"teacher: loading {path}", flush=True)
        return keras.saving.load_model(path), None
    keras.utils.set_random_seed(recipe["seed"])
    preprocessor = kbk.SequenceClassifierPreprocessor(
        kbk.preprocessor_from_huggingface(model_dir).tokenizer, recipe["max_length"])
    teacher = kbk.SequenceClassifier(kbk.from_huggingface(model_dir), 2,
                                     preprocessor=preprocessor)
    teacher.compile(optimizer=optimizer(recipe, train_data))
    start = time.perf_counter()
    teacher.fit(train_data, epochs=recipe["epochs"], verbose=2)
    seconds = time.perf_counter() - start
    if path:
        teacher.save(path)
    return teacher, seconds


def new_student(teacher, recipe):
    import keras

    import keras_bert_kit as kbk

    keras.utils.set_random_seed(recipe["seed"])
    encoder = kbk.init_student_from_teacher(teacher, layers=recipe["layers"])
    return kbk.SequenceClassifier(encoder, 2, preprocessor=teacher.preprocessor)


def distill(teacher, train_data, recipe):
    import keras_bert_kit as kbk

    student = new_student(teacher, recipe)
    distiller = kbk.Distiller(
        teacher, student, temperature=recipe["temperature"], alpha_ce=recipe["alpha_ce"],
        alpha_hard=recipe["alpha_hard"], alpha_cos=recipe["alpha_cos"])
    distiller.compile(optimizer=optimizer(recipe, train_data))
    start = time.perf_counter()
    distiller.fit(train_data, epochs=recipe["epochs"], verbose=2)
    return student, time.perf_counter() - start


def train_on_labels(teacher, train_data, recipe):
    student = new_student(teacher, recipe)
    student.compile(optimizer=optimizer(recipe, train_data))
    start = time.perf_counter()
    student.fit(train_data, epochs=recipe["epochs"], verbose=2)
    return student, time.perf_counter() - start


def throughput(models, data, count, repeats=5):
    """Best sequences/s of each model's `predict` over `data`, runs interleaved.

    Both models run `predict` as a user would, in the same mode (graph, no
    XLA: neither is compiled with it), on the same cached, tokenized batches,
    so the ratio counts the encoders and heads, not tokenization.
    """
    best = {name: 0.0 for name in models}
    for name, model in models.items():
        model.predict(data, verbose=0)  # trace every batch shape once
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict(data, verbose=0)
            best[name] = max(best[name], count / (time.perf_counter() - start))
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="256 training examples, 1 epoch each: checks that it works")
    parser.add_argument("--teacher", help="a fine-tuned teacher .keras: loaded when it exists, "
                        "else the fine-tuned teacher is saved there")
    parser.add_argument("--student-epochs", type=int, default=STUDENT_RECIPE["epochs"])
    parser.add_argument("--temperature", type=float, default=STUDENT_RECIPE["temperature"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from keras_bert_kit.assets import minilm_model_dir

    teacher_recipe, student_recipe = dict(TEACHER_RECIPE), dict(STUDENT_RECIPE)
    student_recipe.update(epochs=args.student_epochs, temperature=args.temperature)
    if args.quick:
        teacher_recipe["epochs"] = student_recipe["epochs"] = 1
    train, test = load_data(256 if args.quick else None)
    out = BenchReport("distill_quality", quick=args.quick,
                      description=__doc__.split("\n\n")[0])
    out.note(f"Rotten Tomatoes: {len(train)} train / {len(test)} test; {usable_cores()} cores\n"
             f"teacher recipe {teacher_recipe}\nstudent recipe {student_recipe}")

    import keras_bert_kit as kbk

    model_dir = minilm_model_dir()
    preprocessor = kbk.SequenceClassifierPreprocessor(
        kbk.preprocessor_from_huggingface(model_dir).tokenizer, teacher_recipe["max_length"])
    labels = np.asarray(train.labels)
    # Shuffled and length-bucketed; every run draws its epochs from this one stream.
    train_data = preprocessor.dataset(list(train.texts), labels, batch_size=32, shuffle=True,
                                      seed=0)
    test_data = preprocessor.dataset(list(test.texts), batch_size=32).cache()
    test_labels = np.asarray(test.labels)

    teacher, teacher_seconds = fine_tune_teacher(model_dir, train_data, teacher_recipe,
                                                 args.teacher)
    student, distill_seconds = distill(teacher, train_data, student_recipe)
    ablation, ablation_seconds = train_on_labels(teacher, train_data, student_recipe)

    results = dict(
        teacher_accuracy=accuracy(teacher, test_data, test_labels),
        student_accuracy=accuracy(student, test_data, test_labels),
        ablation_accuracy=accuracy(ablation, test_data, test_labels),
        seconds=dict(teacher=teacher_seconds, distillation=distill_seconds,
                     ablation=ablation_seconds),
    )
    speed = throughput({"teacher": teacher, "student": student}, test_data, len(test))
    results["sequences_per_second"] = speed
    retention = results["student_accuracy"] / results["teacher_accuracy"]
    speedup = speed["student"] / speed["teacher"]

    rows = [
        ["teacher (MiniLM-L6, fine-tuned)", f"{100 * results['teacher_accuracy']:.2f}",
         "100.0%", f"{speed['teacher']:.1f}", "1.00x"],
        ["student (3 layers, distilled)", f"{100 * results['student_accuracy']:.2f}",
         f"{100 * retention:.1f}%", f"{speed['student']:.1f}", f"{speedup:.2f}x"],
        ["ablation (3 layers, hard labels only)", f"{100 * results['ablation_accuracy']:.2f}",
         f"{100 * results['ablation_accuracy'] / results['teacher_accuracy']:.1f}%", "-", "-"],
    ]
    print()
    out.table(["model", "test accuracy %", "retention", "sequences/s", "vs teacher"], rows)
    beats = results["student_accuracy"] > results["ablation_accuracy"]
    gain = 100 * (results["student_accuracy"] - results["ablation_accuracy"])
    out.note(f"\nretention {100 * retention:.2f}% "
             f"({'PASS' if retention >= 0.985 else 'FAIL'}: target >= 98.5%)\n"
             f"distilled vs ablation: {gain:+.2f} points ({'PASS' if beats else 'FAIL'}: "
             "target > 0)\n"
             f"student throughput {speedup:.2f}x the teacher's "
             f"({'PASS' if speedup >= 1.9 else 'FAIL'}: target >= 1.9x)\n"
             f"training seconds: {results['seconds']}")
    out.chart("vs_teacher", ratio_chart(
        "3-layer student vs its MiniLM-L6 teacher (Rotten Tomatoes test)",
        {"student accuracy / teacher's (retention)": retention,
         "ablation accuracy / teacher's": results["ablation_accuracy"]
         / results["teacher_accuracy"],
         "student sequences/s / teacher's": speedup},
        xlabel="ratio to the fine-tuned teacher",
        target={"student accuracy / teacher's (retention)": 0.985,
                "student sequences/s / teacher's": 1.9}))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(teacher_recipe=teacher_recipe, student_recipe=student_recipe,
                           results=results, cores=usable_cores()), f, indent=2)
    out.write()


if __name__ == "__main__":
    main()
