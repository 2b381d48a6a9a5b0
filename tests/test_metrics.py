import warnings

import keras
import numpy as np
import pytest

from keras_bert_kit.metrics import (
    SparseMacroF1,
    accuracy,
    entity_scores,
    exact_match,
    get_entities,
    macro_f1,
    normalize_answer,
    span_f1,
    squad_scores,
)


# -- accuracy / macro_f1 -------------------------------------------------------


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


# -- sequence labelling --------------------------------------------------------

# The reference implementation (a dev requirement).
from seqeval.metrics import sequence_labeling as seqeval  # noqa: E402

RANDOM_TAGS = [
    "O", "O", "O", "B-PER", "I-PER", "E-PER", "B-LOC", "I-LOC", "S-LOC",
    "I-MISC", "B-MISC", "E-ORG", "S-ORG", "I-ORG", "B", "I", "E", "S",
]  # fmt: skip


@pytest.mark.parametrize(
    "tags, expected",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
        # IOB1: an I- after O, or after another type, starts a chunk.
        (["I-PER", "I-PER", "I-LOC", "O", "I-LOC"], [("PER", 0, 1), ("LOC", 2, 2), ("LOC", 4, 4)]),
        (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),
        # IOBES: E- and S- close a chunk, so a following E-/I- opens another.
        (
            ["S-ORG", "B-ORG", "E-ORG", "E-ORG", "I-ORG"],
            [("ORG", 0, 0), ("ORG", 1, 2), ("ORG", 3, 3), ("ORG", 4, 4)],
        ),
        (["O", "O"], []),
        ([], []),
        (["B", "I", "O", "I"], [("_", 0, 1), ("_", 3, 3)]),
    ],
)
def test_get_entities_hand_cases(tags, expected):
    assert get_entities(tags) == expected
    assert seqeval.get_entities(list(tags)) == expected


