import gc
import json
import os
import socket
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_bert_kit as kbk  # noqa: E402


TINY_SIZES = dict(
    vocab_size=300,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    intermediate_size=64,
    max_sequence_length=64,
)


def tiny_bert_config(**overrides):
    return kbk.BertConfig(**{**TINY_SIZES, **overrides})


def tiny_distilbert_config(**overrides):
    return kbk.DistilBertConfig(**{**TINY_SIZES, **overrides})


def random_inputs(config, batch_size=3, seq_len=12, num_predictions=3, seed=0, lengths=None):
    """Id inputs with right padding, segments and masked positions at real tokens."""
    rng = np.random.default_rng(seed)
    if lengths is None:
        lengths = rng.integers(num_predictions + 1, seq_len + 1, size=batch_size)
        lengths[0] = seq_len
    lengths = np.asarray(lengths)
    padding_mask = (np.arange(seq_len)[None, :] < lengths[:, None]).astype("int32")
    input_ids = rng.integers(1, config.vocab_size, size=(batch_size, seq_len)) * padding_mask
    inputs = {"input_ids": input_ids.astype("int32"), "padding_mask": padding_mask}
    if isinstance(config, kbk.BertConfig):
        segment_ids = (np.arange(seq_len)[None, :] >= (lengths[:, None] // 2)).astype("int32")
        inputs["segment_ids"] = segment_ids * padding_mask
    inputs["masked_positions"] = np.stack(
        [np.sort(rng.choice(n, num_predictions, replace=False)) for n in lengths]
    ).astype("int32")
    return inputs


def batch(config, batch_size=4, seed=0):
    """A pretraining batch as the pipeline makes it: inputs and targets in one dict."""
    inputs = random_inputs(config, batch_size=batch_size, num_predictions=3, seed=seed)
    rng = np.random.default_rng(seed)
    inputs["masked_ids"] = rng.integers(1, config.vocab_size, (batch_size, 3)).astype("int32")
    weights = np.ones((batch_size, 3), "float32")
    weights[1, 2] = 0.0  # a padded prediction slot
    inputs["masked_weights"] = weights
    inputs["nsp_label"] = (np.arange(batch_size) % 2).astype("int32")
    return inputs


def randomize_weights(model, seed=0):
    """Gives every variable of a Keras 3 or tf_keras model random values.

    Fresh models have zero biases and unit LayerNorm scales, which would hide a
    bias or gamma/beta loaded into the wrong place. The scale (0.15) makes
    feed-forward pre-activations O(1), where exact and tanh GELU differ.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.normal(0.0, 0.15, variable.shape)
        if "gamma" in variable.name:  # Keras 3 "gamma", tf_keras ".../gamma:0"
            value += 1.0
        variable.assign(value.astype("float32"))


def max_abs_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, "float64") - np.asarray(b, "float64"))))


def encoder_inputs(inputs):
    return {k: v for k, v in inputs.items() if k != "masked_positions"}


def freeze_long_lived_objects():
    """Takes the objects alive now out of the garbage collector's full passes.

    Each test ends with `clear_session`, a full collection; with TensorFlow,
    Keras, torch and transformers loaded that walks half a million module-level
    objects (0.2-0.5 s a test). Called right after a collection, when every
    tracked object is reachable, and again only when new modules were imported:
    new garbage is still collected, and frozen objects are still freed when
    their reference count drops.
    """
    global _modules_when_frozen
    if len(sys.modules) != _modules_when_frozen:
        gc.freeze()
        _modules_when_frozen = len(sys.modules)


_modules_when_frozen = 0
gc.collect()
freeze_long_lived_objects()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_dtype_policy("float32")
    keras.backend.clear_session()
    freeze_long_lived_objects()


@pytest.fixture(params=["bert", "distilbert"])
def architecture(request):
    """(config, encoder class, pretrainer class) for each architecture."""
    if request.param == "bert":
        return tiny_bert_config(), kbk.BertEncoder, kbk.BertPretrainer
    return tiny_distilbert_config(), kbk.DistilBertEncoder, kbk.DistilBertPretrainer


# -- real assets (session-scoped: built once) ---------------------------------


@pytest.fixture(scope="session")
def bert_vocab_path():
    from keras_bert_kit.assets import bert_uncased_vocab_path

    return bert_uncased_vocab_path()


@pytest.fixture(scope="session")
def uncased_tokenizer(bert_vocab_path):
    return kbk.BertTokenizer(bert_vocab_path)


@pytest.fixture(scope="session")
def news_articles():
    from keras_bert_kit.datasets import load_news_articles

    return load_news_articles()


@pytest.fixture(scope="session")
def hf_uncased(bert_vocab_path):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab_file=bert_vocab_path, do_lower_case=True)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_TWO_DEVICES = """
import json, os, sys
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
import keras, numpy as np
import keras_bert_kit as kbk
sys.path.insert(0, os.getcwd())
"""

_COMPARE = """
weights = {}
for name, strategy in [("one", tf.distribute.get_strategy()),
                       ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))]:
    keras.utils.set_random_seed(0)
    weights[name] = train(strategy)
    print(name, strategy.num_replicas_in_sync, file=sys.stderr)
diff = max(float(np.abs(a - b).max()) for a, b in zip(weights["one"], weights["mirrored"]))
print(json.dumps({"max_diff": diff}))
"""


def mirrored_vs_one_device(script):
    """The largest weight difference between training on one device and on two replicas.

    `script` defines `train(strategy)`, which builds and trains a model under
    `strategy` and returns its weights as arrays. It runs in a fresh process
    whose CPU is split into two logical devices (that must happen before
    TensorFlow starts), once with the default strategy and once with
    `MirroredStrategy` over both devices.
    """
    result = subprocess.run(
        [sys.executable, "-c", _TWO_DEVICES + textwrap.dedent(script) + _COMPARE],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored 2" in result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["max_diff"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(args_for, count):
    """Starts `count` processes, `args_for(index)` each; returns their (code, stderr)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    jobs = [subprocess.Popen(args_for(i), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(count)]
    results = []
    try:
        for job in jobs:
            _, stderr = job.communicate(timeout=600)
            results.append((job.returncode, stderr))
    finally:
        for job in jobs:
            job.kill()
    return results
