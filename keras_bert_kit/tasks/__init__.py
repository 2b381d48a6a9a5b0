"""Fine-tuning tasks: encoder + head + preprocessor, trained with `fit` on raw data.

- `SequenceClassifier` (+ `SequenceClassifierPreprocessor`): texts or text pairs.
- `TokenClassifier` (+ `TokenClassifierPreprocessor`): NER and tagging, per word (of
  pre-split sentences or of raw texts, `TaggedWord`).
- `SpanExtractor` (+ `SpanExtractorPreprocessor`, `decode_answers`): extractive QA.
"""

from keras_bert_kit.tasks.sequence_classifier import SequenceClassifier
from keras_bert_kit.tasks.sequence_classifier_preprocessor import SequenceClassifierPreprocessor
from keras_bert_kit.tasks.span_extractor import SpanExtractor
from keras_bert_kit.tasks.span_extractor_preprocessor import (
    QAFeatures,
    SpanExtractorPreprocessor,
    decode_answers,
)
from keras_bert_kit.tasks.task import Task
from keras_bert_kit.tasks.text_preprocessor import TextPreprocessor
from keras_bert_kit.tasks.token_classifier import TaggedWord, TokenClassifier
from keras_bert_kit.tasks.token_classifier_preprocessor import TokenClassifierPreprocessor

__all__ = [
    "QAFeatures",
    "SequenceClassifier",
    "SequenceClassifierPreprocessor",
    "SpanExtractor",
    "SpanExtractorPreprocessor",
    "TaggedWord",
    "Task",
    "TextPreprocessor",
    "TokenClassifier",
    "TokenClassifierPreprocessor",
    "decode_answers",
]
