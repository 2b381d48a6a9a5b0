"""Every private Keras and TensorFlow name the package relies on, in one place.

Checked against Keras 3.15.1 with TensorFlow 2.20.0 (the versions
requirements.txt pins). `tests/test_keras_internals.py` checks each one on
the real classes and fails with "Keras internals changed: ..." when an
upgrade moves or changes it; fix this module, and nothing else should need
to change.

- Optimizer slots and counters: the fused AdamW updates Keras' own slot
  variables in TensorFlow's `ResourceApplyAdam`; a task's schedule starts at
  the step Keras passes it.
- Multi-worker `fit` (tensorflow/tensorflow#72388): Keras 3 reduces a whole
  input batch across workers before the first step, which fails on a dict
  of per-replica tensors; `LocalReplicaSymbolicBuild` hands it one local
  replica's slice instead.
- The distiller's own `train_step` logs its total loss in the tracker Keras
  logs as "loss".
- Text layers take Python strings and tuples, which Keras must not convert
  to tensors before `call`.
- Checkpoint converters read the projections of Keras 3 and tf_keras
  `MultiHeadAttention` layers (keras-hub, Model Garden).
- bfloat16 exports freeze their weights into constants (TensorFlow's
  `convert_variables_to_constants_v2`, which has no public name in TF 2): with
  variables, mixed precision casts every weight on every call and oneDNN
  re-lays it out, which keeps the matrix products off AMX.
- int8 TFLite calibration of text-in models runs tensorflow-text's kernels:
  the converter takes custom-op registerers for its calibrator only through
  `TargetSpec._experimental_custom_op_registerers`.
"""

import keras
import tensorflow as tf

CHECKED_AGAINST = {"keras": "3.15.1", "tensorflow": "2.20.0"}


def _changed(what):
    return RuntimeError(
        f"Keras internals changed: {what} (checked against Keras "
        f"{CHECKED_AGAINST['keras']} / TensorFlow {CHECKED_AGAINST['tensorflow']}; this is "
        f"Keras {keras.__version__} / TensorFlow {tf.__version__})."
    )


# -- optimizers -----------------------------------------------------------------------


def adam_slots(optimizer, variable):
    """The first- and second-moment slot variables Keras' Adam keeps for `variable`."""
    try:
        index = optimizer._get_variable_index(variable)
        return optimizer._momentums[index], optimizer._velocities[index]
    except AttributeError as e:
        raise _changed(f"Adam slots are no longer `_momentums` / `_velocities`: {e}") from e


def resource_handle(variable):
    """The resource handle of a Keras variable's `tf.Variable`, for raw TensorFlow ops.

    Under `tf.distribute.Strategy.update` a distributed variable hands out the
    handle of the copy being updated.
    """
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


def uses_weight_decay(optimizer, variable):
    """Whether `optimizer` applies weight decay to `variable` (after its exclusions)."""
    try:
        return bool(optimizer._use_weight_decay(variable))
    except AttributeError as e:
        raise _changed(f"optimizers no longer have `_use_weight_decay`: {e}") from e


def schedule_step(optimizer):
    """The step `optimizer` passes its learning-rate schedule, as a Python int.

    Keras calls the schedule with its raw update counter (`_iterations`),
    which counts batches even under gradient accumulation, while the public
    `iterations` counts applied updates.
    """
    counter = getattr(optimizer, "_iterations", None)
    if counter is None:
        raise _changed("optimizers have no `_iterations` counter")
    return int(counter.numpy())


def in_multi_worker_mode(strategy):
    """Whether `strategy` spans several worker processes."""
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and strategy.extended._in_multi_worker_mode()


def creation_strategy(model):
    """The strategy whose scope `model` was made in; None if made outside any scope.

    The public `model.distribute_strategy` falls back to the default
    strategy, which cannot tell the two apart.
    """
    try:
        return model._distribute_strategy
    except AttributeError as e:
        raise _changed(
            f"models no longer keep their strategy in `_distribute_strategy`: {e}"
        ) from e


