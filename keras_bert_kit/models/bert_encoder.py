"""BERT encoder."""

import keras

from keras_bert_kit.configs import BertConfig
from keras_bert_kit.layers import CLSPooler
from keras_bert_kit.models.encoder import TransformerEncoder


@keras.saving.register_keras_serializable(package="keras_bert_kit")
class BertEncoder(TransformerEncoder):
    """BERT (Devlin et al., 2019): token + segment + position embeddings, post-LN
    transformer layers, and a tanh pooler over [CLS].

    Args:
        config: a `BertConfig` or a preset name such as "bert_base".
        output_attentions: also output every layer's attention probabilities.
        dtype: a dtype policy such as "mixed_bfloat16"; default: the global one.

    Example:
    ```python
    encoder = BertEncoder("bert_tiny")
    out = encoder({"input_ids": ids, "segment_ids": segments, "padding_mask": mask})
    out["sequence_output"], out["pooled_output"], out["hidden_states"]
    ```
    """

    config_class = BertConfig

    def _make_pooler(self, config, dtype):
        return CLSPooler(initializer_range=config.initializer_range, dtype=dtype, name="pooler")
