"""training.finetune: smoke runs of each task on a few rows, outputs, and data errors."""

import json

import keras
import pytest

from training import finetune

def run(tmp_path, *extra):
    out = tmp_path / "out"
    # Later options win, so `extra` can override these defaults.
    code = finetune.main(["--out", str(out), "--init", "bert_tiny", "--epochs", "1",
                          "--batch-size", "4", "--sequence-length", "32", "--quiet", *extra])
    return code, out


@pytest.mark.parametrize("task, file, metric", [
    ("classify", "cls.csv", "macro_f1"),
    ("tag", "tag.jsonl", "entity_f1"),
    ("qa", "qa.jsonl", "exact_match"),
])
def test_each_task_runs_and_writes_its_outputs(tmp_path, data_dir, task, file, metric):
    code, out = run(tmp_path, "--task", task, "--data", str(data_dir / file), "--stride", "4",
                    "--validation-split", "0.34")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and metric in metrics["eval"]
    assert metrics["train_examples"] == 4 and metrics["eval_examples"] == 2
    assert len(metrics["history"]["loss"]) == 1 and len(metrics["seconds_per_epoch"]) == 1
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "vocab.txt").read_text().splitlines()) == 30522
    model = keras.saving.load_model(str(out / "model.keras"))
    assert model.preprocessor is not None


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--task", "--data", "--init", "--out", "--eval-data", "--learning-rate",
                   "--warmup-fraction", "--sequence-length", "--stride", "--text-column"):
        assert option in text


def test_data_errors_name_file_line_and_column(tmp_path, data_dir, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("review,label\ngood,pos\n")
    code, _ = run(tmp_path, "--task", "classify", "--data", str(bad))
    assert code == 2
    assert f"{bad}:1:" in capsys.readouterr().err

    unknown = tmp_path / "eval.csv"
    unknown.write_text("text,label\nfine,pos\nmeh,neutral\n")
    code, _ = run(tmp_path, "--task", "classify", "--data", str(data_dir / "cls.csv"),
                  "--eval-data", str(unknown))
    error = capsys.readouterr().err
    assert code == 2 and f"{unknown}:3:" in error and "neutral" in error

    out_of_range = tmp_path / "ids.jsonl"
    out_of_range.write_text('{"text": "fine", "label": 0}\n{"text": "meh", "label": 7}\n')
    code, _ = run(tmp_path, "--task", "classify", "--data", str(data_dir / "cls.csv"),
                  "--eval-data", str(out_of_range))
    error = capsys.readouterr().err
    assert code == 2 and f"{out_of_range}:2:" in error and "7" in error

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _ = run(tmp_path, "--task", "tag", "--data", str(empty))
    assert code == 2 and "empty" in capsys.readouterr().err

    code, _ = run(tmp_path, "--task", "classify", "--data", str(tmp_path / "missing.csv"))
    assert code == 2 and "missing.csv" in capsys.readouterr().err


def test_argument_errors(tmp_path, data_dir):
    with pytest.raises(SystemExit):
        finetune.parse_args(["--task", "tag", "--data", "rotten_tomatoes", "--init", "x",
                             "--out", "y"])
    code, _ = run(tmp_path, "--task", "classify", "--data", str(data_dir / "cls.csv"),
                  "--init", "no_such_preset")
    assert code == 2
