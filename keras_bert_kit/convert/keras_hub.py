"""Weight transfer from keras-hub's `BertBackbone` and `DistilBertBackbone`.

keras-hub (0.32) builds both backbones from the same pieces as we do, with
these differences in layout and defaults:

- Attention is Keras' `MultiHeadAttention`: separate query/key/value
  projections with per-head `[hidden, heads, head_size]` kernels, which we fuse
  into one `[hidden, 3 * hidden]` projection (see `weights.keras_mha_assignments`).
- `BertBackbone` uses the tanh-approximated GELU ("gelu_approximate");
  `DistilBertBackbone` uses Keras' "gelu", which is the exact erf form. The
  activation is read off the layers, not assumed from the class.
- Every LayerNorm has epsilon 1e-12, as in the original BERT.
- One `dropout` rate is used for both hidden and attention dropout.
- The pooler of `BertBackbone` is `pooled_dense`; `DistilBertBackbone` has
  none, and its [CLS] state is our `DistilBertEncoder`'s `pooled_output`.
"""

from keras_bert_kit.configs import BertConfig, DistilBertConfig
from keras_bert_kit.convert.activations import detect_activation
from keras_bert_kit.convert.weights import (
    assign_weights,
    copy_assignment,
    dense_assignments,
    keras_mha_assignments,
    layer_norm_assignments,
)
from keras_bert_kit.models import BertEncoder, DistilBertEncoder


def _architecture(backbone):
    """"bert" or "distilbert" for a keras-hub backbone; raises for anything else."""
    import keras_hub  # The caller already has it imported; it is not our dependency.

    # DistilBertBackbone is not a subclass of BertBackbone, but check it first
    # in case a future release makes it one.
    if isinstance(backbone, keras_hub.models.DistilBertBackbone):
        return "distilbert"
    if isinstance(backbone, keras_hub.models.BertBackbone):
        return "bert"
    raise ValueError(
        "from_keras_hub needs a keras_hub.models.BertBackbone or DistilBertBackbone; "
        f"got {type(backbone).__name__}."
    )


def _shared_layer_setting(backbone, read, what):
    """The value `read(layer)` has on every transformer layer; raises if they differ."""
    values = {read(layer) for layer in backbone.transformer_layers}
    if len(values) != 1:
        raise ValueError(
            f"The transformer layers of {backbone.name!r} differ in {what} ({sorted(values)}); "
            "our encoders use one value for all layers."
        )
    return values.pop()


def config_from_keras_hub(backbone):
    """The `BertConfig` / `DistilBertConfig` describing a keras-hub backbone."""
    architecture = _architecture(backbone)
    if not backbone.transformer_layers:
        raise ValueError(f"{backbone.name!r} has no transformer layers.")
    if _shared_layer_setting(backbone, lambda layer: layer.normalize_first, "normalize_first"):
        raise ValueError(
            f"{backbone.name!r} is pre-LayerNorm (normalize_first=True); "
            "our encoders are post-LayerNorm."
        )
    epsilon = _shared_layer_setting(
        backbone, lambda layer: layer.layer_norm_epsilon, "layer_norm_epsilon"
    )
    if backbone.embeddings_layer_norm.epsilon != epsilon:
        raise ValueError(
            f"{backbone.name!r} uses LayerNorm epsilon {backbone.embeddings_layer_norm.epsilon} "
            f"on the embeddings but {epsilon} in the transformer layers; our encoders use one "
            "epsilon for both."
        )
    activation = _shared_layer_setting(
        backbone,
        lambda layer: detect_activation(layer.activation, f"{backbone.name}/{layer.name}"),
        "activation",
    )

    values = backbone.get_config()
    fields = dict(
        vocab_size=values["vocabulary_size"],
        hidden_size=values["hidden_dim"],
        num_layers=values["num_layers"],
        num_heads=values["num_heads"],
        intermediate_size=values["intermediate_dim"],
        max_sequence_length=values["max_sequence_length"],
        hidden_activation=activation,
        # keras-hub applies its single `dropout` rate to the attention
        # probabilities as well as to each sublayer's output.
        dropout_rate=values["dropout"],
        attention_dropout_rate=values["dropout"],
        layer_norm_epsilon=float(epsilon),
    )
    if architecture == "bert":
        return BertConfig(type_vocab_size=values["num_segments"], **fields)
    return DistilBertConfig(**fields)



