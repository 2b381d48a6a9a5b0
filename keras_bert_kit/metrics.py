"""Evaluation metrics for the fine-tuning tasks BERT is usually scored on.

Classification (GLUE-style):
    - `accuracy(y_true, y_pred)`: fraction of matching integer class ids.
    - `macro_f1(y_true, y_pred, num_classes=None)`: unweighted mean of per-class F1.
    - `SparseMacroF1(num_classes)`: the same macro F1 as a Keras metric that accumulates a
      confusion matrix, so it is exact over a whole `model.fit`/`model.evaluate` epoch
      (averaging per-batch F1 would not be).

Sequence labelling (NER), compatible with conlleval/seqeval's default mode:
    - `get_entities(tags)`: `(type, start, end_inclusive)` chunks of an IOB1/IOB2/IOBES tag list.
    - `entity_scores(true_sequences, pred_sequences)`: micro precision/recall/F1 over entities,
      plus per-type scores.

Extractive question answering, as the official SQuAD v1.1 evaluation script:
    - `normalize_answer(text)`, `exact_match(prediction, ground_truths)`,
      `span_f1(prediction, ground_truths)`, `squad_scores(predictions, references)`.

Everything except `SparseMacroF1` is plain Python/numpy and runs outside any graph.
"""

import collections
import re
import string

import keras
import numpy as np
from keras import ops

__all__ = [
    "SparseMacroF1",
    "accuracy",
    "entity_scores",
    "exact_match",
    "get_entities",
    "macro_f1",
    "normalize_answer",
    "span_f1",
    "squad_scores",
]


# -- classification -----------------------------------------------------------


def _check_num_classes(num_classes):
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    return int(num_classes)


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


# -- sequence labelling (seqeval-compatible) ----------------------------------


def _check_tag(tag, where):
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"Tags must be non-empty strings, got {tag!r} {where}.")


def _end_of_chunk(prev_tag, tag, prev_type, type_):
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
    )


def _start_of_chunk(prev_tag, tag, prev_type, type_):
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != type_)
    )


def get_entities(tags):
    """Chunks a tag sequence into entities, exactly as seqeval's `get_entities`.

    The rules are conlleval's (seqeval's default, non-strict mode), so one
    function reads IOB1, IOB2 and IOBES: a chunk starts at `B-`/`S-`, at an
    `I-`/`E-` that follows `O`, `E-` or `S-`, or at any tag whose type differs
    from the previous one (so `["O", "I-LOC"]` and `["B-PER", "I-LOC"]` both
    start a LOC chunk); it ends after `E-`/`S-`, before `B-`/`S-`/`O`, or on a
    type change. A tag's prefix is its first character and its type is what
    follows the first "-" after it; a bare tag such as "B" has type "_".

    Args:
        tags: a flat list of tag strings, e.g. `["B-PER", "I-PER", "O", "I-LOC"]`.
            As in seqeval, a list of sentences (lists of tags) is also accepted:
            it is read as the sentences joined with an "O" after each, so no
            chunk crosses a sentence boundary, and offsets index that joined
            sequence.

    Returns:
        A list of `(type, start, end)` tuples, `end` inclusive, in order.
    """
    tags = list(tags)
    if any(isinstance(item, (list, tuple)) for item in tags):
        flat = []
        for index, sentence in enumerate(tags):
            if not isinstance(sentence, (list, tuple)):
                raise ValueError(
                    f"get_entities got a mix of tags and sentences: item {index} is "
                    f"{sentence!r}, not a list of tags."
                )
            flat.extend(sentence)
            flat.append("O")
        tags = flat
    for index, tag in enumerate(tags):
        _check_tag(tag, f"at position {index}")

    prev_tag, prev_type = "O", ""
    begin = 0
    chunks = []
    # The trailing "O" closes a chunk still open at the end.
    for index, tag in enumerate(tags + ["O"]):
        prefix = tag[0]
        type_ = tag[1:].split("-", maxsplit=1)[-1] or "_"
        if _end_of_chunk(prev_tag, prefix, prev_type, type_):
            chunks.append((prev_type, begin, index - 1))
        if _start_of_chunk(prev_tag, prefix, prev_type, type_):
            begin = index
        prev_tag, prev_type = prefix, type_
    return chunks


