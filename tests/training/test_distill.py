"""training.distill: both modes end to end on a few rows, their outputs, and bad settings."""

import json
import os
import re
import shutil

import keras
import numpy as np
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.assets import bert_uncased_vocab_path
from training import distill, finetune

TEXT = """The city council met on Monday to discuss the new budget. Members argued over
the cost of road repairs. The mayor said the plan would be ready by spring.

Scientists reported a new species of frog in the rain forest. The frog is bright green
and smaller than a coin. Its call sounds like a bird.

The local team won the final game of the season. Fans filled the streets after the match.
The coach thanked the players and the supporters.
"""


@pytest.fixture(scope="module")
def task_teacher(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    code = finetune.main(["--task", "classify", "--data", str(data_dir / "cls.csv"),
                          "--init", "bert_tiny", "--out", str(out), "--epochs", "1",
                          "--batch-size", "4", "--sequence-length", "32", "--quiet"])
    assert code == 0
    return out / "model.keras"


@pytest.fixture(scope="module")
def pretrainer_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrainer")
    teacher = kbk.BertPretrainer(kbk.BertEncoder(kbk.config_from_preset(
        "bert_tiny", max_sequence_length=64)))
    teacher.save(str(out / "pretrainer.keras"))
    shutil.copy(bert_uncased_vocab_path(), out / "vocab.txt")
    (out / "corpus.txt").write_text(TEXT * 4)
    return out


def test_task_distillation_writes_a_standalone_student(tmp_path, data_dir, task_teacher):
    out = tmp_path / "student"
    code = distill.main(["--teacher", str(task_teacher), "--data", str(data_dir / "cls.csv"),
                         "--validation-split", "0.34", "--epochs", "2", "--batch-size", "4",
                         "--learning-rate", "1e-3", "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "task distillation (classify)"
    assert {"accuracy", "macro_f1"} <= set(metrics["eval"]["student"])
    assert {"accuracy", "macro_f1"} <= set(metrics["eval"]["teacher"])
    assert {"soft_loss", "hard_loss", "cos_loss", "loss", "val_loss"} <= set(metrics["history"])
    assert len(metrics["history"]["loss"]) == 2
    assert not (out / "checkpoints").exists()  # finished: nothing to resume
    assert metrics["student_parameters"] < metrics["teacher_parameters"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "vocab.txt").read_text().splitlines()) == 30522

    keras.backend.clear_session()
    student = keras.saving.load_model(str(out / "student.keras"))
    assert isinstance(student.encoder, kbk.DistilBertEncoder)
    assert student.encoder.config.num_layers == 1  # half of bert_tiny's 2
    assert student.label_names == ("neg", "pos")
    logits = student.predict(["a wonderful film", "awful plot"], verbose=0)
    assert logits.shape == (2, 2) and np.all(np.isfinite(logits))


def test_general_distillation_writes_a_distilbert_pretrainer(tmp_path, pretrainer_teacher):
    out = tmp_path / "general"
    code = distill.main(["--teacher", str(pretrainer_teacher / "pretrainer.keras"),
                         "--data", str(pretrainer_teacher / "corpus.txt"), "--steps", "4",
                         "--log-every", "2", "--batch-size", "4", "--max-seq-length", "32",
                         "--max-predictions-per-seq", "5", "--eval-fraction", "0.3",
                         "--alpha-hidden", "1", "--alpha-attention", "1", "--out", str(out),
                         "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "general distillation"
    assert len(metrics["history"]["loss"]) == 2
    assert {"soft_loss", "hard_loss", "cos_loss", "hidden_loss", "attention_loss",
            "mlm_accuracy", "val_mlm_loss"} <= set(metrics["history"])
    assert {"mlm_loss", "mlm_accuracy"} <= set(metrics["eval"]["student"])
    keras.backend.clear_session()
    student = keras.saving.load_model(str(out / "student.keras"))
    assert isinstance(student, kbk.DistilBertPretrainer)
    assert isinstance(keras.saving.load_model(str(out / "encoder.keras")), kbk.DistilBertEncoder)


@pytest.mark.parametrize("name", ["distill_rotten_tomatoes.yaml", "distill_news.yaml"])
def test_shipped_configs_are_valid(name):
    path = os.path.join(os.path.dirname(distill.__file__), "configs", name)
    settings = distill.parse_args(["--config", path])
    assert settings["teacher"].endswith(".keras") and settings["student"] == "from_teacher"


def test_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        distill.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for setting in distill.SETTINGS:
        assert f"--{setting.replace('_', '-')}" in text


@pytest.mark.parametrize("options, message", [
    (["--temperature", "0"], "temperature"),
    (["--alpha-ce", "-1"], "alpha_ce"),
    (["--epochs", "0"], "epochs"),
    (["--strategy", "tpu"], "strategy"),
])
def test_bad_settings_are_usage_errors(options, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        distill.main(["--teacher", "t.keras", "--data", "d.csv", *options])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_model_problems_stop_before_training(tmp_path, data_dir, task_teacher, capsys):
    data = str(data_dir / "cls.csv")
    code = distill.main(["--teacher", str(task_teacher), "--data", data, "--alpha-hidden", "1",
                         "--layer-map", "{1: 7}", "--out", str(tmp_path / "a")])
    assert code == 2 and "teacher layer 7, outside the teacher's depth" in capsys.readouterr().err
    code = distill.main(["--teacher", str(task_teacher), "--data", data,
                         "--student-layers", "[5]", "--out", str(tmp_path / "b")])
    assert code == 2 and "teacher layer 5" in capsys.readouterr().err
    code = distill.main(["--teacher", str(tmp_path / "none.keras"), "--data", data,
                         "--out", str(tmp_path / "c")])
    assert code == 2 and "none.keras" in capsys.readouterr().err
    assert not (tmp_path / "a" / "student.keras").exists()


def test_a_vocabulary_of_another_size_is_refused(tmp_path, pretrainer_teacher, capsys):
    small = tmp_path / "vocab.txt"
    small.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"]) + "\n")
    code = distill.main(["--teacher", str(pretrainer_teacher / "pretrainer.keras"),
                         "--vocab", str(small), "--data", str(pretrainer_teacher / "corpus.txt"),
                         "--out", str(tmp_path / "out")])
    assert code == 2
    assert "has 6 tokens, but the teacher embeds 30522" in capsys.readouterr().err


# -- epoch checkpoints and resume; a student from a .keras file ---------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, data_dir):
    """Tiny (untrained) teachers and a student encoder over one small vocabulary, and a corpus."""
    from keras_bert_kit.tokenization import standard_reserved_tokens
    from tests.conftest import tiny_bert_config, tiny_distilbert_config

    directory = tmp_path_factory.mktemp("tiny_models")
    (directory / "corpus.txt").write_text(TEXT * 2)
    text = (TEXT + (data_dir / "cls.csv").read_text()).lower()
    vocab = standard_reserved_tokens(0) + sorted(set(re.findall(r"\w+|[^\w\s]", text)))
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = kbk.BertTokenizer(str(directory / "vocab.txt"))
    config = tiny_bert_config(vocab_size=len(vocab))
    kbk.SequenceClassifier(
        kbk.BertEncoder(config), 2, label_names=("neg", "pos"),
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, 32),
    ).save(str(directory / "classifier.keras"))
    kbk.BertPretrainer(kbk.BertEncoder(config)).save(str(directory / "pretrainer.keras"))
    kbk.DistilBertEncoder(tiny_distilbert_config(vocab_size=len(vocab))).save(
        str(directory / "student_encoder.keras"))
    return directory


class Interrupted(Exception):
    """Stands for a kill right after an epoch's checkpoint."""


def interrupt_after_first_epoch(monkeypatch):
    from training.common import EpochCheckpoints

    save = EpochCheckpoints.on_epoch_end

    def save_then_stop(self, epoch, logs=None):
        save(self, epoch, logs)
        raise Interrupted

    monkeypatch.setattr(EpochCheckpoints, "on_epoch_end", save_then_stop)


def run_interrupted_then_resumed(out, options, monkeypatch, capsys):
    """Runs `options` into `out`, stopped after its first epoch, then again; its metrics."""
    options = [*options, "--out", str(out), "--quiet"]
    with monkeypatch.context() as patch:
        interrupt_after_first_epoch(patch)
        with pytest.raises(Interrupted):
            distill.main(options)
    checkpoints = out / "checkpoints"
    assert json.loads((checkpoints / "training_metadata.json").read_text())["epoch"] == 1
    capsys.readouterr()
    keras.backend.clear_session()
    assert distill.main(options) == 0
    assert f"Resuming from the checkpoint of epoch 1 in {checkpoints}." in capsys.readouterr().out
    assert not checkpoints.exists()
    return json.loads((out / "metrics.json").read_text())


def student_weights(out):
    keras.backend.clear_session()
    return keras.saving.load_model(str(out / "student.keras")).get_weights()


def assert_same_run(out, whole):
    metrics = json.loads((out / "metrics.json").read_text())
    expected = json.loads((whole / "metrics.json").read_text())
    assert len(metrics["history"]["loss"]) == 2 and len(metrics["seconds_per_epoch"]) == 2
    # The same data order, masks, dropout, optimizer state and schedule: the same run.
    assert metrics["history"] == expected["history"]
    assert metrics["eval"] == expected["eval"]
    for resumed, uninterrupted in zip(student_weights(out), student_weights(whole), strict=True):
        np.testing.assert_array_equal(resumed, uninterrupted)


def test_task_distillation_into_a_student_file_resumes_after_an_interruption(
        tmp_path, data_dir, tiny_models, monkeypatch, capsys):
    out = tmp_path / "resumed"
    metrics = run_interrupted_then_resumed(out, [
        "--teacher", str(tiny_models / "classifier.keras"),
        "--student", str(tiny_models / "student_encoder.keras"),
        "--data", str(data_dir / "cls.csv"), "--validation-split", "0.34", "--epochs", "2",
        "--batch-size", "4", "--learning-rate", "1e-3"], monkeypatch, capsys)
    assert metrics["mode"] == "task distillation (classify)"
    assert len(metrics["history"]["loss"]) == 2 and len(metrics["seconds_per_epoch"]) == 2
    keras.backend.clear_session()
    student = keras.saving.load_model(str(out / "student.keras"))
    assert isinstance(student.encoder, kbk.DistilBertEncoder)
    assert student.encoder.config.num_layers == 2  # the file's, not half the teacher's
    assert int(student.optimizer.iterations.numpy()) == 2  # one step per epoch, counted on


def test_general_distillation_resumes_as_if_uninterrupted(tmp_path, tiny_models, monkeypatch,
                                                          capsys):
    options = ["--teacher", str(tiny_models / "pretrainer.keras"),
               "--data", str(tiny_models / "corpus.txt"), "--steps", "4", "--log-every", "2",
               "--batch-size", "4", "--max-seq-length", "32", "--max-predictions-per-seq", "5",
               "--eval-fraction", "0.3", "--learning-rate", "1e-3"]
    assert distill.main([*options, "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    run_interrupted_then_resumed(tmp_path / "resumed", options, monkeypatch, capsys)
    assert_same_run(tmp_path / "resumed", tmp_path / "whole")


def test_a_student_file_gives_the_student_its_encoder(tiny_models, data_dir):
    file_encoder = keras.saving.load_model(str(tiny_models / "student_encoder.keras"))
    for teacher, student_class in (("classifier.keras", kbk.SequenceClassifier),
                                   ("pretrainer.keras", kbk.DistilBertPretrainer)):
        settings = distill.parse_args(["--teacher", str(tiny_models / teacher), "--data", "x",
                                       "--max-seq-length", "32",
                                       "--student", str(tiny_models / "student_encoder.keras")])
        teacher, tokenizer = distill.load_teacher(settings)
        student = distill.make_student(settings, teacher, tokenizer)
        assert type(student) is student_class
        for ours, theirs in zip(student.encoder.get_weights(), file_encoder.get_weights(),
                                strict=True):
            np.testing.assert_array_equal(ours, theirs)
    # A pretrainer file is the general student as it is, its MLM head included.
    settings["student"] = str(tiny_models / "pretrainer.keras")
    student = distill.make_student(settings, teacher, tokenizer)
    assert isinstance(student, kbk.BertPretrainer)
    np.testing.assert_array_equal(student.get_weights()[-1], teacher.get_weights()[-1])


def test_a_student_file_that_cannot_learn_from_the_teacher_is_one_error_line(
        tmp_path, tiny_models, data_dir, capsys):
    from tests.conftest import tiny_distilbert_config

    vocab_size = len((tiny_models / "vocab.txt").read_text().splitlines())
    files = {
        "other_vocab.keras": (kbk.DistilBertEncoder(tiny_distilbert_config()),
                              f"vocabulary has {vocab_size} tokens and the student's 300"),
        "narrow.keras": (kbk.DistilBertEncoder(tiny_distilbert_config(
            vocab_size=vocab_size, hidden_size=16, intermediate_size=32)),
            "`alpha_cos` compares last hidden states"),
        "short.keras": (kbk.DistilBertEncoder(tiny_distilbert_config(
            vocab_size=vocab_size, max_sequence_length=16)),
            "takes 16 positions, fewer than the 32 tokens per example"),
        "dense.keras": (keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
                        "holds a Sequential; expected an encoder"),
    }
    for name, (model, _) in files.items():
        model.save(str(tmp_path / name))
    files["missing.keras"] = (None, "missing.keras: no such file")
    for name, (_, message) in files.items():
        code = distill.main(["--teacher", str(tiny_models / "classifier.keras"),
                             "--student", str(tmp_path / name), "--data",
                             str(data_dir / "cls.csv"), "--out", str(tmp_path / "out")])
        lines = capsys.readouterr().err.splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (name, lines)
    assert not (tmp_path / "out" / "student.keras").exists()
