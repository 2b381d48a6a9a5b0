"""training.pretrain: a run end to end, resume after SIGKILL, NaN stop, settings."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

import keras_bert_kit as kbk

from tests.conftest import free_ports, start_workers
from training import common, pretrain

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
    with pytest.raises(SystemExit):
        pretrain.parse_args(["--config", config, "--mask-rate", "0"])
    assert pretrain.parse_args(["--config", config, "--steps", "9"])["steps"] == 9
    assert pretrain.parse_args(["--config", config, "--mask-rate", "0.4"])["mask_rate"] == 0.4
    for weight in ("-1", "nan", "heavy"):
        with pytest.raises(SystemExit):
            pretrain.parse_args(["--config", config, "--nsp-loss-weight", weight])
    assert pretrain.parse_args(["--config", config, "--nsp-loss-weight", "2"])[
        "nsp_loss_weight"] == 2


def test_schedule_settings_reach_the_optimizer(tmp_path, corpus):
    config, _ = config_file(tmp_path, corpus)
    settings = pretrain.parse_args(["--config", config, "--decay", "polynomial", "--power",
                                    "2", "--end-learning-rate", "1e-4", "--steps", "102"])
    optimizer = pretrain.make_optimizer(settings)
    schedule = optimizer._learning_rate
    assert (schedule.decay, schedule.power, schedule.end_learning_rate) == ("polynomial", 2.0,
                                                                            1e-4)
    # Halfway through the decay: end + (peak - end) * 0.5 ** 2.
    assert float(schedule(52)) == pytest.approx(1e-4 + (2e-3 - 1e-4) * 0.25, rel=1e-5)
    assert isinstance(optimizer, kbk.optimization.AdamW)
    constant = pretrain.make_optimizer(pretrain.parse_args(["--config", config, "--decay",
                                                            "constant"]))
    assert float(constant._learning_rate(5)) == pytest.approx(2e-3)
    for bad in (["--decay", "cosine"], ["--end-learning-rate", "0.01"]):
        with pytest.raises(SystemExit):
            pretrain.parse_args(["--config", config, *bad])


def test_model_setting_forms():
    preset = common.make_pretrainer("bert_tiny", 500, 64).encoder.config
    assert preset.vocab_size == 500 and preset.num_layers == 2
    changed = common.make_pretrainer({"preset": "bert_tiny", "dropout_rate": 0.0}, 500, 64)
    assert changed.encoder.config == preset.replace(dropout_rate=0.0)
    distil = common.make_pretrainer(dict(TINY_MODEL, architecture="distilbert"), 500, 64)
    assert type(distil).__name__ == "DistilBertPretrainer"
    with pytest.raises(ValueError, match="Unknown BertConfig field"):
        common.make_pretrainer({"preset": "bert_tiny", "dropout": 0.0}, 500, 64)
    with pytest.raises(ValueError, match="exceeds"):
        common.make_pretrainer("bert_tiny", 500, 1024)


def test_nsp_loss_weight_reaches_bert_and_is_refused_without_nsp():
    bert = common.make_pretrainer("bert_tiny", 500, 64)
    assert pretrain.loss_weights_for(bert, 2.5) == {"nsp_logits": 2.5}
    distil = common.make_pretrainer(dict(TINY_MODEL, architecture="distilbert"), 500, 64)
    assert pretrain.loss_weights_for(distil, 1.0) is None
    with pytest.raises(ValueError, match="no next-sentence head"):
        pretrain.loss_weights_for(distil, 2.5)


XLA_RUN = dict(jit_compile="auto", nsp_loss_weight=2.0)


@pytest.fixture(scope="module")
def xla_run(tmp_path_factory, corpus):
    """The output directory of a finished 6-step run (checkpoints at steps 3 and 6)."""
    config, out = config_file(tmp_path_factory.mktemp("xla_run"), corpus, **XLA_RUN)
    assert pretrain.main(["--config", config, "--quiet"]) == 0
    return out


def test_run_writes_outputs_with_xla_checked(xla_run):
    out = xla_run
    metrics = json.loads(open(os.path.join(out, "metrics.json")).read())
    assert metrics["xla"] is True and metrics["replicas"] == 1
    history = metrics["history"]
    assert history["loss"][-1] == pytest.approx(
        history["mlm_loss"][-1] + 2.0 * history["nsp_loss"][-1], rel=1e-4)
    assert {"mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy"} <= set(metrics["eval"])
    assert len(metrics["history"]["loss"]) == 2  # 6 steps, a checkpoint every 3
    # The held-out masks are fixed: the last validation is the final evaluation.
    assert metrics["history"]["val_nsp_accuracy"][-1] == metrics["eval"]["nsp_accuracy"]
    assert metrics["history"]["val_mlm_loss"][-1] == pytest.approx(metrics["eval"]["mlm_loss"])
    for name in ("pretrainer.keras", "encoder.keras", "vocab.txt", "curves.png"):
        assert os.path.exists(os.path.join(out, name))
    assert os.listdir(os.path.join(out, "logs", "train"))
    model = keras.saving.load_model(os.path.join(out, "pretrainer.keras"))
    assert int(model.optimizer.iterations.numpy()) == 6


def test_mixed_bfloat16_run_and_the_policy_is_restored(tmp_path, corpus):
    config, out = config_file(tmp_path, corpus, precision="mixed_bfloat16", steps=2,
                              checkpoint_every=2)
    assert pretrain.main(["--config", config, "--quiet"]) == 0
    assert keras.mixed_precision.dtype_policy().name == "float32"
    encoder = keras.saving.load_model(os.path.join(out, "encoder.keras"))
    assert encoder.dtype_policy.name == "mixed_bfloat16"
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert np.isfinite(metrics["eval"]["loss"])


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


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, corpus, xla_run):
    # A copy of a finished run (last checkpoint at step 6) is resumed with a
    # learning rate that makes the loss non-finite in its first step.
    config, out = config_file(tmp_path, corpus, **dict(XLA_RUN, jit_compile=False))
    shutil.copytree(xla_run, out)
    weights = os.path.join(out, "checkpoints", "latest.weights.h5")
    before = open(weights, "rb").read()
    result = run_job(command(config, "--steps", "30", "--learning-rate", "1e30",
                             "--clipnorm", "null", "--warmup-steps", "0"))
    assert result.returncode == 2
    assert "Resuming from the checkpoint at step 6" in result.stdout
    assert "non-finite at step" in result.stderr and "(step 6)" in result.stderr
    assert open(weights, "rb").read() == before
    assert json.load(open(os.path.join(out, "checkpoints", "training_metadata.json")))[
        "epoch"] == 2


def test_multi_worker_run_of_two_processes_ends_with_identical_weights(tmp_path, corpus):
    config, out = config_file(tmp_path, corpus, strategy="multi_worker", jit_compile="auto",
                              steps=4, checkpoint_every=2)
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}

    def worker(index):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        return ["env", f"TF_CONFIG={tf_config}", *command(config)]

    for code, stderr in start_workers(worker, 2):
        assert code == 0, stderr[-3000:]
    # XLA compiles no collectives for CPU devices: "auto" falls back and says so.
    assert "training runs in graph mode" in stderr
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["replicas"] == 2 and metrics["xla"] is False
    assert len(metrics["history"]["loss"]) == 2
    # The chief writes the run's outputs; the other worker only its checkpoints.
    other = os.path.join(out, "workers", "worker_1")
    assert os.path.exists(os.path.join(out, "pretrainer.keras"))
    assert sorted(os.listdir(other)) == ["checkpoints"]
    weights = [h5py.File(os.path.join(directory, "checkpoints", "latest.weights.h5"))
               for directory in (out, other)]
    names = []
    weights[0].visititems(lambda name, item: names.append(name)
                          if isinstance(item, h5py.Dataset) else None)
    assert len(names) > 20
    for name in names:
        np.testing.assert_array_equal(weights[0][name][()], weights[1][name][()])


def test_xla_with_several_cpu_replicas_is_refused_or_turned_off(capsys):
    class TwoCpuReplicas:
        num_replicas_in_sync = 2

    with pytest.raises(ValueError, match="XLA cannot compile"):
        common.resolve_xla(True, TwoCpuReplicas())
    assert common.resolve_xla("auto", TwoCpuReplicas()) is False
    assert "graph mode" in capsys.readouterr().err
    assert common.resolve_xla("auto", tf.distribute.get_strategy()) is True
    assert common.resolve_xla(False, tf.distribute.get_strategy()) is False
