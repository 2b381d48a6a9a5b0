"""Weight transfer from keras-hub's `BertBackbone` and `DistilBertBackbone`.

keras-hub (0.32) builds both backbones from the same pieces as we do, with
these differences in layout and defaults:

- Attention is Keras' `MultiHeadAttention`: separate query/key/value
  projections with per-head `[hidden, heads, head_size]` kernels, which we fuse
  into one `[hidden, 3 * hidden]` projection (see `weights.keras_mha_links`).
- `BertBackbone` uses the tanh-approximated GELU ("gelu_approximate");
  `DistilBertBackbone` uses Keras' "gelu", which is the exact erf form. The
  activation is read off the layers, not assumed from the class.
- Every LayerNorm has epsilon 1e-12, as in the original BERT.
- One `dropout` rate is used for both hidden and attention dropout.
- The pooler of `BertBackbone` is `pooled_dense`; `DistilBertBackbone` has
  none, and its [CLS] state is our `DistilBertEncoder`'s `pooled_output`.
"""

import warnings

import numpy as np

from keras_bert_kit.configs import BertConfig, DistilBertConfig
from keras_bert_kit.convert.activations import detect_activation
from keras_bert_kit.convert.weights import (
    TensorLink,
    dense_links,
    export_links,
    keras_mha_links,
    layer_norm_links,
    load_links,
    to_numpy,
)
from keras_bert_kit.models import BertEncoder, DistilBertEncoder, encoder_from_config


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



def _check_pair(encoder, backbone):
    architecture = _architecture(backbone)
    expected_class = BertEncoder if architecture == "bert" else DistilBertEncoder
    if not isinstance(encoder, expected_class):
        raise ValueError(
            f"A keras-hub {type(backbone).__name__} pairs with a {expected_class.__name__}; "
            f"got {type(encoder).__name__}."
        )
    if len(encoder.transformer_layers) != len(backbone.transformer_layers):
        raise ValueError(
            f"{backbone.name!r} has {len(backbone.transformer_layers)} transformer layers; "
            f"{encoder.name!r} has {len(encoder.transformer_layers)}."
        )
    return architecture


def keras_hub_links(encoder, backbone) -> list[TensorLink]:
    """The `TensorLink`s between our encoder and a keras-hub backbone of the same shape."""
    architecture = _check_pair(encoder, backbone)
    embeddings = encoder.embeddings
    if architecture == "bert":
        token_embedding = backbone.token_embedding
        position_embedding = backbone.position_embedding
    else:
        token_embedding = backbone.embeddings.token_embedding
        position_embedding = backbone.embeddings.position_embedding
    links = [
        TensorLink(embeddings.token_embedding.embeddings, (token_embedding.embeddings,), "copy"),
        TensorLink(
            embeddings.position_embeddings, (position_embedding.position_embeddings,), "copy"
        ),
    ]
    if architecture == "bert":
        links.append(
            TensorLink(
                embeddings.segment_embedding.embeddings,
                (backbone.segment_embedding.embeddings,),
                "copy",
            )
        )
    links += layer_norm_links(embeddings.layer_norm, backbone.embeddings_layer_norm)

    for ours, theirs in zip(encoder.transformer_layers, backbone.transformer_layers):
        links += keras_mha_links(ours.attention, theirs._self_attention_layer)
        links += layer_norm_links(ours.attention_layer_norm, theirs._self_attention_layer_norm)
        links += dense_links(ours.intermediate_dense, theirs._feedforward_intermediate_dense)
        links += dense_links(ours.output_dense, theirs._feedforward_output_dense)
        # keras-hub's "feedforward_layer_norm" follows the feed-forward residual
        # (post-LN), which is our output LayerNorm.
        links += layer_norm_links(ours.output_layer_norm, theirs._feedforward_layer_norm)

    if architecture == "bert":
        links += dense_links(encoder.pooler.dense, backbone.pooled_dense)
    return links


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
    load_links(encoder, keras_hub_links(encoder, backbone))


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
    encoder = encoder_from_config(config, dtype=dtype)
    load_keras_hub_weights(encoder, backbone)
    return encoder


# The activation each keras-hub backbone hard-codes.
_KERAS_HUB_ACTIVATIONS = {"bert": "gelu_approximate", "distilbert": "gelu"}


def to_keras_hub(encoder):
    """A keras-hub `BertBackbone` / `DistilBertBackbone` with the weights of our encoder.

    keras-hub fixes some settings that our configs leave open:

    - the activation: `BertBackbone` always uses the tanh GELU
      ("gelu_approximate"), `DistilBertBackbone` the exact one ("gelu"). An
      encoder with the other GELU converts with a warning: outputs then differ
      by about 1e-3. A ReLU encoder cannot be represented and raises.
    - one `dropout` rate for hidden and attention dropout: ours
      `dropout_rate` is used (dropout only matters in training).
    - LayerNorm epsilon 1e-12: an encoder with another epsilon raises.

    Args:
        encoder: our `BertEncoder` or `DistilBertEncoder` (its `.encoder` is
            taken from a pretrainer).

    Returns:
        The backbone; its inputs are `token_ids` (ours `input_ids`),
        `segment_ids` (BERT) and `padding_mask`.
    """
    import keras_hub  # The caller wants keras-hub objects, so it is installed.

    encoder = getattr(encoder, "encoder", encoder)
    if not isinstance(encoder, (BertEncoder, DistilBertEncoder)):
        raise ValueError(
            f"to_keras_hub needs a BertEncoder or DistilBertEncoder; got {type(encoder).__name__}."
        )
    config = encoder.config
    architecture = "bert" if isinstance(encoder, BertEncoder) else "distilbert"
    if config.layer_norm_epsilon != 1e-12:
        raise ValueError(
            f"keras-hub backbones use LayerNorm epsilon 1e-12; {encoder.name!r} uses "
            f"{config.layer_norm_epsilon}."
        )
    fixed = _KERAS_HUB_ACTIVATIONS[architecture]
    if config.hidden_activation == "relu":
        raise ValueError(
            f"keras-hub's {architecture} backbone always uses {fixed!r}; {encoder.name!r} uses "
            "'relu', which it cannot represent."
        )
    if config.hidden_activation != fixed:
        warnings.warn(
            f"{encoder.name!r} uses {config.hidden_activation!r} but keras-hub's {architecture} "
            f"backbone always uses {fixed!r}: the weights are copied exactly, the outputs "
            "will differ slightly (about 1e-3).",
            stacklevel=2,
        )
    sizes = dict(
        vocabulary_size=config.vocab_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size,
        dropout=config.dropout_rate,
        max_sequence_length=config.max_sequence_length,
    )
    if architecture == "bert":
        backbone = keras_hub.models.BertBackbone(num_segments=config.type_vocab_size, **sizes)
    else:
        backbone = keras_hub.models.DistilBertBackbone(**sizes)
    for variable, value in export_links(keras_hub_links(encoder, backbone)):
        variable.assign(np.reshape(value, variable.shape).astype(to_numpy(variable).dtype))
    return backbone

