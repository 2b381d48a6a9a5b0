"""Ids from an untrusted client are refused on every path, never answered wrongly.

Out-of-range ids (negative ones would wrap, int64 ones be truncated, a
padding mask of 7 be taken as a weight) raise `InvalidIdsError` eagerly and
`InvalidArgumentError`, naming the model, the input and the range, in
`predict` (numpy and tf.data), a `tf.function`, a reloaded SavedModel, and
`predict` compiled with `jit_compile=True`; in TFLite, `invoke` raises.
Shapes that disagree, empty sequences and object arrays get errors naming
the inputs.
"""

import re

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import keras_bert_kit as kbk
from keras_bert_kit.errors import InvalidIdsError
from keras_bert_kit.models.pretrainers import TARGET_KEYS
from tests.conftest import batch, encoder_inputs, random_inputs, tiny_bert_config
from tests.isolation import run_fuzz

BATCH, SEQ = 2, 8
VOCAB = tiny_bert_config().vocab_size


def _with(name, position, value, dtype="int32"):
    def change(inputs):
        inputs = {key: array.astype(dtype if key == name else "int32") for key, array in
                  inputs.items()}  # fmt: skip
        inputs[name][position] = value
        return inputs, name

    return change


# Case -> (the input it breaks, the range in the message).
BAD_IDS = {
    "input_ids=-1": (_with("input_ids", (1, 3), -1), VOCAB),
    "input_ids=vocab_size": (_with("input_ids", (0, 2), VOCAB), VOCAB),
    "input_ids=2**32+5": (_with("input_ids", (1, 1), 2**32 + 5, "int64"), VOCAB),
    "segment_ids=-1": (_with("segment_ids", (0, 4), -1), 2),
    "segment_ids=2": (_with("segment_ids", (1, 0), 2), 2),
    "padding_mask=7": (_with("padding_mask", (0, 1), 7), 2),
}
BAD_POSITIONS = {
    "masked_positions=seq": _with("masked_positions", (1, 0), SEQ),
    "masked_positions=-1": _with("masked_positions", (0, 2), -1),
    "masked_positions=2**32": _with("masked_positions", (0, 0), 2**32, "int64"),
}


def range_message(model, name, limit):
    return re.escape(f"{model.name}: `{name}` must hold values in [0, {limit})")


@pytest.fixture(scope="module")
def pretrainer():
    return kbk.BertPretrainer(kbk.BertEncoder(tiny_bert_config()))


@pytest.fixture(scope="module")
def encoder(pretrainer):
    return pretrainer.encoder


def good_inputs():
    inputs = random_inputs(tiny_bert_config(), batch_size=BATCH, seq_len=SEQ)
    inputs["padding_mask"][1, -2:] = 0
    return inputs


def bad_encoder_inputs(case):
    change, limit = BAD_IDS[case]
    inputs, name = change(encoder_inputs(good_inputs()))
    return inputs, name, limit


def dataset(inputs):
    return tf.data.Dataset.from_tensor_slices(inputs).batch(BATCH)


@pytest.fixture(scope="module")
def traced(encoder):
    """The encoder in a tf.function of unknown batch size and length (retraced per dtype)."""
    return tf.function(lambda inputs: encoder(inputs, training=False)["pooled_output"])


# -- out-of-range ids -------------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_IDS)
def test_eager_call_raises_invalid_ids_error(encoder, case):
    inputs, name, limit = bad_encoder_inputs(case)
    with pytest.raises(InvalidIdsError, match=range_message(encoder, name, limit)):
        encoder(inputs)


@pytest.mark.parametrize("source", ["numpy", "tf.data"])
@pytest.mark.parametrize("case", BAD_IDS)
def test_predict_raises(encoder, case, source):
    inputs, name, limit = bad_encoder_inputs(case)
    data = inputs if source == "numpy" else dataset(inputs)
    with pytest.raises(tf.errors.InvalidArgumentError, match=range_message(encoder, name, limit)):
        encoder.predict(data, verbose=0)


@pytest.mark.parametrize("case", BAD_IDS)
def test_traced_call_raises(encoder, traced, case):
    inputs, name, limit = bad_encoder_inputs(case)
    tensors = {key: tf.constant(value) for key, value in inputs.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match=range_message(encoder, name, limit)):
        traced(tensors)


