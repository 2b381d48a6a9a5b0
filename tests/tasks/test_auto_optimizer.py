"""compile()'s "auto" optimizer: every `fit` run gets its own warmup and decay."""

import keras
import numpy as np
import pytest

from keras_bert_kit.optimization import WarmupDecay
from keras_bert_kit.tasks import SequenceClassifier
from tests.conftest import mirrored_vs_one_device
from tests.tasks.conftest import tiny_encoder


def features(n=8, length=6):
    rng = np.random.default_rng(0)
    x = {
        "input_ids": rng.integers(1000, 2000, (n, length)).astype("int32"),
        "segment_ids": np.zeros((n, length), "int32"),
        "padding_mask": np.ones((n, length), "int32"),
    }
    return x, np.arange(n) % 2


def test_a_second_fit_trains_with_a_fresh_schedule_and_kept_moments():
    model = SequenceClassifier(tiny_encoder(), num_classes=2, dropout=0.0)
    model.compile(learning_rate=1e-3, warmup_fraction=0.5)
    x, y = features()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps: decays to 0
    optimizer = model.optimizer
    assert float(optimizer.learning_rate) == 0.0
    assert any(np.any(keras.ops.convert_to_numpy(v)) for v in optimizer.variables[2:])
    before = [w.copy() for w in model.get_weights()]

    rates = []
    rate_at_start = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: rates.append(float(model.optimizer.learning_rate))
    )
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[rate_at_start])

    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    assert isinstance(schedule, WarmupDecay)
    assert schedule.start_step == 2 and schedule.decay_steps == 4 and schedule.warmup_steps == 2
    # Warmup then decay over the second run's 4 steps.
    np.testing.assert_allclose(rates, [5e-4, 1e-3, 1e-3, 5e-4], rtol=1e-6)
    after = model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    # The same optimizer trained on: its moments and step count carried over.
    assert model.optimizer is optimizer and int(optimizer.iterations) == 6


def test_schedule_start_step_serializes():
    schedule = WarmupDecay(1e-3, decay_steps=4, warmup_steps=2, start_step=10)
    again = WarmupDecay.from_config(schedule.get_config())
    assert again.start_step == 10
    np.testing.assert_allclose(float(again(10)), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(float(again(13)), 5e-4, rtol=1e-6)


def test_a_reloaded_task_keeps_its_moments_and_gets_a_fresh_schedule(tmp_path):
    model = SequenceClassifier(tiny_encoder(), num_classes=2, dropout=0.0)
    model.compile(learning_rate=1e-3, warmup_fraction=0.5)
    x, y = features()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps: decays to 0
    path = str(tmp_path / "task.keras")
    model.save(path)

    loaded = keras.saving.load_model(path)
    assert int(loaded.optimizer.iterations) == 2
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(saved, restored)
    before = [w.copy() for w in loaded.get_weights()]
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)
    schedule = keras.optimizers.schedules.deserialize(loaded.optimizer.get_config()["learning_rate"])
    assert schedule.start_step == 2 and schedule.decay_steps == 2
    assert any(not np.array_equal(a, b) for a, b in zip(before, loaded.get_weights()))


def test_a_bad_warmup_fraction_is_refused_at_compile():
    model = SequenceClassifier(tiny_encoder(), num_classes=2)
    with pytest.raises(ValueError, match="warmup_fraction"):
        model.compile(warmup_fraction=1.5)


def test_a_resumed_run_spans_the_epochs_it_runs():
    model = SequenceClassifier(tiny_encoder(), num_classes=2, dropout=0.0)
    model.compile(learning_rate=1e-3)
    x, y = features()
    model.fit(x, y, batch_size=4, epochs=3, initial_epoch=2, verbose=0)  # 1 epoch of 2 steps
    schedule = model.optimizer.get_config()["learning_rate"]["config"]
    assert (schedule["start_step"], schedule["decay_steps"]) == (0, 2)
    assert int(model.optimizer.iterations) == 2


MIRRORED = """
from keras_bert_kit.tasks import SequenceClassifier
from tests.tasks.conftest import tiny_encoder
from tests.tasks.test_auto_optimizer import features

def train(strategy):
    with strategy.scope():
        model = SequenceClassifier(tiny_encoder(), num_classes=2, dropout=0.0)
        model.compile(learning_rate=1e-3)
    x, y = features()
    for _ in range(2):  # the second run reads the replicated step counter
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    return model.get_weights()
"""


def test_an_auto_compiled_task_trains_alike_on_two_replicas():
    # Keras builds a distributed model from the replicas' mean batch, which
    # the task's id checks would refuse as floats.
    assert mirrored_vs_one_device(MIRRORED) < 1e-5
