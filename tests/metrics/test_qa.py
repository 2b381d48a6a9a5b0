import pytest

from keras_bert_kit.metrics import exact_match, normalize_answer, span_f1, squad_scores


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
