"""Pretraining and fine-tuning data: sentences, NSP examples, masking, tf.data pipelines."""

from keras_bert_kit.data.masking import MaskedLMMasker
from keras_bert_kit.data.pipelines import (
    default_bucket_lengths,
    pretraining_dataset,
    text_dataset,
)
from keras_bert_kit.data.pretraining_examples import (
    PretrainingExamples,
    create_pretraining_examples,
    tokenize_documents,
)
from keras_bert_kit.data.sentences import split_sentences
from keras_bert_kit.data.tfrecords import (
    create_pretraining_tfrecords,
    read_pretraining_tfrecords,
    write_pretraining_tfrecords,
)

__all__ = [
    "MaskedLMMasker",
    "PretrainingExamples",
    "create_pretraining_examples",
    "create_pretraining_tfrecords",
    "default_bucket_lengths",
    "pretraining_dataset",
    "read_pretraining_tfrecords",
    "split_sentences",
    "text_dataset",
    "tokenize_documents",
    "write_pretraining_tfrecords",
]
