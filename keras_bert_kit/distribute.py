"""`model.fit` under `tf.distribute.MultiWorkerMirroredStrategy` with Keras 3.

Keras 3 (3.15 with TF 2.20) cannot `fit` a model made in a multi-worker
scope, for two reasons (tensorflow/tensorflow#72388):

- before the first step it reduces a whole input batch with
  `strategy.reduce("MEAN", batch)`, which fails on a dict of per-replica
  tensors; the batch is only wanted for its shapes, so one local replica's
  slice serves;
- it averages each step's logs across workers with
  `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalars
  every metric returns; given a `[1]` vector instead, the same reduction
  gives the cross-worker mean as a scalar.

`MultiWorkerFitMixin` fixes both and changes nothing under other strategies.
`is_chief` and `worker_index` say which worker a process is, for writing
files from one worker only.
"""

import keras
import tensorflow as tf

from keras_bert_kit import keras_internals


def in_multi_worker_mode(strategy=None):
    """Whether `strategy` (the current one by default) spans several workers."""
    return keras_internals.in_multi_worker_mode(strategy or tf.distribute.get_strategy())


def worker_index(strategy=None):
    """This process's index among the workers: 0 for a single worker."""
    strategy = strategy or tf.distribute.get_strategy()
    if not in_multi_worker_mode(strategy):
        return 0
    resolver = strategy.cluster_resolver
    # With a "chief" task in the cluster, the chief is worker 0 and the
    # "worker" tasks come after it.
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if resolver.task_type == "chief":
        return 0
    return resolver.task_id + (1 if has_chief else 0)


def is_chief(strategy=None):
    """Whether this process writes the run's shared outputs (checkpoints, logs, models)."""
    return worker_index(strategy) == 0


class MultiWorkerFitMixin(keras_internals.LocalReplicaSymbolicBuild,
                          keras_internals.OptimizerBuiltBeforeTracing):
    """Lets a `keras.Model` subclass `fit`/`evaluate` under multi-worker strategies.

    Put it before `keras.Model` in the bases. The build before the first step
    goes through `keras_internals.LocalReplicaSymbolicBuild` (a private Keras
    hook); the step logs through the public `train_step` and `test_step`.
    `tests/test_distribute.py` trains 2 worker processes with it, and
    `tests/test_keras_internals.py` checks the hook itself.
    """

    def train_step(self, data):
        return reducible_logs(super().train_step(data))

    def test_step(self, data):
        return reducible_logs(super().test_step(data))


def reducible_logs(logs):
    """A step's logs as multi-worker training can average them (unchanged otherwise)."""
    if not in_multi_worker_mode():
        return logs
    return tf.nest.map_structure(lambda value: keras.ops.reshape(value, [1]), logs)