def _precision_recall_f1(true_positives, num_predicted, num_true):
    # 0/0 is defined as 0.0, as seqeval's default zero_division.
    precision = true_positives / num_predicted if num_predicted else 0.0
    recall = true_positives / num_true if num_true else 0.0
    denominator = precision + recall
    f1 = 2.0 * precision * recall / denominator if denominator else 0.0
    return float(precision), float(recall), float(f1)


def entity_scores(true_sequences, pred_sequences):
    """Entity-level precision, recall and F1, as seqeval's default (micro) scores.

    An entity counts as correct only if its type, start and end all match. The
    overall scores are micro-averaged (over all entities of all types), which is
    what conlleval and seqeval's `precision_score`/`recall_score`/`f1_score`
    report; 0/0 is 0.0. Sentences are chunked separately, so an entity never
    spans two sentences.

    Args:
        true_sequences: list of sentences, each a list of gold tag strings.
        pred_sequences: list of sentences of predicted tags, with the same
            number of sentences and the same length sentence by sentence.

    Returns:
        `dict(precision=, recall=, f1=, per_type={type: dict(precision=, recall=,
        f1=, support=)})`, floats except the int `support` (number of gold
        entities of that type); `per_type` covers every type found in either
        input, in sorted order.
    """
    for name, sequences in (("true_sequences", true_sequences), ("pred_sequences", pred_sequences)):
        if isinstance(sequences, str):
            raise ValueError(f"{name} must be a list of sentences (lists of tags), not a string.")
    true_sequences, pred_sequences = list(true_sequences), list(pred_sequences)
    if len(true_sequences) != len(pred_sequences):
        raise ValueError(
            f"true_sequences has {len(true_sequences)} sentences but pred_sequences "
            f"has {len(pred_sequences)}."
        )
    true_tags, pred_tags = [], []
    for index, (true_sentence, pred_sentence) in enumerate(zip(true_sequences, pred_sequences)):
        if isinstance(true_sentence, str) or isinstance(pred_sentence, str):
            raise ValueError(f"Sentence {index} is a string; expected a list of tags.")
        true_sentence, pred_sentence = list(true_sentence), list(pred_sentence)
        if len(true_sentence) != len(pred_sentence):
            raise ValueError(
                f"Sentence {index} has {len(true_sentence)} true tags but "
                f"{len(pred_sentence)} predicted tags."
            )
        for position, (true_tag, pred_tag) in enumerate(zip(true_sentence, pred_sentence)):
            where = f"in sentence {index} at position {position}"
            _check_tag(true_tag, where)
            _check_tag(pred_tag, where)
        # The "O" separator is seqeval's: it stops chunks from joining across sentences.
        true_tags += true_sentence + ["O"]
        pred_tags += pred_sentence + ["O"]

    true_entities = collections.defaultdict(set)
    pred_entities = collections.defaultdict(set)
    for type_, start, end in get_entities(true_tags):
        true_entities[type_].add((start, end))
    for type_, start, end in get_entities(pred_tags):
        pred_entities[type_].add((start, end))

    per_type = {}
    totals = np.zeros(3, dtype="int64")  # true positives, predicted, gold
    for type_ in sorted(set(true_entities) | set(pred_entities)):
        gold, predicted = true_entities[type_], pred_entities[type_]
        counts = np.array([len(gold & predicted), len(predicted), len(gold)])
        totals += counts
        precision, recall, f1 = _precision_recall_f1(*counts)
        per_type[type_] = dict(precision=precision, recall=recall, f1=f1, support=len(gold))
    precision, recall, f1 = _precision_recall_f1(*totals)
    return dict(precision=precision, recall=recall, f1=f1, per_type=per_type)


# -- SQuAD v1.1 ---------------------------------------------------------------

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
