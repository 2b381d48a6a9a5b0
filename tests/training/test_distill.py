"""training.distill: both modes end to end on a few rows, their outputs, and bad settings."""

import json
import os
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
