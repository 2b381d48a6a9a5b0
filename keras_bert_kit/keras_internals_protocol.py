"""The few Keras internals the models rely on, in one place.

Checked against Keras 3.15.1 with TensorFlow 2.20; the tests in
`tests/test_keras_internals_protocol.py` fail with "Keras internals changed:
..." when an upgrade breaks one of them.
"""

import keras


def schedule_step(optimizer):
    """The step `optimizer` passes its learning-rate schedule, as a Python int.

    Keras calls the schedule with its raw update counter (`_iterations`),
    which counts batches even under gradient accumulation, while the public
    `iterations` counts applied updates.
    """
    counter = getattr(optimizer, "_iterations", None)
    if counter is None:
        raise RuntimeError(
            "Keras internals changed: optimizers have no `_iterations` counter "
            f"(checked against Keras 3.15.1; this is Keras {keras.__version__})."
        )
    return int(counter.numpy())