@pytest.mark.parametrize("case", BAD_POSITIONS)
def test_masked_positions_out_of_range(pretrainer, case):
    inputs, name = BAD_POSITIONS[case](good_inputs())
    message = range_message(pretrainer, name, SEQ)
    with pytest.raises(InvalidIdsError, match=message):
        pretrainer(inputs)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        pretrainer.predict(inputs, verbose=0)
    # Unknown length: the bound is the sequence length the graph is given.
    traced = tf.function(lambda x: pretrainer(x)["mlm_logits"])
    tensors = {key: tf.constant(value) for key, value in inputs.items()}
    spec = {key: tf.TensorSpec([None, None], value.dtype) for key, value in tensors.items()}
    dynamic = re.escape(f"`{name}` must hold values in [0, sequence_length)")
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{dynamic}.*\\[{SEQ}\\]"):
        traced.get_concrete_function(spec)(tensors)


def test_internals_view_checks_ids(pretrainer):
    view = pretrainer.with_internals()
    inputs, name, limit = bad_encoder_inputs("input_ids=-1")
    inputs["masked_positions"] = good_inputs()["masked_positions"]
    traced = tf.function(lambda x: view(x)["hidden_states"][-1])
    tensors = {key: tf.constant(value) for key, value in inputs.items()}
    message = range_message(pretrainer, name, limit)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        traced(tensors)


def test_saved_model_refuses_bad_ids(encoder, tmp_path):
    module = tf.Module()
    module.encoder = encoder
    module.serve = tf.function(
        lambda inputs: encoder(inputs, training=False)["pooled_output"],
        input_signature=[{
            name: tf.TensorSpec([None, None], tf.int64, name=name) for name in encoder.input_names
        }],
    )  # fmt: skip
    tf.saved_model.save(module, str(tmp_path))
    reloaded = tf.saved_model.load(str(tmp_path))

    good = {k: tf.constant(v, tf.int64) for k, v in encoder_inputs(good_inputs()).items()}
    expected = encoder(good, training=False)["pooled_output"]
    np.testing.assert_allclose(reloaded.serve(good), expected, atol=1e-5)
    for case in BAD_IDS:
        inputs, name, limit = bad_encoder_inputs(case)
        tensors = {key: tf.constant(value, tf.int64) for key, value in inputs.items()}
        message = range_message(encoder, name, limit)
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            reloaded.serve(tensors)


def test_tflite_invoke_refuses_bad_ids(encoder):
    # TFLite converts fixed shapes with builtin ops only; it drops the
    # assertions, and its GATHER refuses the ids instead.
    signature = {name: tf.TensorSpec([BATCH, SEQ], tf.int64, name=name)
                 for name in encoder.input_names}  # fmt: skip
    forward = tf.function(lambda inputs: encoder(inputs, training=False)["pooled_output"])
    # Without a trackable object, the converter freezes the weights into
    # constants (with one, it keeps variables the interpreter never sets).
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [forward.get_concrete_function(signature)]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    inputs_by_name = {detail["name"]: detail["index"] for detail in interpreter.get_input_details()}
    output = interpreter.get_output_details()[0]["index"]

    def invoke(inputs):
        for name, value in inputs.items():
            index = next(i for key, i in inputs_by_name.items() if name in key)
            interpreter.set_tensor(index, value.astype(np.int64))
        interpreter.invoke()
        return interpreter.get_tensor(output)

    good = encoder_inputs(good_inputs())
    expected = encoder(good, training=False)["pooled_output"]
    np.testing.assert_allclose(invoke(good), expected, atol=1e-4)
    for case in BAD_IDS:
        inputs, _, _ = bad_encoder_inputs(case)
        with pytest.raises(RuntimeError, match="gather index out of bounds"):
            invoke(inputs)


def test_predict_compiled_with_xla_still_checks(pretrainer):
    # The predict and test steps are built without XLA, which would compile
    # the assertions away; training keeps it, and trains through the checks.
    pretrainer.compile(jit_compile=True)
    try:
        data = tf.data.Dataset.from_tensors(batch(tiny_bert_config()))
        history = pretrainer.fit(data, shuffle=False, verbose=0)
        assert np.isfinite(history.history["loss"][-1])
        for case in ("input_ids=-1", "padding_mask=7"):
            inputs, name, limit = bad_encoder_inputs(case)
            inputs["masked_positions"] = good_inputs()["masked_positions"]
            message = range_message(pretrainer, name, limit)
            with pytest.raises(tf.errors.InvalidArgumentError, match=message):
                pretrainer.predict(inputs, verbose=0)
            targets = {k: v[:BATCH] for k, v in batch(tiny_bert_config()).items()
                       if k in TARGET_KEYS}  # fmt: skip
            with pytest.raises(tf.errors.InvalidArgumentError, match=message):
                pretrainer.evaluate({**inputs, **targets}, verbose=0)
        assert pretrainer.jit_compile is True
        good = good_inputs()
        np.testing.assert_allclose(
            pretrainer.predict(good, verbose=0)["mlm_logits"],
            pretrainer(good)["mlm_logits"],
            atol=1e-5,
        )
    finally:
        pretrainer.compile(jit_compile=False)


