import keras
import numpy as np
import pytest

from keras_bert_kit.metrics import SparseMacroF1, accuracy, macro_f1


def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 2, 2, 2]) == 0.75
    assert accuracy(np.array([1]), np.array([0])) == 0.0


def test_macro_f1_hand_computed():
    # class 0: TP=1 FP=0 FN=1 -> 2/3; class 1: TP=1 FP=1 FN=0 -> 2/3;
    # class 2: TP=1 FP=0 FN=0 -> 1.
    y_true, y_pred = [0, 0, 1, 2], [0, 1, 1, 2]
    assert macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, abs=1e-12)
    # Class 1 only predicted: F1 0, still counted (it has a prediction).
    assert macro_f1([0, 0], [0, 1]) == pytest.approx((2 / 3 + 0.0) / 2, abs=1e-12)


def test_macro_f1_skips_absent_classes():
    y_true, y_pred = [0, 0, 3, 3], [0, 3, 3, 3]
    expected = (2 / 3 + 4 / 5) / 2  # classes 1, 2, 4 never occur: skipped, not zeros
    assert macro_f1(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    assert macro_f1(y_true, y_pred, num_classes=5) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_matches_sklearn():
    from sklearn import metrics as sklearn_metrics  # a dev requirement
    rng = np.random.default_rng(0)
    for _ in range(20):
        y_true = rng.integers(0, 6, size=rng.integers(1, 40))
        y_pred = np.where(rng.random(len(y_true)) < 0.5, y_true, rng.integers(0, 6, len(y_true)))
        expected = sklearn_metrics.f1_score(y_true, y_pred, average="macro")
        assert macro_f1(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
        assert accuracy(y_true, y_pred) == pytest.approx(
            sklearn_metrics.accuracy_score(y_true, y_pred), abs=1e-12
        )


@pytest.mark.parametrize(
    "y_true, y_pred, kwargs, match",
    [
        ([0, 1], [0], {}, "same length"),
        ([], [], {}, "empty"),
        ([[0, 1]], [[0, 1]], {}, "1-D"),
        ([0.5, 1.0], [0, 1], {}, "integer class ids"),
        ([0, 3], [0, 1], {"num_classes": 3}, "outside range"),
        ([0, 1], [0, -1], {"num_classes": 3}, "outside range"),
        ([0, 1], [0, 1], {"num_classes": 0}, "num_classes"),
    ],
)
def test_classification_bad_input(y_true, y_pred, kwargs, match):
    with pytest.raises(ValueError, match=match):
        macro_f1(y_true, y_pred, **kwargs)
    if not kwargs:
        with pytest.raises(ValueError, match=match):
            accuracy(y_true, y_pred)


# -- SparseMacroF1 -------------------------------------------------------------


def _one_hot_scores(ids, num_classes):
    return np.eye(num_classes, dtype="float32")[ids]


def test_sparse_macro_f1_matches_macro_f1():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 5, size=50)
    logits = rng.normal(size=(50, 5)).astype("float32")
    metric = SparseMacroF1(num_classes=5)
    assert float(metric.result()) == 0.0  # nothing seen yet
    # Several batches, with [batch, 1] labels: the state spans them all.
    for start in range(0, 50, 16):
        metric.update_state(y_true[start : start + 16, None], logits[start : start + 16])
    expected = macro_f1(y_true, logits.argmax(-1), num_classes=5)
    np.testing.assert_allclose(float(metric.result()), expected, atol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    assert not np.any(keras.ops.convert_to_numpy(metric.confusion_matrix))


def test_sparse_macro_f1_skips_absent_classes_and_weights():
    metric = SparseMacroF1(num_classes=6)
    metric.update_state([0, 0, 3, 3], _one_hot_scores([0, 3, 3, 3], 6))
    np.testing.assert_allclose(float(metric.result()), (2 / 3 + 4 / 5) / 2, atol=1e-6)

    # Integer sample weights act like repeated examples; weight 0 drops an example.
    y_true, y_pred, weights = [0, 1, 2, 2, 1], [0, 2, 2, 1, 1], [2, 1, 3, 0, 1]
    weighted = SparseMacroF1(num_classes=4)
    weighted.update_state(y_true, _one_hot_scores(y_pred, 4), sample_weight=weights)
    expected = macro_f1(np.repeat(y_true, weights), np.repeat(y_pred, weights))
    np.testing.assert_allclose(float(weighted.result()), expected, atol=1e-6)


def test_sparse_macro_f1_config_roundtrip():
    metric = SparseMacroF1(num_classes=3, name="f1")
    config = metric.get_config()
    assert config["num_classes"] == 3 and config["name"] == "f1"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(restored, SparseMacroF1)
    assert restored.num_classes == 3 and restored.name == "f1"
    with pytest.raises(ValueError, match="num_classes"):
        SparseMacroF1(num_classes=0)
    with pytest.raises(ValueError, match="3 scores"):
        SparseMacroF1(num_classes=4).update_state([0], np.zeros((1, 3), "float32"))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_sparse_macro_f1_in_fit_and_evaluate(jit_compile):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")  # 3 classes
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[SparseMacroF1(num_classes=3)],
        jit_compile=jit_compile,
    )
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert 0.0 <= history.history["macro_f1"][-1] <= 1.0
    scores = model.evaluate(x, y[:, None], batch_size=20, verbose=0, return_dict=True)
    predicted = model.predict(x, batch_size=96, verbose=0).argmax(-1)
    np.testing.assert_allclose(scores["macro_f1"], macro_f1(y, predicted), atol=1e-6)
