"""BERT's optimizer: the schedule's values, which variables decay, settings and errors."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.optimization import WarmupDecay, create_optimizer, decayed_variables
from tests.conftest import tiny_bert_config


def rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def test_warmup_then_linear_decay_to_zero():
    schedule = WarmupDecay(1e-3, decay_steps=100, warmup_steps=10)
    got = rates(schedule, [0, 4, 9, 10, 55, 99, 100, 150])
    want = [1e-4, 5e-4, 1e-3, 1e-3, 5e-4, 1e-3 * 1 / 90, 0.0, 0.0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def test_polynomial_and_constant_and_end_rate():
    poly = WarmupDecay(1.0, decay_steps=10, decay="polynomial", power=2.0, end_learning_rate=0.1)
    np.testing.assert_allclose(rates(poly, [0, 5, 10]), [1.0, 0.1 + 0.9 * 0.25, 0.1], rtol=1e-6)
    constant = WarmupDecay(2.0, decay_steps=10, warmup_steps=4, decay="constant")
    np.testing.assert_allclose(rates(constant, [0, 3, 4, 9, 20]), [0.5, 2.0, 2.0, 2.0, 2.0])


def test_schedule_serializes():
    schedule = WarmupDecay(3e-5, decay_steps=7, warmup_steps=2, decay="polynomial", power=0.5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert again.get_config() == schedule.get_config()


def test_exactly_kernels_and_embeddings_decay():
    model = kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config()))
    optimizer = create_optimizer(1e-4, num_train_steps=10)
    decayed = {v.path for v in decayed_variables(optimizer, model.trainable_variables)}
    kept = {v.path for v in model.trainable_variables} - decayed
    assert all(path.rsplit("/", 1)[-1] in ("kernel", "embeddings", "position_embeddings")
               for path in decayed), decayed
    assert all(path.rsplit("/", 1)[-1] in ("bias", "gamma", "beta", "output_bias")
               for path in kept), kept
    assert "masked_lm_head/output_bias" in kept
    assert "embeddings/token_embedding/embeddings" in " ".join(decayed)
    # Every LayerNorm and every bias is kept: 2 per block + embeddings + MLM head.
    assert sum(p.endswith("gamma") for p in kept) == 2 * 2 + 1 + 1


def test_settings_reach_the_optimizer():
    optimizer = create_optimizer(
        2e-5, num_train_steps=1000, warmup_fraction=0.06, weight_decay=0.01, clipnorm=1.0,
        gradient_accumulation_steps=4,
    )
    assert isinstance(optimizer, keras.optimizers.AdamW)
    schedule = optimizer._learning_rate
    # Keras passes the schedule its batch counter: 4 batches per update.
    assert schedule.warmup_steps == 4 * 60 and schedule.decay_steps == 4 * 1000
    assert optimizer.global_clipnorm == 1.0 and optimizer.weight_decay == 0.01
    assert optimizer.gradient_accumulation_steps == 4 and optimizer.epsilon == 1e-6


def test_accumulated_schedule_spans_num_train_steps_updates():
    optimizer = create_optimizer(1.0, num_train_steps=3, warmup_steps=0, clipnorm=None,
                                 gradient_accumulation_steps=2)
    variable = keras.Variable(np.ones(2, "float32"), name="kernel")
    optimizer.build([variable])
    rates = []
    for _ in range(6):  # 3 updates of 2 batches
        rates.append(float(optimizer.learning_rate))
        optimizer.apply_gradients([(np.ones(2, "float32"), variable)])
    assert int(optimizer.iterations) == 3
    np.testing.assert_allclose(rates, [1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6], atol=1e-6)
    assert float(optimizer.learning_rate) == 0.0


def test_weight_decay_is_decoupled_and_skips_biases():
    optimizer = create_optimizer(0.1, num_train_steps=10, warmup_steps=0, weight_decay=0.5,
                                 clipnorm=None, decay="constant")
    kernel = keras.Variable(np.ones((2,), "float32"), name="kernel")
    bias = keras.Variable(np.ones((2,), "float32"), name="bias")
    optimizer.build([kernel, bias])
    zero = np.zeros((2,), "float32")
    optimizer.apply_gradients([(zero, kernel), (zero, bias)])
    np.testing.assert_allclose(kernel.numpy(), 1 - 0.1 * 0.5)  # decayed, no gradient step
    np.testing.assert_allclose(bias.numpy(), 1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(peak_learning_rate=0.0, decay_steps=10), "peak_learning_rate"),
        (dict(peak_learning_rate=1.0, decay_steps=0), "decay_steps"),
        (dict(peak_learning_rate=1.0, decay_steps=10, warmup_steps=11), "warmup_steps"),
        (dict(peak_learning_rate=1.0, decay_steps=10, decay="cosine"), "decay"),
        (dict(peak_learning_rate=1.0, decay_steps=10, end_learning_rate=2.0), "end_learning_rate"),
    ],
)
def test_schedule_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WarmupDecay(**kwargs)


def test_create_optimizer_errors():
    with pytest.raises(ValueError, match="warmup_fraction"):
        create_optimizer(1e-4, 10, warmup_fraction=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        create_optimizer(1e-4, 10, weight_decay=-1)
    with pytest.raises(ValueError, match="clipnorm"):
        create_optimizer(1e-4, 10, clipnorm=0)


def _adam_gradients(steps):
    """Two variables' initial values and `steps` fixed pseudo-random gradients for them."""
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=shape).astype("float32") for shape in ((3, 5), (5,))]
    grads = [[rng.normal(size=v.shape).astype("float32") for v in initial] for _ in range(steps)]
    return initial, grads


