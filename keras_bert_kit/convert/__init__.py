"""Weight transfer into our encoders from other BERT implementations.

- `from_keras_hub`: keras-hub `BertBackbone` / `DistilBertBackbone`.
- `from_model_garden`: TensorFlow Model Garden `BertEncoderV2`.

Each builds our config from the source's, then loads every variable through
`weights.assign_weights`, which refuses to leave any variable at its random
initial value and names any tensor whose shape does not fit.
"""

from keras_bert_kit.convert.keras_hub import from_keras_hub
from keras_bert_kit.convert.model_garden import from_model_garden

__all__ = ["from_keras_hub", "from_model_garden"]
