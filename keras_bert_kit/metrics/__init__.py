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

from keras_bert_kit.metrics.classification import SparseMacroF1, accuracy, macro_f1
from keras_bert_kit.metrics.qa import exact_match, normalize_answer, span_f1, squad_scores
from keras_bert_kit.metrics.tagging import entity_scores, get_entities

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

