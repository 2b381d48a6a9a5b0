"""MultiWorkerMirroredStrategy: 2 worker processes on localhost train like one device."""

import json
import os
import sys
import textwrap

import numpy as np
import pytest

from keras_bert_kit import distribute
from tests.conftest import free_ports, start_workers

# `train(index, ports, out)`: worker `index` of a 2-worker cluster, or one
# device for index -1; run as a script, one worker process. SGD and no
# dropout, so the same global batch gives the same update however it is split.
WORKER = textwrap.dedent("""
    import json, os, sys


    def train(index, ports, out):
        if index >= 0:
            os.environ["TF_CONFIG"] = json.dumps({
                "cluster": {"worker": [f"localhost:{port}" for port in ports]},
                "task": {"type": "worker", "index": index}})
        import numpy as np
        import tensorflow as tf
        import keras
        import keras_bert_kit as kbk
        from keras_bert_kit import distribute

        strategy = (tf.distribute.MultiWorkerMirroredStrategy() if index >= 0
                    else tf.distribute.get_strategy())
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        n, length, predictions = 32, 16, 4
        data = {
            "input_ids": rng.integers(5, 100, (n, length)).astype("int32"),
            "segment_ids": (np.arange(length) >= 8).astype("int32")[None].repeat(n, 0),
            "padding_mask": np.ones((n, length), "int32"),
            "masked_positions": rng.integers(1, length, (n, predictions)).astype("int32"),
            "masked_ids": rng.integers(5, 100, (n, predictions)).astype("int32"),
            "masked_weights": (rng.random((n, predictions)) < 0.8).astype("float32"),
            "nsp_label": rng.integers(0, 2, (n,)).astype("int32"),
        }
        dataset = tf.data.Dataset.from_tensor_slices(data).batch(8, drop_remainder=True)
        config = kbk.config_from_preset("bert_tiny").replace(
            vocab_size=100, dropout_rate=0.0, attention_dropout_rate=0.0)
        with strategy.scope():
            model = kbk.BertPretrainer(kbk.BertEncoder(config))
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        history = model.fit(dataset, epochs=2, verbose=0)
        scores = model.evaluate(dataset, return_dict=True, verbose=0)
        np.savez(os.path.join(out, f"weights_{index}.npz"), *model.get_weights())
        with open(os.path.join(out, f"logs_{index}.json"), "w") as f:
            json.dump({"history": history.history, "eval": scores,
                       "replicas": strategy.num_replicas_in_sync,
                       "worker_index": distribute.worker_index(strategy),
                       "is_chief": distribute.is_chief(strategy)}, f)


    if __name__ == "__main__":
        train(int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3])
""")


def load(out, index):
    weights = np.load(os.path.join(out, f"weights_{index}.npz"))
    return [weights[f"arr_{i}"] for i in range(len(weights.files))], json.load(
        open(os.path.join(out, f"logs_{index}.json")))


def test_two_workers_train_in_step_and_match_one_device(tmp_path):
    ports = ",".join(map(str, free_ports(2)))
    script = [sys.executable, "-c", WORKER]
    for code, stderr in start_workers(lambda i: script + [str(i), ports, str(tmp_path)], 2):
        assert code == 0, stderr[-3000:]
    # One device: in this process (TensorFlow is loaded here already).
    one_device = {"__name__": "one_device"}
    exec(compile(WORKER, "<worker>", "exec"), one_device)
    one_device["train"](-1, [], str(tmp_path))

    (chief, chief_logs), (other, other_logs), (single, single_logs) = (
        load(tmp_path, i) for i in (0, 1, -1))
    assert chief_logs["replicas"] == other_logs["replicas"] == 2
    assert (chief_logs["worker_index"], chief_logs["is_chief"]) == (0, True)
    assert (other_logs["worker_index"], other_logs["is_chief"]) == (1, False)
    # Both workers end with identical weights and logs...
    for a, b in zip(chief, other):
        np.testing.assert_array_equal(a, b)
    assert chief_logs["history"] == other_logs["history"]
    assert chief_logs["eval"] == other_logs["eval"]
    # ...and those of one device training on the same global batches.
    assert max(float(np.abs(a - b).max()) for a, b in zip(chief, single)) < 1e-5
    for key, values in single_logs["history"].items():
        np.testing.assert_allclose(chief_logs["history"][key], values, rtol=1e-5, atol=1e-6)
    for key, value in single_logs["eval"].items():
        assert chief_logs["eval"][key] == pytest.approx(value, rel=1e-5, abs=1e-6)


def test_a_single_process_is_the_chief():
    assert distribute.worker_index() == 0
    assert distribute.is_chief()
    assert not distribute.in_multi_worker_mode()