def test_xla_compiles_the_assertion_away(encoder):
    """Why predict avoids XLA: a compiled call answers for an id it should refuse,
    reading it as the nearest valid id (-1 as 0).

    If this starts failing, XLA honours assertions: update the README.
    """
    compiled = tf.function(
        lambda inputs: encoder(inputs, training=False)["pooled_output"], jit_compile=True
    )
    inputs, _, _ = bad_encoder_inputs("input_ids=-1")
    clamped = dict(inputs, input_ids=np.maximum(inputs["input_ids"], 0))
    np.testing.assert_allclose(
        compiled(inputs), encoder(clamped, training=False)["pooled_output"], atol=1e-5
    )


# -- shapes and dtypes ------------------------------------------------------------------


def test_zero_length_sequences(encoder, traced):
    empty = {name: np.zeros((2, 0), "int32") for name in encoder.input_names}
    with pytest.raises(ValueError, match="`input_ids` has sequence length 0; every sequence"):
        encoder(empty)
    spec = {name: tf.TensorSpec([None, None], tf.int32) for name in encoder.input_names}
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=re.escape("sequence length of `input_ids` must lie in [1, 64]") + r".*\[2 0\]",
    ):
        traced.get_concrete_function(spec)({k: tf.constant(v) for k, v in empty.items()})


def test_no_masked_positions(pretrainer):
    inputs = dict(good_inputs(), masked_positions=np.zeros((BATCH, 0), "int32"))
    outputs = pretrainer.predict(inputs, verbose=0)
    assert outputs["mlm_logits"].shape == (BATCH, 0, VOCAB)
    assert outputs["nsp_logits"].shape == (BATCH, 2)


@pytest.mark.parametrize("axis", [0, 1])
def test_inputs_of_different_shapes(encoder, traced, axis):
    inputs = encoder_inputs(good_inputs())
    short = np.ones((1, SEQ), "int32") if axis == 0 else np.ones((BATCH, SEQ - 3), "int32")
    inputs["padding_mask"] = short
    what = ("batch size", "sequence length")[axis]
    message = re.escape(
        f"inputs disagree on {what}: `input_ids` has shape (2, 8), `padding_mask` has shape "
        f"{short.shape}."
    )
    with pytest.raises(ValueError, match=message):
        encoder(inputs)
    spec = {name: tf.TensorSpec([None, None], tf.int32) for name in encoder.input_names}
    short_shape = re.escape(str(list(short.shape)).replace(",", ""))  # as TF prints it
    dynamic = re.escape(
        "inputs must agree on batch size and sequence length; `input_ids` has shape"
    ) + rf".*\[2 8\].*`padding_mask` has shape.*{short_shape}"
    with pytest.raises(tf.errors.InvalidArgumentError, match=dynamic):
        traced.get_concrete_function(spec)({k: tf.constant(v) for k, v in inputs.items()})


def test_masked_positions_of_another_batch_size(pretrainer):
    inputs = good_inputs()
    inputs["masked_positions"] = inputs["masked_positions"][:1]
    with pytest.raises(ValueError, match=re.escape(
        "inputs disagree on batch size: `input_ids` has shape (2, 8), `masked_positions` has "
        "shape (1, 3)."
    )):  # fmt: skip
        pretrainer(inputs)


@pytest.mark.parametrize(
    "bad_value",
    [
        np.array([[1, "a"] + [2] * (SEQ - 2)] * BATCH, dtype=object),
        np.array([list(range(SEQ))] * BATCH, dtype=object),
        [[1, 2, 3], [1, 2]],
    ],
    ids=["mixed object array", "int object array", "ragged lists"],
)
def test_object_and_ragged_data_names_the_input(encoder, bad_value):
    inputs = encoder_inputs(good_inputs())
    inputs["segment_ids"] = bad_value
    message = r"`segment_ids` is (a numpy array of dtype object|not a rectangular array)"
    with pytest.raises(ValueError, match=message):
        encoder(inputs)
    with pytest.raises(ValueError, match=message):
        encoder.predict(inputs, verbose=0)


def test_rectangular_lists_are_taken(encoder):
    inputs = encoder_inputs(good_inputs())
    as_lists = {name: value.tolist() for name, value in inputs.items()}
    np.testing.assert_allclose(
        encoder(as_lists)["pooled_output"], encoder(inputs)["pooled_output"], atol=1e-6
    )


# -- fuzzing ----------------------------------------------------------------------------


def test_fuzz_encoder_ids():
    report = run_fuzz("tests.models.fuzz_ids", "encoder_ids", max_examples=40, memory_mb=2048)
    assert report.failure is None, report.failure
    assert report.cases == 40
    assert set(report.outcomes) == {"answered", "refused"}, report.outcomes
