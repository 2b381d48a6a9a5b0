"""Rebuilding objects whose configs hold other serialized Keras objects."""

import keras


def from_config_with_objects(cls, config, keys):
    """`cls(**config)`, after deserializing the Keras objects stored under `keys`.

    A key whose value is None (e.g. a task without a preprocessor) stays None.
    """
    config = dict(config)
    for key in keys:
        if config.get(key) is not None:
            config[key] = keras.saving.deserialize_keras_object(config[key])
    return cls(**config)
