"""One test harness for every registered layer and model, as keras-hub's `run_layer_test`.

`run_layer_test` checks what each layer of the package promises:
registration under the package's name; a config that mirrors the
constructor and survives `from_config`; output shapes, eager and symbolic;
a `.keras` save and load that computes the same outputs; and the dtype
policies: float32 everywhere under "float32", and under "mixed_bfloat16"
float32 variables with outputs of the expected dtypes (the compute dtype
unless a layer promises float32, e.g. logits or attention probabilities).
`run_model_test` does the same for models. Inputs and outputs may be
tensors, tuples, lists or dicts.
"""

import inspect

import keras
import numpy as np

PACKAGE = "keras_bert_kit"


def _shapes(tree):
    return keras.tree.map_structure(lambda x: tuple(x.shape), tree)


def _assert_close(actual, expected, atol=1e-5):
    for a, e in zip(keras.tree.flatten(actual), keras.tree.flatten(expected)):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a).astype("float64"),
            keras.ops.convert_to_numpy(e).astype("float64"),
            atol=atol,
        )


def _float_dtypes(tree):
    return [
        keras.backend.standardize_dtype(x.dtype) for x in keras.tree.flatten(tree)
        if "float" in keras.backend.standardize_dtype(x.dtype)
    ]


def check_output_dtypes(outputs, expected, what):
    """Every float output has dtype `expected`: one name, or one per float output in order."""
    dtypes = _float_dtypes(outputs)
    expected = [expected] * len(dtypes) if isinstance(expected, str) else list(expected)
    assert dtypes == expected, f"{what}: float outputs are {dtypes}, expected {expected}."


def check_variable_dtypes(obj, what):
    dtypes = {v.path: v.dtype for v in obj.weights if v.dtype != "float32"}
    assert not dtypes, f"{what} keeps variables of other dtypes than float32: {dtypes}."


def check_registration(cls):
    name = keras.saving.get_registered_name(cls)
    assert name == f"{PACKAGE}>{cls.__name__}", f"{cls.__name__} is registered as {name!r}."


def check_config(obj, cls=None, ignored=("self", "args", "kwargs")):
    """`get_config` names every constructor parameter and rebuilds an equal object."""
    cls = cls or type(obj)
    config = obj.get_config()
    parameters = [
        name for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in ignored and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing = [name for name in parameters if name not in config]
    assert not missing, f"{cls.__name__}.get_config() lacks constructor arguments {missing}."
    rebuilt = cls.from_config(config)
    assert rebuilt.get_config() == config, f"{cls.__name__}: from_config changed the config."
    return rebuilt


def _functional(layer, args, call_kwargs):
    inputs = keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=(None,) + tuple(x.shape[1:]), dtype=x.dtype), args
    )
    return keras.Model(inputs, layer(*inputs, **call_kwargs))


def run_layer_test(layer_cls, init_kwargs, args, tmp_path, call_kwargs=None,
                   expected_output_shape=None, run_save=True, atol=1e-5,
                   mixed_output_dtype="bfloat16"):
    """Runs every check on `layer_cls(**init_kwargs)` called as `layer(*args, **call_kwargs)`.

    `mixed_output_dtype`: the dtype of the float outputs under
    "mixed_bfloat16", one name or one per float output (flattened order).
    """
    call_kwargs = call_kwargs or {}
    name = layer_cls.__name__
    check_registration(layer_cls)
    layer = layer_cls(**init_kwargs)
    outputs = layer(*args, **call_kwargs)
    if expected_output_shape is not None:
        assert _shapes(outputs) == expected_output_shape
    check_output_dtypes(outputs, "float32", f"{name} under float32")
    check_variable_dtypes(layer, f"{name} under float32")
    check_config(layer)
    if run_save:
        model = _functional(layer, args, call_kwargs)
        symbolic = keras.tree.map_structure(lambda x: tuple(x.shape)[1:], model.outputs)
        eager = keras.tree.map_structure(lambda x: tuple(x.shape)[1:], keras.tree.flatten(outputs))
        assert symbolic == eager, f"{name}: symbolic output shapes {symbolic}, eager {eager}."
        path = str(tmp_path / f"{layer_cls.__name__}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        _assert_close(loaded(list(args) if len(args) > 1 else args[0]), model(
            list(args) if len(args) > 1 else args[0]), atol)
    mixed = layer_cls(**init_kwargs, dtype="mixed_bfloat16")
    mixed_outputs = mixed(*args, **call_kwargs)
    check_variable_dtypes(mixed, f"{name} under mixed_bfloat16")
    assert mixed.compute_dtype == "bfloat16"
    assert _shapes(mixed_outputs) == _shapes(outputs)
    check_output_dtypes(mixed_outputs, mixed_output_dtype, f"{name} under mixed_bfloat16")
    for value in keras.tree.flatten(mixed_outputs):
        if "float" in str(value.dtype):
            assert np.isfinite(keras.ops.convert_to_numpy(value).astype("float32")).all()
    return layer


def run_model_test(model_fn, inputs, tmp_path, atol=1e-5, mixed_output_dtype=None):
    """Registration, config round trip, `.keras` round trip and mixed precision of `model_fn()`.

    `mixed_output_dtype`: as for `run_layer_test`; None checks only that the
    outputs are floats of some width.
    """
    model = model_fn()
    name = type(model).__name__
    check_registration(type(model))
    check_config(model)
    expected = model(inputs)
    check_output_dtypes(expected, "float32", f"{name} under float32")
    check_variable_dtypes(model, f"{name} under float32")
    path = str(tmp_path / f"{type(model).__name__}.keras")
    model.save(path)
    _assert_close(keras.saving.load_model(path)(inputs), expected, atol)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = model_fn()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    mixed_outputs = mixed(inputs)
    check_variable_dtypes(mixed, f"{name} under mixed_bfloat16")
    assert _shapes(mixed_outputs) == _shapes(expected)
    if mixed_output_dtype is not None:
        check_output_dtypes(mixed_outputs, mixed_output_dtype, f"{name} under mixed_bfloat16")
    return model
