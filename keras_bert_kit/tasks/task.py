"""`Task`: the base of fine-tuning models: encoder + head, and a preprocessor for raw data.

As in keras-hub, a task is a functional `keras.Model` over the encoder's id
inputs, plus a `preprocessor` that turns raw data (strings, words, questions)
into those inputs. `fit`, `evaluate` and `predict` take raw data directly, or
already-preprocessed id dicts, or a `tf.data.Dataset` of either.

`compile()` with no arguments gives BERT's fine-tuning recipe: AdamW with
linear warmup then linear decay over the whole run (the step count is read
off the data when `fit` starts), no weight decay on LayerNorm and biases,
global-norm clipping, from-logits losses and the task's metrics.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_bert_kit.distribute import MultiWorkerFitMixin
from keras_bert_kit.keras_internals import schedule_step
from keras_bert_kit.layers import Dropout
from keras_bert_kit.models.graph import GraphModel
from keras_bert_kit.optimization import WarmupDecay, create_optimizer
from keras_bert_kit.saving import from_config_with_objects
from keras_bert_kit.validation import check_number

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_BATCH_SIZE = 32


def _is_features(x):
    """True for already-preprocessed input: a dict (or spec dict) of id tensors."""
    return isinstance(x, dict)


class Task(GraphModel, MultiWorkerFitMixin, keras.Model):
    """Base of `SequenceClassifier`, `TokenClassifier` and `SpanExtractor`; not registered.

    Subclasses build their graph in `build_graph` (see `GraphModel`) over
    the encoder's own layers, and name their defaults in `default_loss`,
    `default_metrics` and `default_loss_weights`.
    """

    def _init_task(self, layers, preprocessor, **kwargs):
        """Builds the functional model from `layers` ({name: layer}, `encoder` among them)."""
        inputs = self._encoder_inputs(layers["encoder"])
        outputs = self.build_graph(layers, inputs)["outputs"]
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        for name, layer in layers.items():
            setattr(self, name, layer)
        self.preprocessor = preprocessor
        self._auto_optimizer = None
        self._compiled_loss_weights = None

    @staticmethod
    def _head_layers(encoder, units, dropout, name):
        """Dropout, then a dense layer with BERT's initialiser.

        The dense layer computes in float32, so logits and their softmax stay
        float32 under mixed precision.
        """
        return (
            Dropout(dropout, dtype=encoder.dtype_policy, name="dropout"),
            keras.layers.Dense(
                units,
                kernel_initializer=keras.initializers.TruncatedNormal(
                    stddev=encoder.config.initializer_range
                ),
                dtype="float32",
                name=name,
            ),
        )

    @staticmethod
    def _freeze_unused_pooler(encoder):
        """Freezes BERT's pooler for tasks that read only the sequence output.

        Its weights get no gradient there; frozen, the optimizer neither
        tracks them nor warns about them on every step. (Set
        `encoder.pooler.trainable = True` to reuse the encoder for a task
        that pools.)
        """
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler.trainable = False

    @staticmethod
    def _encoder_inputs(encoder):
        return {
            name: keras.Input((None,), dtype="int32", name=name) for name in encoder.input_names
        }

    # -- compile ----------------------------------------------------------------------

    def default_loss(self):
        """The loss `compile()` uses: a Keras loss, or {output name: loss}."""
        raise NotImplementedError

    def default_metrics(self):
        """The metrics `compile()` uses: `(metrics, weighted_metrics)`."""
        return None, None

    def default_loss_weights(self):
        """The loss weights `compile()` uses: {output name: float}, or None for 1 each."""
        return None

    @property
    def loss_weights(self):
        """{output name: its weight in the loss}: as compiled, else the default."""
        names = list(self.output) if isinstance(self.output, dict) else ["logits"]
        weights = self._compiled_loss_weights
        if weights is None:
            weights = self.default_loss_weights()
        if weights is None:
            return {name: 1.0 for name in names}
        if isinstance(weights, dict):
            return {name: float(weights.get(name, 1.0)) for name in names}
        if isinstance(weights, (list, tuple)):
            return {name: float(weight) for name, weight in zip(names, weights)}
        return {names[0]: float(weights)}

    def prediction_weights(self, x, y=None, sample_weight=None):
        """{output name: weights of its predictions}: which count in a loss over them.

        Per-token outputs: `sample_weight` when it weighs each token, else
        `padding_mask`; per-example outputs: `sample_weight` when given per
        example, else ones.
        """
        outputs = self.output if isinstance(self.output, dict) else {"logits": self.output}
        weights = {}
        for name, output in outputs.items():
            given = sample_weight.get(name) if isinstance(sample_weight, dict) else sample_weight
            rank = len(output.shape) - 1
            if given is not None and len(given.shape) == rank:
                weights[name] = given
            elif rank == 2:
                weights[name] = x["padding_mask"]
            else:
                weights[name] = keras.ops.ones_like(x["input_ids"][:, 0], dtype="float32")
        return weights

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        loss_weights="auto",
        metrics="auto",
        weighted_metrics="auto",
        learning_rate=5e-5,
        warmup_fraction=0.1,
        weight_decay=0.01,
        clipnorm=1.0,
        **kwargs,
    ):
        """Configures training; every argument has a sensible default.

        Args:
            optimizer: "auto" for `create_optimizer(learning_rate, ...)` with
                its schedule spanning the `fit` run (its length is known once
                `fit` sees the data); or any Keras optimizer.
            loss, loss_weights, metrics, weighted_metrics: "auto" for the task's own.
            learning_rate, warmup_fraction, weight_decay, clipnorm: the
                "auto" optimizer's settings (see `create_optimizer`).
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        if optimizer == "auto":
            check_number("warmup_fraction", warmup_fraction, minimum=0, maximum=1)
            self._auto_optimizer = dict(
                learning_rate=learning_rate,
                warmup_fraction=warmup_fraction,
                weight_decay=weight_decay,
                clipnorm=clipnorm,
            )
            # A stand-in of the same kind; `fit` replaces it once it knows the run's length.
            optimizer = create_optimizer(learning_rate, num_train_steps=1, warmup_steps=0,
                                         weight_decay=weight_decay, clipnorm=clipnorm)
        else:
            self._auto_optimizer = None
        if loss == "auto":
            loss = self.default_loss()
        if loss_weights == "auto":
            loss_weights = self.default_loss_weights()
        self._compiled_loss_weights = loss_weights
        default_metrics, default_weighted = self.default_metrics()
        if metrics == "auto":
            metrics = default_metrics
        if weighted_metrics == "auto":
            weighted_metrics = default_weighted
        super().compile(
            optimizer=optimizer,
            loss=loss,
            loss_weights=loss_weights,
            metrics=metrics,
            weighted_metrics=weighted_metrics,
            **kwargs,
        )

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and self._auto_optimizer is not None:
            # Saved as "auto" with its settings, not as the current run's
            # schedule: a reloaded task's next `fit` gets a schedule of its own.
            config = {**config, "optimizer": "auto", **self._auto_optimizer}
        return config

    def compile_from_config(self, config):
        # Our compile() takes the standard arguments too, so a saved model
        # recompiles as it was (Keras skips overridden compile() methods).
        # Keras then loads the saved optimizer's state (moments, step count).
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # -- data -------------------------------------------------------------------------

    def _check_targets(self, y):
        """Raises for targets the loss cannot take (e.g. a class id out of range)."""

    def _as_dataset(self, x, y, sample_weight, batch_size, shuffle, seed=None):
        """Batches of model inputs; None when Keras takes `x` as it is.

        Raw Python data goes through `preprocessor.dataset`; a `tf.data.Dataset`
        of raw elements (`x`, `(x, y)` or `(x, y, sample_weight)`) is mapped
        through the preprocessor, which every task calls the same way.
        """
        if isinstance(x, tf.data.Dataset):
            features = keras.utils.unpack_x_y_sample_weight(x.element_spec)[0]
            if not _is_features(features):
                x = x.map(self._require_preprocessor(), num_parallel_calls=AUTOTUNE)
            elif set(features) <= set(self.encoder.input_names):
                return None
            # E.g. a BERT preprocessor's `segment_ids` for a DistilBERT task.
            return x.map(self._select_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
        if y is not None:
            self._check_targets(y)
        if self.preprocessor is None or _is_features(x):
            return None
        dataset = self.preprocessor.dataset(
            x,
            y,
            sample_weight=sample_weight,
            batch_size=batch_size or DEFAULT_BATCH_SIZE,
            shuffle=shuffle,
            seed=seed,
        )
        return dataset.map(self._select_inputs).prefetch(AUTOTUNE)

    def _require_preprocessor(self):
        if self.preprocessor is None:
            raise ValueError(
                f"This {type(self).__name__} has no preprocessor, so it takes id features "
                "(input_ids, padding_mask, ...), not raw data."
            )
        return self.preprocessor

    def _select_inputs(self, *element):
        """Drops features the encoder does not take (DistilBERT has no `segment_ids`)."""
        features, y, sample_weight = keras.utils.unpack_x_y_sample_weight(element)
        features = {name: features[name] for name in self.encoder.input_names}
        return keras.utils.pack_x_y_sample_weight(features, y, sample_weight)

    def _call_on_features(self, features):
        """The model's outputs on a preprocessor's features, in inference mode."""
        return self(self._select_inputs(features), training=False)

    @staticmethod
    def _text_specs(*names):
        """`tf.function` input signature of 1-D string tensors, one per name."""
        return [tf.TensorSpec([None], tf.string, name=name) for name in names]

    def _schedule_auto_optimizer(self, batches_per_epoch, epochs):
        """Gives the "auto" optimizer a schedule spanning this `fit` run.

        Every run warms up and decays over its own steps, counted from the
        optimizer's `iterations` at its start: a second `fit` trains too
        (its rate would otherwise have decayed to 0), and the optimizer
        keeps its moments, since only its schedule is replaced.
        """
        if self._auto_optimizer is None:
            return
        if batches_per_epoch is None or batches_per_epoch < 0:
            raise ValueError(
                "The default optimizer decays over the whole run, but the number of "
                "batches is unknown here: pass `steps_per_epoch`, or compile with an "
                "explicit optimizer (e.g. keras_bert_kit.create_optimizer(...))."
            )
        settings = self._auto_optimizer
        # Counted in batches: Keras passes the schedule its batch counter, also
        # under gradient accumulation (`schedule_step`).
        num_train_steps = max(1, batches_per_epoch * epochs)
        self.optimizer.learning_rate = WarmupDecay(
            settings["learning_rate"],
            decay_steps=num_train_steps,
            warmup_steps=int(round(settings["warmup_fraction"] * num_train_steps)),
            start_step=schedule_step(self.optimizer),
        )
        # The train step read the previous schedule when it was traced.
        self.make_train_function(force=True)

    @staticmethod
    def _batches_per_epoch(x, batch_size, steps_per_epoch):
        if steps_per_epoch is not None:
            return steps_per_epoch
        if isinstance(x, tf.data.Dataset):
            return int(x.cardinality())
        first = tf.nest.flatten(x)[0]
        return -(-len(first) // (batch_size or DEFAULT_BATCH_SIZE))

    def _validation_dataset(self, validation_data, batch_size):
        if validation_data is None:
            return None
        if isinstance(validation_data, tf.data.Dataset):
            x, y, sample_weight = validation_data, None, None
        else:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(tuple(validation_data))
        dataset = self._as_dataset(x, y, sample_weight, batch_size, shuffle=False)
        return validation_data if dataset is None else dataset

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        validation_data=None,
        sample_weight=None,
        steps_per_epoch=None,
        seed=None,
        **kwargs,
    ):
        """`keras.Model.fit`, also on raw data (see the task's preprocessor).

        Raw data is shuffled every epoch unless `shuffle=False` (`seed` makes
        the order repeatable), and batched by `batch_size` (default 32).
        """
        shuffle = kwargs.pop("shuffle", True)
        run_epochs = epochs - kwargs.get("initial_epoch", 0)  # Keras runs epochs from there
        data = self._as_dataset(x, y, sample_weight, batch_size, shuffle=shuffle, seed=seed)
        validation_data = self._validation_dataset(validation_data, batch_size)
        if data is None:  # Already model inputs: Keras takes them as they are.
            self._schedule_auto_optimizer(
                self._batches_per_epoch(x, batch_size, steps_per_epoch), run_epochs
            )
            return super().fit(
                x,
                y,
                batch_size=batch_size or DEFAULT_BATCH_SIZE,
                epochs=epochs,
                validation_data=validation_data,
                sample_weight=sample_weight,
                steps_per_epoch=steps_per_epoch,
                # A dataset is shuffled by its maker; Keras warns when asked to.
                shuffle=shuffle and not isinstance(x, tf.data.Dataset),
                **kwargs,
            )
        self._schedule_auto_optimizer(
            self._batches_per_epoch(data, None, steps_per_epoch), run_epochs
        )
        return super().fit(
            data,
            epochs=epochs,
            validation_data=validation_data,
            steps_per_epoch=steps_per_epoch,
            shuffle=False,  # `data` is shuffled already, when asked
            **kwargs,
        )

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        """`keras.Model.evaluate`, also on raw data."""
        data = self._as_dataset(x, y, sample_weight, batch_size, shuffle=False)
        if data is None:
            return super().evaluate(
                x, y, batch_size=batch_size, sample_weight=sample_weight, **kwargs
            )
        return super().evaluate(data, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        """`keras.Model.predict`, also on raw data; outputs keep the input's order."""
        data = self._as_dataset(x, None, None, batch_size, shuffle=False)
        if data is None:
            return super().predict(x, batch_size=batch_size, **kwargs)
        return super().predict(data, **kwargs)

    # -- serialization ----------------------------------------------------------------

    def _task_config(self):
        return {
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "preprocessor": (
                keras.saving.serialize_keras_object(self.preprocessor)
                if self.preprocessor is not None
                else None
            ),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return from_config_with_objects(cls, config, ("encoder", "preprocessor"))
