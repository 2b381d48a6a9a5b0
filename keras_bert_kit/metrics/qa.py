"""Extractive question-answering metrics, as the official SQuAD v1.1 evaluation script.

- `normalize_answer(text)`, `exact_match(prediction, ground_truths)`,
  `span_f1(prediction, ground_truths)`, `squad_scores(predictions, references)`.
"""

import collections
import re
import string

__all__ = ["exact_match", "normalize_answer", "span_f1", "squad_scores"]


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text):
    """Normalizes an answer as the official SQuAD v1.1 script does.

    Lowercases, removes ASCII punctuation (`string.punctuation`), removes the
    articles "a", "an" and "the" as whole words, and collapses whitespace, so
    that "The Eiffel Tower!" and "eiffel  tower" compare equal.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _check_ground_truths(ground_truths):
    # A bare string would otherwise be iterated character by character.
    if isinstance(ground_truths, str):
        raise ValueError(
            f"ground_truths must be a list of answer strings, got the string {ground_truths!r}; "
            "wrap it in a list."
        )
    ground_truths = list(ground_truths)
    if not ground_truths:
        raise ValueError("ground_truths is empty; each example needs at least one answer.")
    return ground_truths


def _token_f1(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction, ground_truths):
    """1.0 if the normalized prediction equals any normalized ground truth, else 0.0.

    Args:
        prediction: the predicted answer string.
        ground_truths: non-empty list of acceptable answer strings.
    """
    ground_truths = _check_ground_truths(ground_truths)
    normalized = normalize_answer(prediction)
    return max(float(normalized == normalize_answer(answer)) for answer in ground_truths)


def span_f1(prediction, ground_truths):
    """Best token-level F1 of the prediction against any ground truth.

    Tokens are the whitespace-split normalized answers, compared as multisets;
    the F1 is 0.0 when no token is shared.

    Args:
        prediction: the predicted answer string.
        ground_truths: non-empty list of acceptable answer strings.
    """
    ground_truths = _check_ground_truths(ground_truths)
    return max(_token_f1(prediction, answer) for answer in ground_truths)


def squad_scores(predictions, references):
    """SQuAD v1.1 exact match and F1, as percentages averaged over examples.

    Args:
        predictions: list of predicted answer strings, one per example.
        references: list of the same length; each entry a non-empty list of
            acceptable answer strings for that example.

    Returns:
        `dict(exact_match=, f1=)`, floats in [0, 100].
    """
    for name, values in (("predictions", predictions), ("references", references)):
        if isinstance(values, str):
            raise ValueError(f"{name} must be a list, got the string {values!r}.")
    predictions, references = list(predictions), list(references)
    if not predictions:
        raise ValueError("predictions is empty; SQuAD scores need at least one example.")
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions has {len(predictions)} examples but references has "
            f"{len(references)}."
        )
    total_exact, total_f1 = 0.0, 0.0
    for index, (prediction, answers) in enumerate(zip(predictions, references)):
        try:
            answers = _check_ground_truths(answers)
        except ValueError as error:
            raise ValueError(f"references[{index}]: {error}") from None
        total_exact += exact_match(prediction, answers)
        total_f1 += span_f1(prediction, answers)
    return dict(
        exact_match=100.0 * total_exact / len(predictions),
        f1=100.0 * total_f1 / len(predictions),
    )