def _adam_steps(optimizer, jit_compile, steps=4):
    """Weights of two variables after `steps` updates with fixed pseudo-random gradients."""
    initial, grads = _adam_gradients(steps)
    kernel = keras.Variable(initial[0], name="kernel")
    bias = keras.Variable(initial[1], name="bias")
    optimizer.build([kernel, bias])

    @tf.function(jit_compile=jit_compile)
    def apply(g_kernel, g_bias):
        optimizer.apply_gradients([(g_kernel, kernel), (g_bias, bias)])

    for g_kernel, g_bias in grads:
        apply(g_kernel, g_bias)
    return kernel.numpy(), bias.numpy()


def _torch_adamw_steps(learning_rate, weight_decay, beta_1, beta_2, epsilon, steps=4):
    import torch

    initial, grads = _adam_gradients(steps)
    parameters = [torch.nn.Parameter(torch.tensor(value)) for value in initial]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, betas=(beta_1, beta_2),
                                  eps=epsilon, weight_decay=weight_decay)
    for step_grads in grads:
        for parameter, grad in zip(parameters, step_grads):
            parameter.grad = torch.tensor(grad)
        optimizer.step()
    return [parameter.detach().numpy() for parameter in parameters]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fused_adamw_matches_torch_adamw(jit_compile):
    # torch's arithmetic (epsilon after the bias correction, as transformers
    # trains), not Keras' (epsilon before it): a large epsilon tells them apart.
    settings = dict(learning_rate=0.01, weight_decay=0.1, beta_1=0.8, beta_2=0.9, epsilon=1e-1)
    ours = _adam_steps(kbk.optimization.AdamW(**settings), jit_compile)
    for a, b in zip(ours, _torch_adamw_steps(**settings)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours[0], _torch_adamw_steps(**settings, steps=3)[0])
    assert not np.allclose(
        ours[0], _adam_steps(keras.optimizers.AdamW(**settings), False)[0], rtol=1e-4, atol=1e-5
    )


def test_fused_adamw_runs_the_fused_kernel():
    optimizer = kbk.optimization.AdamW(0.01)
    variable = keras.Variable(np.ones((4,), "float32"), name="kernel")
    optimizer.build([variable])
    graph = tf.function(lambda g: optimizer.apply_gradients([(g, variable)])).get_concrete_function(
        tf.TensorSpec((4,), tf.float32)).graph
    assert "ResourceApplyAdam" in {op.type for op in graph.get_operations()}


def test_fused_adamw_serializes_as_itself():
    optimizer = create_optimizer(1e-3, num_train_steps=10, warmup_steps=2)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    assert type(again) is kbk.optimization.AdamW
    assert again.get_config() == optimizer.get_config()


MIRRORED_ADAMW = textwrap.dedent("""
    import json
    import tensorflow as tf
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0],
        [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras, numpy as np
    from keras_bert_kit.optimization import AdamW

    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = x @ np.arange(8, dtype="float32").reshape(4, 2)
    weights = {}
    for name, strategy, optimizer in [
            ("keras", tf.distribute.get_strategy(), keras.optimizers.AdamW),
            ("ours", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), AdamW)]:
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
            model.compile(optimizer=optimizer(0.05, weight_decay=0.1), loss="mse")
        initial = model.weights[0].numpy()
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        weights[name] = [w.numpy() for w in model.weights]
    print(json.dumps({"max_diff": max(float(np.abs(a - b).max())
                                      for a, b in zip(weights["keras"], weights["ours"])),
                      "moved": float(np.abs(weights["ours"][0] - initial).max())}))
""")


def test_fused_adamw_under_mirrored_strategy_matches_one_device():
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_ADAMW], capture_output=True, text=True, timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["max_diff"] < 1e-5 and found["moved"] > 0.1, found
