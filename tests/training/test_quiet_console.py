"""training.console: no line a user reads as a failure on a CPU-only machine, no error hidden."""

import os
import subprocess
import sys
import warnings

import tensorflow as tf
import yaml

import keras_bert_kit as kbk
from tests.conftest import batch, tiny_bert_config
from training import console

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What TensorFlow 2.20 and Keras 3 print on every run of a job on a machine without a GPU.
ALARMING = (
    "Unable to register cu",  # cuDNN, cuFFT, cuBLAS factories
    "failed call to cuInit",
    "Could not find cuda drivers",
    "cuda_diagnostics",
    "All log messages before absl::InitializeLog",
    "Compiled cluster using XLA",
    "`shuffle=True` was passed",
)

# Lines of the GPU probe as TensorFlow prints them (2.20, and the cuDNN/cuBLAS lines of
# 2.16-2.17 where the CUDA libraries are installed without a driver).
PROBE_LINES = [
    "2026-12-05 19:20:04.353966: E external/local_xla/xla/stream_executor/cuda/"
    "cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: "
    "UNKNOWN ERROR (303)",
    "2026-12-05 19:19:38.324368: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:31] Could "
    "not find cuda drivers on your machine, GPU will not be used.",
    "E0000 00:00:1734000000.123456    1234 cuda_dnn.cc:8310] Unable to register cuDNN factory: "
    "Attempting to register factory for plugin cuDNN when one has already been registered",
    "E0000 00:00:1734000000.123456    1234 cuda_blas.cc:1418] Unable to register cuBLAS factory",
    "2026-12-05 19:20:04.353966: I external/local_xla/xla/stream_executor/cuda/"
    "cuda_diagnostics.cc:137] retrieving CUDA diagnostic information for host: ci",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
]
REAL_LINES = [
    "2026-12-05 19:20:05.000000: E tensorflow/core/framework/op_kernel.cc:1843] OP_REQUIRES "
    "failed at strided_slice_op.cc:117 : INVALID_ARGUMENT: slice index 5 is out of bounds",
    "2026-12-05 19:20:05.000000: W tensorflow/core/kernels/data/cache_dataset_ops.cc:916] The "
    "calling iterator did not fully read the dataset being cached.",
    "E0000 00:00:1734000000.123456    1234 gpu_device.cc:2344] Cannot dlopen some GPU libraries.",
    "UserWarning: something the user must see",
]


def env_without_log_level():
    """The environment of a user who has not set TF_CPP_MIN_LOG_LEVEL (the tests' conftest does)."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def assert_quiet(stderr):
    alarming = [line for line in stderr.splitlines() if any(p in line for p in ALARMING)]
    assert not alarming, f"alarming lines {alarming} in stderr:\n{stderr}"


def test_probe_lines_are_dropped_and_every_other_line_kept():
    mixed = [line for pair in zip(REAL_LINES, PROBE_LINES) for line in pair] + PROBE_LINES[4:]
    data = "".join(f"{line}\n" for line in mixed).encode() + b"no newline at the end"
    kept = console.without_probe_lines(data).decode()
    assert kept == "".join(f"{line}\n" for line in REAL_LINES) + "no newline at the end"


def test_the_probe_is_hidden_only_without_a_gpu_driver_and_below_level_0(tmp_path):
    absent = (str(tmp_path / "nvidiactl"),)
    assert console.hides_gpu_probe({"TF_CPP_MIN_LOG_LEVEL": "2"}, absent)
    assert console.hides_gpu_probe({"TF_CPP_MIN_LOG_LEVEL": "1"}, absent)
    # The user asks for everything: the probe's lines are shown.
    assert not console.hides_gpu_probe({"TF_CPP_MIN_LOG_LEVEL": "0"}, absent)
    assert not console.hides_gpu_probe({"TF_CPP_MIN_LOG_LEVEL": "all"}, absent)  # TF reads 0
    # A driver is there: a failing probe is a real problem.
    (tmp_path / "nvidiactl").touch()
    assert not console.hides_gpu_probe({"TF_CPP_MIN_LOG_LEVEL": "2"}, absent)


def test_captured_stderr_is_replayed_without_the_probe_lines(capfd):
    with console.stderr_without_probe_lines():
        os.write(2, "".join(f"{line}\n" for line in PROBE_LINES[:2]).encode())
        print(REAL_LINES[0], file=sys.stderr)
        os.write(2, f"{REAL_LINES[1]}\n".encode())
    assert capfd.readouterr().err == f"{REAL_LINES[0]}\n{REAL_LINES[1]}\n"


def test_the_log_level_defaults_to_2_and_the_users_wins(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    console.quiet_console()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    console.quiet_console()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_fit_over_a_dataset_passes_no_shuffle_keras_would_ignore():
    config = tiny_bert_config(num_layers=1)
    model = kbk.BertPretrainer(kbk.BertEncoder(config))
    model.compile(jit_compile=False)
    dataset = tf.data.Dataset.from_tensors(batch(config))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(dataset, epochs=1, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]


def test_a_tiny_job_with_xla_prints_no_alarming_line(tmp_path, news_articles):
    (tmp_path / "news.txt").write_text("\n\n".join(news_articles[:20]) + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(dict(
        model=dict(architecture="bert", hidden_size=32, num_layers=1, num_heads=2,
                   intermediate_size=64, max_sequence_length=32),
        data=str(tmp_path), vocab="bert_uncased", max_seq_length=32, max_predictions_per_seq=4,
        eval_fraction=0.2, steps=2, batch_size=8, warmup_steps=1, checkpoint_every=2,
        jit_compile=True, out=str(tmp_path / "out"))))
    result = subprocess.run(
        [sys.executable, "-m", "training.pretrain", "--config", str(config), "--quiet"],
        cwd=ROOT, env=env_without_log_level(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "XLA on" in result.stdout  # so XLA compiled a cluster, and fit ran over a dataset
    assert_quiet(result.stderr)