def load_keras_hub_weights(encoder, backbone):
    """Copies every weight of a keras-hub backbone into our (built) `encoder`.

    Args:
        encoder: a `BertEncoder` for a `BertBackbone`, a `DistilBertEncoder`
            for a `DistilBertBackbone`, of the same sizes.
        backbone: the keras-hub backbone.

    Raises:
        ValueError: for a mismatched architecture, layer count or tensor shape
            (naming the source tensor and both shapes).
    """
    architecture = _architecture(backbone)
    expected_class = BertEncoder if architecture == "bert" else DistilBertEncoder
    if not isinstance(encoder, expected_class):
        raise ValueError(
            f"A keras-hub {type(backbone).__name__} loads into a {expected_class.__name__}; "
            f"got {type(encoder).__name__}."
        )
    if len(encoder.transformer_layers) != len(backbone.transformer_layers):
        raise ValueError(
            f"{backbone.name!r} has {len(backbone.transformer_layers)} transformer layers; "
            f"{encoder.name!r} has {len(encoder.transformer_layers)}."
        )

    embeddings = encoder.embeddings
    if architecture == "bert":
        token_embedding = backbone.token_embedding
        position_embedding = backbone.position_embedding
    else:
        token_embedding = backbone.embeddings.token_embedding
        position_embedding = backbone.embeddings.position_embedding
    assignments = [
        copy_assignment(embeddings.token_embedding.embeddings, token_embedding.embeddings),
        copy_assignment(embeddings.position_embeddings, position_embedding.position_embeddings),
    ]
    if architecture == "bert":
        assignments.append(
            copy_assignment(
                embeddings.segment_embedding.embeddings, backbone.segment_embedding.embeddings
            )
        )
    assignments += layer_norm_assignments(embeddings.layer_norm, backbone.embeddings_layer_norm)

    for ours, theirs in zip(encoder.transformer_layers, backbone.transformer_layers):
        assignments += keras_mha_assignments(ours.attention, theirs._self_attention_layer)
        assignments += layer_norm_assignments(
            ours.attention_layer_norm, theirs._self_attention_layer_norm
        )
        assignments += dense_assignments(
            ours.intermediate_dense, theirs._feedforward_intermediate_dense
        )
        assignments += dense_assignments(ours.output_dense, theirs._feedforward_output_dense)
        # keras-hub's "feedforward_layer_norm" follows the feed-forward residual
        # (post-LN), which is our output LayerNorm.
        assignments += layer_norm_assignments(
            ours.output_layer_norm, theirs._feedforward_layer_norm
        )

    if architecture == "bert":
        assignments += dense_assignments(encoder.pooler.dense, backbone.pooled_dense)
    assign_weights(encoder, assignments)


def from_keras_hub(backbone, dtype=None):
    """A `BertEncoder` / `DistilBertEncoder` with the weights of a keras-hub backbone.

    The two compute the same function: same sequence output (and, for BERT,
    pooled output), padding handled alike. keras-hub's input `token_ids` is
    our `input_ids`; `segment_ids` and `padding_mask` keep their names.

    Args:
        backbone: a built `keras_hub.models.BertBackbone` or
            `keras_hub.models.DistilBertBackbone` (e.g. from `from_preset`).
        dtype: dtype policy of the new encoder; default: the global policy.

    Returns:
        The new encoder; its `config` is built from the backbone's.

    Example:
    ```python
    backbone = keras_hub.models.BertBackbone.from_preset("bert_tiny_en_uncased")
    encoder = keras_bert_kit.convert.from_keras_hub(backbone)
    ```
    """
    config = config_from_keras_hub(backbone)
    encoder_class = BertEncoder if isinstance(config, BertConfig) else DistilBertEncoder
    encoder = encoder_class(config, dtype=dtype)
    load_keras_hub_weights(encoder, backbone)
    return encoder
