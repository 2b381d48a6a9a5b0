"""DistilBERT encoder."""

import keras

from keras_bert_kit.configs import DistilBertConfig
from keras_bert_kit.models.encoder import TransformerEncoder


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class DistilBertEncoder(TransformerEncoder):
    """DistilBERT (Sanh et al., 2019): BERT without segment embeddings or pooler.

    Inputs are `input_ids` and `padding_mask` (a `segment_ids` entry is ignored,
    so a BERT preprocessor's output can be fed as is). `pooled_output` is the
    final [CLS] hidden state, with no weights of its own, as DistilBERT's
    classifiers use it.

    Args:
        config: a `DistilBertConfig` or a preset name such as "distilbert_base".
        output_attentions: also output every layer's attention probabilities.
        dtype: a dtype policy such as "mixed_bfloat16"; default: the global one.
    """

    config_class = DistilBertConfig
