import warnings

import numpy as np
import pytest

# The reference implementation (a dev requirement).
from seqeval.metrics import sequence_labeling as seqeval

from keras_bert_kit.metrics import entity_scores, get_entities

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
