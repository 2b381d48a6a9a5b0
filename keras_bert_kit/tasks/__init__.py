"""Fine-tuning tasks: encoder + head + preprocessor, trained with `fit` on raw data.

- `SequenceClassifier` (+ `SequenceClassifierPreprocessor`): texts or text pairs.
- `TokenClassifier` (+ `TokenClassifierPreprocessor`): NER and tagging, per word.
- `SpanExtractor` (+ `SpanExtractorPreprocessor`, `decode_answers`): extractive QA.
"""

from keras_bert_kit.tasks.sequence_classifier import (
    SequenceClassifier,
    SequenceClassifierPreprocessor,
)
from keras_bert_kit.tasks.span_extractor import (
    QAFeatures,
    SpanExtractor,
    SpanExtractorPreprocessor,
    decode_answers,
)
from keras_bert_kit.tasks.task import Task
from keras_bert_kit.tasks.token_classifier import TokenClassifier, TokenClassifierPreprocessor

__all__ = [
    "QAFeatures",
    "SequenceClassifier",
    "SequenceClassifierPreprocessor",
    "SpanExtractor",
    "SpanExtractorPreprocessor",
    "Task",
    "TokenClassifier",
    "TokenClassifierPreprocessor",
    "decode_answers",
]
