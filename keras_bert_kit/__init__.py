"""keras-bert-kit: BERT and DistilBERT in Keras 3 on TensorFlow."""

import os

# The library is built on TensorFlow (tf.data, TF Text, SavedModel, TFLite).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "keras_bert_kit needs the TensorFlow Keras backend; "
        f"KERAS_BACKEND is {keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow."
    )

from keras_bert_kit.configs import (  # noqa: E402
    PRESETS,
    BertConfig,
    DistilBertConfig,
    config_from_preset,
)
from keras_bert_kit.convert import (  # noqa: E402
    from_huggingface,
    from_keras_hub,
    from_model_garden,
    from_tf1_checkpoint,
    preprocessor_from_huggingface,
    to_huggingface,
    to_keras_hub,
)
from keras_bert_kit.distillation import Distiller, init_student_from_teacher  # noqa: E402
from keras_bert_kit.layers import (  # noqa: E402
    MaskedLMHead,
    NextSentenceHead,
)
from keras_bert_kit.models import (  # noqa: E402
    BertEncoder,
    BertPretrainer,
    DistilBertEncoder,
    DistilBertPretrainer,
)
from keras_bert_kit.optimization import WarmupDecay, create_optimizer  # noqa: E402
from keras_bert_kit.tasks import (  # noqa: E402
    SequenceClassifier,
    SequenceClassifierPreprocessor,
    SpanExtractor,
    SpanExtractorPreprocessor,
    TokenClassifier,
    TokenClassifierPreprocessor,
)
from keras_bert_kit.tokenization import (  # noqa: E402
    BertPreprocessor,
    BertTokenizer,
    train_wordpiece_vocabulary,
)
from keras_bert_kit import convert, data, distillation, metrics, tasks, tokenization  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "BertConfig",
    "BertEncoder",
    "BertPreprocessor",
    "BertPretrainer",
    "BertTokenizer",
    "DistilBertConfig",
    "DistilBertEncoder",
    "DistilBertPretrainer",
    "Distiller",
    "MaskedLMHead",
    "NextSentenceHead",
    "SequenceClassifier",
    "SequenceClassifierPreprocessor",
    "SpanExtractor",
    "SpanExtractorPreprocessor",
    "TokenClassifier",
    "TokenClassifierPreprocessor",
    "WarmupDecay",
    "config_from_preset",
    "convert",
    "create_optimizer",
    "distillation",
    "init_student_from_teacher",
    "data",
    "from_huggingface",
    "from_keras_hub",
    "from_model_garden",
    "from_tf1_checkpoint",
    "metrics",
    "preprocessor_from_huggingface",
    "tasks",
    "to_huggingface",
    "to_keras_hub",
    "tokenization",
    "train_wordpiece_vocabulary",
]