def test_get_entities_odd_tags_like_seqeval():
    # Tags without a standard prefix: seqeval warns but still chunks them.
    cases = [
        ["B-I-PER", "I-I-PER", "O"],
        ["PER", "PER", "LOC", "O", "X", "O", "X"],
        ["O", ".", "I-PER", ".", "B-PER"],
        ["BX-PER", "IX-PER", "O-PER", "O"],
        ["X", "O", "X", "X"],
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tags in cases:
            assert get_entities(tags) == seqeval.get_entities(list(tags)), tags


def test_get_entities_nested_lists_like_seqeval():
    sentences = [["B-PER"], ["I-PER", "I-PER"], [], ["E-ORG", "S-ORG"]]
    assert get_entities(sentences) == seqeval.get_entities(sentences)
    assert get_entities(sentences) == [("PER", 0, 0), ("PER", 2, 3), ("ORG", 6, 6), ("ORG", 7, 7)]
    with pytest.raises(ValueError, match="mix of tags and sentences"):
        get_entities([["B-PER"], "O"])
    with pytest.raises(ValueError, match="non-empty strings"):
        get_entities(["B-PER", ""])


def _random_sentences(rng, num_sentences):
    lengths = rng.integers(0, 12, size=num_sentences)
    return [list(rng.choice(RANDOM_TAGS, size=n)) for n in lengths]


def _perturb(rng, sentences, rate):
    return [
        [str(rng.choice(RANDOM_TAGS)) if rng.random() < rate else tag for tag in sentence]
        for sentence in sentences
    ]


def test_get_entities_random_matches_seqeval():
    rng = np.random.default_rng(3)
    for sentence in _random_sentences(rng, 400):
        sentence = [str(tag) for tag in sentence]
        assert get_entities(sentence) == seqeval.get_entities(sentence), sentence


def _assert_scores_match_seqeval(true_sequences, pred_sequences):
    scores = entity_scores(true_sequences, pred_sequences)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval's zero-division warnings
        expected = {
            "precision": seqeval.precision_score(true_sequences, pred_sequences),
            "recall": seqeval.recall_score(true_sequences, pred_sequences),
            "f1": seqeval.f1_score(true_sequences, pred_sequences),
        }
        per_type = seqeval.precision_recall_fscore_support(true_sequences, pred_sequences)
    for key, value in expected.items():
        assert abs(scores[key] - value) <= 1e-12, (key, scores[key], value)
    types = sorted({t for t, _, _ in get_entities(true_sequences)} | {
        t for t, _, _ in get_entities(pred_sequences)
    })
    assert list(scores["per_type"]) == types
    for index, type_ in enumerate(types):
        got = scores["per_type"][type_]
        for key, values in zip(("precision", "recall", "f1", "support"), per_type):
            assert abs(got[key] - values[index]) <= 1e-12, (type_, key)


def test_entity_scores_hand_computed():
    y_true = [["O", "O", "B-MISC", "I-MISC", "B-MISC", "O", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "B-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = entity_scores(y_true, y_pred)
    # Gold: MISC(2,3), MISC(4,4), PER. Predicted: MISC(2,3), MISC(4,5), PER. 2 of 3 right.
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["per_type"]["MISC"] == dict(precision=0.5, recall=0.5, f1=0.5, support=2)
    assert scores["per_type"]["PER"] == dict(precision=1.0, recall=1.0, f1=1.0, support=1)
    _assert_scores_match_seqeval(y_true, y_pred)


def test_entity_scores_zero_division_and_types_only_predicted():
    scores = entity_scores([["O", "O"]], [["O", "O"]])
    assert scores == dict(precision=0.0, recall=0.0, f1=0.0, per_type={})
    scores = entity_scores([["O", "B-PER"]], [["B-LOC", "O"]])
    assert scores["f1"] == 0.0
    assert scores["per_type"]["LOC"] == dict(precision=0.0, recall=0.0, f1=0.0, support=0)
    _assert_scores_match_seqeval([["O", "B-PER"]], [["B-LOC", "O"]])


def test_entity_scores_never_join_across_sentences():
    # Joined, ["B-PER", "I-PER"] would be one PER entity; per sentence they are two.
    y_true = [["B-PER"], ["I-PER"]]
    y_pred = [["B-PER"], ["O"]]
    scores = entity_scores(y_true, y_pred)
    assert scores["per_type"]["PER"]["support"] == 2
    assert scores["precision"] == 1.0 and scores["recall"] == 0.5
    _assert_scores_match_seqeval(y_true, y_pred)


def test_entity_scores_random_match_seqeval():
    rng = np.random.default_rng(4)
    for _ in range(300):
        true_sequences = [
            [str(tag) for tag in s] for s in _random_sentences(rng, rng.integers(1, 5))
        ]
        pred_sequences = _perturb(rng, true_sequences, rate=rng.choice([0.1, 0.3, 1.0]))
        _assert_scores_match_seqeval(true_sequences, pred_sequences)


def test_entity_scores_bad_input():
    with pytest.raises(ValueError, match="Sentence 1 has 2 true tags but 1 predicted"):
        entity_scores([["O"], ["O", "B-PER"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 sentences"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="Sentence 0 is a string"):
        entity_scores(["B-PER"], ["B-PER"])
    with pytest.raises(ValueError, match="sentence 0 at position 1"):
        entity_scores([["O", None]], [["O", "O"]])


# -- SQuAD ---------------------------------------------------------------------


def test_normalize_answer():
    assert normalize_answer("The Eiffel  Tower!") == "eiffel tower"
    assert normalize_answer("An apple, a day; theory") == "apple day theory"
    assert normalize_answer("  U.S.A.  ") == "usa"


def test_exact_match_and_span_f1():
    assert exact_match("the Eiffel Tower", ["Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel tower", "Paris"]) == 0.0
    assert span_f1("Paris France", ["Paris"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    # Max over ground truths; repeated tokens count as a multiset.
    assert span_f1("Paris France", ["Lyon", "France", "Paris"]) == pytest.approx(2 / 3)
    assert span_f1("paris paris", ["paris"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert span_f1("London", ["Paris"]) == 0.0
    assert span_f1("the", ["a"]) == 0.0  # both normalize to nothing


def test_squad_scores():
    predictions = ["the Eiffel Tower", "Paris France", "London"]
    references = [["Eiffel tower"], ["Paris", "in Paris"], ["Paris"]]
    scores = squad_scores(predictions, references)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


def test_squad_bad_input():
    with pytest.raises(ValueError, match="2 examples but references has 1"):
        squad_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="empty"):
        squad_scores([], [])
    with pytest.raises(ValueError, match=r"references\[1\].*empty"):
        squad_scores(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="wrap it in a list"):
        exact_match("Paris", "Paris")
    with pytest.raises(ValueError, match="empty"):
        span_f1("Paris", [])
