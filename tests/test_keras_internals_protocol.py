"""The Keras internals of `keras_bert_kit.keras_internals_protocol` still behave as relied on."""

import keras
import numpy as np

from keras_bert_kit.keras_internals_protocol import schedule_step


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
