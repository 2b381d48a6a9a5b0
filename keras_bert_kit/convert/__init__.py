"""Moving weights between our models and other BERT implementations.

- `from_huggingface` / `to_huggingface`: Hugging Face model directories
  (`BertModel`, `BertForPreTraining`, `BertForMaskedLM`, `DistilBertModel`,
  `DistilBertForMaskedLM`); `preprocessor_from_huggingface` for the vocab.
- `from_keras_hub` / `to_keras_hub`: keras-hub `BertBackbone` / `DistilBertBackbone`.
- `from_model_garden`: TensorFlow Model Garden `BertEncoderV2`, object or TF2 checkpoint.
- `from_tf1_checkpoint`: the original google-research/bert checkpoints.

Each format is one table of `weights.TensorLink`s read in either direction.
Imports check every tensor before loading any, name what is missing or
misshapen, and never leave a variable silently at its random init.
"""

from keras_bert_kit.convert.huggingface import (
    from_huggingface,
    preprocessor_from_huggingface,
    to_huggingface,
)
from keras_bert_kit.convert.keras_hub import from_keras_hub, to_keras_hub
from keras_bert_kit.convert.model_garden import from_model_garden
from keras_bert_kit.convert.tensor_files import CheckpointFormatError
from keras_bert_kit.convert.tf1_checkpoint import from_tf1_checkpoint

__all__ = [
    "CheckpointFormatError",
    "from_huggingface",
    "from_keras_hub",
    "from_model_garden",
    "from_tf1_checkpoint",
    "preprocessor_from_huggingface",
    "to_huggingface",
    "to_keras_hub",
]