class LocalReplicaSymbolicBuild:
    """Mixin for `keras.Model`: builds from one local replica's batch under a strategy.

    Keras' TensorFlow trainer builds a model before its first step with
    `_maybe_symbolic_build(iterator, data_batch)`, reducing a whole batch with
    `strategy.reduce("MEAN", batch)`: under `MultiWorkerMirroredStrategy` that
    fails on a dict of per-replica tensors, and under `MirroredStrategy` it
    averages integer ids into floats, which a model checking its ids refuses.
    The batch is only wanted for its shapes and dtypes, so one local
    replica's slice serves.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = creation_strategy(self)
        if iterator is None or strategy is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            batch = next(batches)
            data_batch = tf.nest.map_structure(
                lambda value: strategy.experimental_local_results(value)[0], batch
            )
            break
        return super()._maybe_symbolic_build(data_batch=data_batch)


class OptimizerBuiltBeforeTracing:
    """Mixin for `keras.Model`: builds the optimizer before the train step is first traced.

    Without a distribution strategy, Keras 3.15's TensorFlow trainer defers
    building to the first trace of the train function, where the optimizer
    creates its variables; a `tf.function` that creates variables on its first
    trace is traced a second time, which doubled the cost of every first `fit`
    (about a second per layer). A built model's trainable variables are known
    before that trace, so the optimizer is built from them first. (Under a
    strategy Keras builds it before tracing, in the strategy's scope.)
    `tests/test_keras_internals.py` checks that the first `fit` traces once.
    """

    def make_train_function(self, force=False):
        if (self.built and creation_strategy(self) is None and self.optimizer is not None
                and not self.optimizer.built):
            self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force)


# -- layers ---------------------------------------------------------------------------


def accept_raw_inputs(layer):
    """Lets `layer` be called on Python strings, lists and tuples, unconverted.

    Keras converts a layer's positional arguments to tensors before `call`
    and refuses non-tensor ones; text layers take a string, a list of
    strings, or a tuple `(texts_a, texts_b)` that only they can interpret.
    """
    layer._convert_input_args = False
    layer._allow_non_tensor_positional_args = True


def attention_projections(attention):
    """The query, key, value and output `EinsumDense` layers of a `MultiHeadAttention`.

    Keras 3 and tf_keras (keras-hub, Model Garden) name them alike.
    """
    parts = ("query", "key", "value", "output")
    try:
        return {part: getattr(attention, f"_{part}_dense") for part in parts}
    except AttributeError as e:
        raise _changed(
            f"MultiHeadAttention no longer keeps `_<part>_dense` projections: {e}"
        ) from e


# -- export -------------------------------------------------------------------------


def frozen_function(function):
    """A `tf.function` equal to `function` (which has an input signature), weights as constants.

    The result has `function`'s input signature (the same input names) and
    returns the same structure; it holds no variables.
    """
    try:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )
    except ImportError as e:
        raise _changed(f"convert_variables_to_constants_v2 moved: {e}") from e
    concrete = function.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    specs = concrete.structured_input_signature[0]
    names = [spec.name for spec in specs]

    structure = concrete.structured_outputs

    @tf.function(input_signature=specs)
    def run(*args):
        # The frozen function returns its outputs flat, in `tf.nest` order.
        return tf.nest.pack_sequence_as(structure, frozen(**dict(zip(names, args))))

    return run


def calibrate_with_custom_ops(converter, registerers):
    """Lets `converter`'s int8 calibrator resolve the custom ops `registerers` add."""
    target_spec = converter.target_spec
    if not isinstance(getattr(target_spec, "_experimental_custom_op_registerers", None), list):
        raise _changed("TFLiteConverter's TargetSpec has no _experimental_custom_op_registerers")
    target_spec._experimental_custom_op_registerers = list(registerers)
