"""The Keras internals of `keras_bert_kit.keras_internals` still behave as relied on."""

import inspect

import keras
import numpy as np
import tensorflow as tf

from keras_bert_kit.keras_internals import (
    accept_raw_inputs,
    adam_slots,
    attention_projections,
    creation_strategy,
    in_multi_worker_mode,
    resource_handle,
    schedule_step,
    uses_weight_decay,
)


def test_schedule_step_is_the_step_keras_passes_the_schedule():
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.1

    class Recording(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return schedule(int(keras.ops.convert_to_numpy(step)))

    optimizer = keras.optimizers.SGD(Recording(), gradient_accumulation_steps=2)
    variable = keras.Variable(np.ones(2, "float32"))
    optimizer.build([variable])
    for _ in range(3):
        optimizer.apply_gradients([(np.ones(2, "float32"), variable)])
    float(optimizer.learning_rate)
    assert seen and seen[-1] == schedule_step(optimizer), (
        "Keras internals changed: the optimizer no longer passes its raw batch counter "
        f"`_iterations` to the learning-rate schedule (saw {seen[-1:]}, expected "
        f"{schedule_step(optimizer)})."
    )
    assert schedule_step(optimizer) == 3, (
        "Keras internals changed: `_iterations` no longer counts batches under accumulation."
    )


def test_adam_slots_are_the_moments_keras_updates():
    variable = keras.Variable(np.ones(3, "float32"))
    optimizer = keras.optimizers.Adam(0.1)
    optimizer.build([variable])
    optimizer.apply_gradients([(np.full(3, 2.0, "float32"), variable)])
    momentum, velocity = adam_slots(optimizer, variable)
    # One Adam step from zero moments: m = (1 - beta_1) g, v = (1 - beta_2) g².
    np.testing.assert_allclose(momentum.numpy(), 0.1 * 2.0, rtol=1e-6, err_msg=(
        "Keras internals changed: `_momentums[_get_variable_index(v)]` is not Adam's m."))
    np.testing.assert_allclose(velocity.numpy(), 0.001 * 4.0, rtol=1e-6, err_msg=(
        "Keras internals changed: `_velocities[_get_variable_index(v)]` is not Adam's v."))


def test_resource_handle_reaches_the_tensorflow_variable():
    variable = keras.Variable(np.zeros(2, "float32"))
    tf.raw_ops.AssignVariableOp(resource=resource_handle(variable), value=tf.ones(2))
    assert variable.numpy().tolist() == [1.0, 1.0], (
        "Keras internals changed: a Keras variable's `.value.handle` is not its storage.")


def test_multi_worker_hook_exists_with_the_signature_overridden():
    hook = getattr(keras.Model, "_maybe_symbolic_build", None)
    assert hook is not None, "Keras internals changed: keras.Model has no _maybe_symbolic_build."
    parameters = list(inspect.signature(hook).parameters)
    assert parameters == ["self", "iterator", "data_batch"], (
        f"Keras internals changed: _maybe_symbolic_build takes {parameters}.")
    # Not instantiated here: a multi-worker strategy configures collectives for the process.
    from tensorflow.python.distribute import collective_all_reduce_strategy

    extended = collective_all_reduce_strategy.CollectiveAllReduceExtended
    assert callable(getattr(extended, "_in_multi_worker_mode", None)), (
        "Keras internals changed: MultiWorkerMirroredStrategy's extended has no "
        "_in_multi_worker_mode().")
    assert in_multi_worker_mode(tf.distribute.get_strategy()) is False


def test_accept_raw_inputs_lets_a_layer_take_python_text():
    class Echo(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            accept_raw_inputs(self)

        def call(self, x):
            return x

    pair = (["a", "b"], ["c", "d"])
    assert Echo()(pair) is pair, (
        "Keras internals changed: `_convert_input_args` / `_allow_non_tensor_positional_args` "
        "no longer pass Python arguments through unconverted.")


def test_uses_weight_decay_follows_the_exclusions():
    optimizer = keras.optimizers.AdamW(weight_decay=0.1)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    kernel = keras.Variable(np.ones(2, "float32"), name="kernel")
    bias = keras.Variable(np.ones(2, "float32"), name="bias")
    optimizer.build([kernel, bias])
    assert uses_weight_decay(optimizer, kernel) and not uses_weight_decay(optimizer, bias), (
        "Keras internals changed: `_use_weight_decay` no longer applies the exclusions.")


def test_creation_strategy_is_the_scope_a_model_was_made_in():
    def tiny_model():
        inputs = keras.Input((2,))
        return keras.Model(inputs, keras.layers.Dense(1)(inputs))

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        scoped = tiny_model()
    assert creation_strategy(scoped) is strategy and creation_strategy(tiny_model()) is None, (
        "Keras internals changed: `_distribute_strategy` is no longer the strategy whose scope "
        "a model was made in (None outside any scope).")


def test_attention_projections_compute_keras_multi_head_attention():
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
    x = np.random.default_rng(0).normal(size=(1, 4, 6)).astype("float32")
    expected = attention(x, x).numpy()
    dense = attention_projections(attention)
    query, key, value = (dense[part](x).numpy() for part in ("query", "key", "value"))
    scores = np.einsum("bqhd,bkhd->bhqk", query, key) / np.sqrt(3.0)
    probabilities = np.exp(scores - scores.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    mixed = np.einsum("bhqk,bkhd->bqhd", probabilities, value)
    np.testing.assert_allclose(dense["output"](mixed).numpy(), expected, atol=1e-5, err_msg=(
        "Keras internals changed: MultiHeadAttention's `_query_dense`, `_key_dense`, "
        "`_value_dense` and `_output_dense` no longer compute the layer."))


def test_frozen_function_keeps_names_and_outputs_without_variables():
    from keras_bert_kit.keras_internals import frozen_function

    weight = tf.Variable([[2.0], [3.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="features")])
    def score(features):
        return {"score": tf.matmul(features, weight)[:, 0], "count": tf.shape(features)[0]}

    frozen = frozen_function(score)
    concrete = frozen.get_concrete_function()
    assert not concrete.variables
    assert [s.name for s in concrete.structured_input_signature[0]] == ["features"]
    outputs = frozen(tf.constant([[1.0, 1.0], [0.0, 2.0]]))
    assert outputs["score"].numpy().tolist() == [5.0, 6.0] and int(outputs["count"]) == 2


def test_calibrate_with_custom_ops_lets_int8_calibration_run_tensorflow_text_kernels():
    import tensorflow_text as tf_text
    from tensorflow_text import tflite_registrar

    from keras_bert_kit.keras_internals import calibrate_with_custom_ops

    normalizer = tf_text.FastBertNormalizer(lower_case_nfd_strip_accents=True)
    wordpiece = tf_text.FastWordpieceTokenizer(["[UNK]", "hello", "ecole", "a"],
                                               no_pretokenization=False)
    weight = tf.Variable(tf.random.normal([1, 8]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def lengths(text):
        tokens = wordpiece.tokenize(normalizer.normalize(text))
        length = tf.cast(tokens.row_lengths(), tf.float32)
        return {"features": tf.matmul(tf.reshape(length, [-1, 1]), weight)}

    def samples():
        for text in ("Hello", "ÉCOLE", "a longer text"):
            yield [np.array([text.encode()], dtype=object)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [lengths.get_concrete_function()], lengths)
    converter.allow_custom_ops = True
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    calibrate_with_custom_ops(converter, tflite_registrar.SELECT_TFTEXT_OPS)
    assert converter.convert(), (
        "Keras internals changed: the TFLite calibrator no longer runs the custom ops "
        "registered through TargetSpec._experimental_custom_op_registerers.")


def test_the_first_fit_traces_the_train_step_once():
    from keras_bert_kit.keras_internals import OptimizerBuiltBeforeTracing

    class Plain(keras.Model):
        traces = 0

        def train_step(self, data):
            self.traces += 1  # Python runs once per trace of the step
            return super().train_step(data)

    class Prebuilt(OptimizerBuiltBeforeTracing, Plain):
        pass

    def traces(model_class):
        inputs = keras.Input((4,))
        model = model_class(inputs, keras.layers.Dense(2)(inputs))
        model.compile(optimizer="adam", loss="mse")
        model.fit(np.ones((8, 4)), np.zeros((8, 2)), epochs=1, batch_size=8, verbose=0)
        return model.traces

    # Keras 3.15 traces twice when the optimizer builds inside the first trace; if a
    # release stops doing that, the mixin can go.
    assert traces(Plain) == 2
    assert traces(Prebuilt) == 1
