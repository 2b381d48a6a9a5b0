"""Classification metrics (GLUE-style).

- `accuracy(y_true, y_pred)`: fraction of matching integer class ids.
- `macro_f1(y_true, y_pred, num_classes=None)`: unweighted mean of per-class F1.
- `SparseMacroF1(num_classes)`: the same macro F1 as a Keras metric that accumulates a
  confusion matrix, so it is exact over a whole `model.fit`/`model.evaluate` epoch
  (averaging per-batch F1 would not be).
"""

import keras
import numpy as np
from keras import ops
from keras_bert_kit.validation import check_int

__all__ = ["SparseMacroF1", "accuracy", "macro_f1"]


def _check_num_classes(num_classes):
    return int(check_int("num_classes", num_classes, minimum=1))


def _class_ids(y_true, y_pred):
    """Validates a pair of class-id sequences and returns them as int64 arrays."""
    arrays = []
    for name, ids in (("y_true", y_true), ("y_pred", y_pred)):
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(
                f"{name} must be a 1-D sequence of integer class ids, got shape {ids.shape}."
            )
        if ids.size == 0:
            raise ValueError(f"{name} is empty; metrics need at least one example.")
        if ids.dtype.kind not in "biu":
            raise ValueError(f"{name} must hold integer class ids, got dtype {ids.dtype}.")
        arrays.append(ids.astype("int64"))
    if len(arrays[0]) != len(arrays[1]):
        raise ValueError(
            f"y_true and y_pred must have the same length, got {len(arrays[0])} "
            f"and {len(arrays[1])}."
        )
    return arrays


def accuracy(y_true, y_pred):
    """Fraction of examples whose predicted class id equals the true one.

    Args:
        y_true: 1-D integer class ids (list or numpy array).
        y_pred: 1-D integer class ids of the same length (already argmax-ed).

    Returns:
        A Python float in [0, 1].
    """
    y_true, y_pred = _class_ids(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true, y_pred, num_classes=None):
    """Unweighted mean over classes of the per-class F1 `2TP / (2TP + FP + FN)`.

    A class that occurs neither in `y_true` nor in `y_pred` has an undefined F1
    (0/0). It is skipped rather than counted as 0, so the score does not depend
    on how many unused classes a label set declares; this equals scikit-learn's
    `f1_score(y_true, y_pred, average="macro")` with its default labels (the
    classes present in either array).

    Args:
        y_true: 1-D integer class ids (list or numpy array).
        y_pred: 1-D integer class ids of the same length (already argmax-ed).
        num_classes: optional number of classes. When given, every id must lie in
            `range(num_classes)`; absent classes are still skipped.

    Returns:
        A Python float in [0, 1].
    """
    y_true, y_pred = _class_ids(y_true, y_pred)
    if num_classes is not None:
        num_classes = _check_num_classes(num_classes)
        for name, ids in (("y_true", y_true), ("y_pred", y_pred)):
            bad = ids[(ids < 0) | (ids >= num_classes)]
            if bad.size:
                raise ValueError(
                    f"{name} holds class id {int(bad[0])}, outside range({num_classes})."
                )
    # Indexing by position in the union of present ids skips absent classes for free.
    classes, inverse = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    true_index, pred_index = inverse[: len(y_true)], inverse[len(y_true) :]
    true_positives = np.bincount(true_index[true_index == pred_index], minlength=len(classes))
    denominator = np.bincount(true_index, minlength=len(classes)) + np.bincount(
        pred_index, minlength=len(classes)
    )
    return float(np.mean(2.0 * true_positives / denominator))


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class SparseMacroF1(keras.metrics.Metric):
    """Macro F1 over a whole evaluation, for integer labels and class scores.

    F1 is not a mean of per-example values, so averaging per-batch macro F1
    (what a stateless metric function would give) is biased. This metric instead
    accumulates a `[num_classes, num_classes]` confusion matrix (rows: true class,
    columns: predicted class) and computes macro F1 from it, with the same rule
    as `macro_f1`: classes with neither support nor predictions are skipped.
    Only `keras.ops` are used, so it runs in `model.fit` in graph mode and
    under XLA (`jit_compile=True`).

    Counts are float32 (so sample weights can be fractional); they are exact up
    to 2**24 examples per cell.

    Args:
        num_classes: number of classes.
        name: metric name.
        dtype: dtype of the result.

    `update_state(y_true, y_pred, sample_weight=None)`: `y_true` int class ids of
    shape `[batch]` or `[batch, 1]`; `y_pred` logits or probabilities
    `[batch, num_classes]` (argmax is taken); `sample_weight` optional
    per-example weights `[batch]` or `[batch, 1]`. Labels outside
    `range(num_classes)` (e.g. a -1 padding id) one-hot to zeros and so are
    ignored together with their prediction.
    `result()`: the macro F1, 0.0 before any example has been seen.
    """

    def __init__(self, num_classes, name="macro_f1", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = _check_num_classes(num_classes)
        self.confusion_matrix = self.add_weight(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float32",
            name="confusion_matrix",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_classes:
            raise ValueError(
                f"SparseMacroF1 has num_classes={self.num_classes}, but y_pred has "
                f"{y_pred.shape[-1]} scores per example (shape {y_pred.shape})."
            )
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predicted = ops.argmax(ops.reshape(y_pred, (-1, self.num_classes)), axis=-1)
        true_one_hot = ops.one_hot(y_true, self.num_classes, dtype="float32")
        pred_one_hot = ops.one_hot(predicted, self.num_classes, dtype="float32")
        if sample_weight is not None:
            weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
            true_one_hot = true_one_hot * weights
        # Sum over the batch of outer products true x pred: one matmul, no scatter.
        self.confusion_matrix.assign_add(ops.matmul(ops.transpose(true_one_hot), pred_one_hot))

    def result(self):
        true_positives = ops.diagonal(self.confusion_matrix)
        # 2TP + FP + FN == (row sum) + (column sum): support plus predictions.
        denominator = ops.sum(self.confusion_matrix, axis=0) + ops.sum(
            self.confusion_matrix, axis=1
        )
        present = ops.cast(denominator > 0, "float32")
        per_class_f1 = ops.divide_no_nan(2.0 * true_positives, denominator)
        score = ops.divide_no_nan(ops.sum(per_class_f1), ops.sum(present))
        return ops.cast(score, self.dtype)

    def reset_state(self):
        self.confusion_matrix.assign(ops.zeros_like(self.confusion_matrix))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config
