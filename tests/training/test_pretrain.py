"""training.pretrain: a run end to end, resume after SIGKILL, NaN stop, settings."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import yaml

from training import pretrain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_MODEL = dict(architecture="bert", hidden_size=32, num_layers=1, num_heads=2,
                  intermediate_size=64, max_sequence_length=64)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, news_articles):
    directory = tmp_path_factory.mktemp("corpus")
    (directory / "news.txt").write_text("\n\n".join(news_articles[:40]) + "\n")
    return directory


def config_file(tmp_path, corpus, **overrides):
    settings = dict(model=TINY_MODEL, data=str(corpus), vocab="bert_uncased", max_seq_length=64,
                    max_predictions_per_seq=8, eval_fraction=0.1, steps=6, batch_size=8,
                    learning_rate=2e-3, warmup_steps=2, checkpoint_every=3, jit_compile=False,
                    out=str(tmp_path / "out"))
    settings.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path), settings["out"]


def command(config, *extra):
    return [sys.executable, "-m", "training.pretrain", "--config", config, "--quiet", *extra]


def run_job(args, env=None, timeout=600):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def test_help_documents_every_setting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretrain.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for key in pretrain.SETTINGS:
        assert f"--{key.replace('_', '-')}" in text


def test_settings_errors(tmp_path, corpus):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    with pytest.raises(SystemExit):
        pretrain.parse_args(["--config", str(bad)])
    config, _ = config_file(tmp_path, corpus)
    with pytest.raises(SystemExit):
        pretrain.parse_args(["--config", config, "--strategy", "tpu"])
    assert pretrain.parse_args(["--config", config, "--steps", "9"])["steps"] == 9


def test_run_writes_outputs_with_xla_checked(tmp_path, corpus):
    config, out = config_file(tmp_path, corpus, jit_compile="auto")
    assert pretrain.main(["--config", config, "--quiet"]) == 0
    metrics = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert metrics["xla"] is True and metrics["replicas"] == 1
    assert {"mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy"} <= set(metrics["eval"])
    assert len(metrics["history"]["loss"]) == 2  # 6 steps, a checkpoint every 3
    for name in ("pretrainer.keras", "encoder.keras", "vocab.txt", "curves.png"):
        assert os.path.exists(os.path.join(out, name))
    assert os.listdir(os.path.join(out, "logs", "train"))
    model = keras.saving.load_model(os.path.join(out, "pretrainer.keras"))
    assert int(model.optimizer.iterations.numpy()) == 6


def test_sigkill_mid_run_then_the_same_command_resumes(tmp_path, corpus):
    config, out = config_file(tmp_path, corpus, steps=60, checkpoint_every=10)
    metadata = os.path.join(out, "checkpoints", "training_metadata.json")
    job = subprocess.Popen(command(config), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.time() + 300
    while time.time() < deadline and not os.path.exists(metadata):
        time.sleep(0.2)
    assert os.path.exists(metadata), "no checkpoint was written"
    job.send_signal(signal.SIGKILL)
    job.wait()
    saved_epochs = json.load(open(metadata))["epoch"]
    assert 1 <= saved_epochs < 6

    result = run_job(command(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming from the checkpoint at step {saved_epochs * 10}" in result.stdout
    metrics = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert metrics["resumed_from_step"] == saved_epochs * 10
    assert len(metrics["history"]["loss"]) == 6 - saved_epochs
    model = keras.saving.load_model(os.path.join(out, "pretrainer.keras"))
    assert int(model.optimizer.iterations.numpy()) == 60  # the step counter went on


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, corpus):
    config, out = config_file(tmp_path, corpus, steps=3, checkpoint_every=3)
    assert run_job(command(config)).returncode == 0
    weights = os.path.join(out, "checkpoints", "latest.weights.h5")
    before = open(weights, "rb").read()
    result = run_job(command(config, "--steps", "30", "--learning-rate", "1e30",
                             "--clipnorm", "null", "--warmup-steps", "0"))
    assert result.returncode == 2
    assert "non-finite at step" in result.stderr and "(step 3)" in result.stderr
    assert open(weights, "rb").read() == before
    assert json.load(open(os.path.join(out, "checkpoints", "training_metadata.json")))[
        "epoch"] == 1
