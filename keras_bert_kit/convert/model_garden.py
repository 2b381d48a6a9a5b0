"""Weight transfer from TensorFlow Model Garden's BERT encoder.

Model Garden (tf-models-official 2.20, built on tf_keras) implements BERT as
`official.nlp.modeling.networks.BertEncoderV2` (a layer) and the older
`BertEncoder` (a functional model); both hold the same sublayers, so both load.
Differences from our encoder, in layout and defaults:

- Attention is tf_keras' `MultiHeadAttention` with per-head
  `[hidden, heads, head_size]` kernels, fused here into our one QKV projection.
- The default `inner_activation` is the tanh-approximated GELU. Its serialized
  config says only "<lambda>" (as would any lambda), so the activation is
  identified by evaluating it; see `activations.detect_activation`.
- The default `type_vocab_size` is 16, not 2; it is read from the encoder.
- Every LayerNorm has epsilon 1e-12 (the blocks' `norm_epsilon` default).
- The feed-forward sublayers are `EinsumDense` layers named "intermediate" and
  "output", with `[in, out]` kernels like our `Dense`.
"""

import os

from keras_bert_kit.configs import BertConfig
from keras_bert_kit.convert.activations import detect_activation
from keras_bert_kit.convert.tensor_files import open_tf_checkpoint
from keras_bert_kit.convert.weights import (
    TensorLink,
    dense_links,
    keras_mha_links,
    layer_norm_links,
    load_links,
)
from keras_bert_kit.layers.activations import get_activation
from keras_bert_kit.models import BertEncoder

# Block settings (from `TransformerEncoderBlock.get_config()`) our architecture
# has, with the value ours corresponds to. `BertEncoderV2` never changes them,
# but a subclass or a hand-assembled encoder could.
_REQUIRED_BLOCK_SETTINGS = {
    "norm_first": False,
    "use_bias": True,
    "use_query_residual": True,
    "output_last_dim": None,
    "attention_axes": None,
    "num_kv_heads": None,
    "src_block_size": None,
    "linformer_dim": None,
}


def _check_encoder_type(encoder):
    from official.nlp.modeling import networks  # Only importable where the caller has it.

    if not isinstance(encoder, (networks.BertEncoderV2, networks.BertEncoder)):
        raise ValueError(
            "from_model_garden needs an official.nlp.modeling.networks.BertEncoderV2 "
            f"(or BertEncoder); got {type(encoder).__name__}."
        )


def _ensure_built(encoder):
    """Creates the variables of a `BertEncoderV2` that has never been called."""
    if encoder.built:
        return
    import tensorflow as tf

    ids = tf.zeros((1, 1), tf.int32)
    encoder(dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=ids))


def _initializer_range(initializer, default):
    """The stddev of a serialized (truncated) normal initializer, else `default`."""
    try:
        return float(initializer["config"]["stddev"])
    except (KeyError, TypeError, ValueError):
        return default


def config_from_model_garden(encoder, hidden_activation=None):
    """The `BertConfig` describing a Model Garden BERT encoder.

    Args:
        encoder: a built or unbuilt `BertEncoderV2` / `BertEncoder`.
        hidden_activation: our name of its feed-forward activation; default:
            identified by evaluating the encoder's own activation function.
    """
    _check_encoder_type(encoder)
    values = encoder.get_config()
    if values["embedding_width"] != values["hidden_size"]:
        raise ValueError(
            f"{encoder.name!r} factorizes its embeddings (embedding_width="
            f"{values['embedding_width']}, hidden_size={values['hidden_size']}); "
            "our encoders have no embedding projection."
        )
    # The blocks create their sublayers (activation, LayerNorms) when built.
    _ensure_built(encoder)
    blocks = encoder.transformer_layers
    for block in blocks:
        block_values = block.get_config()
        wrong = {
            key: block_values.get(key)
            for key, want in _REQUIRED_BLOCK_SETTINGS.items()
            if block_values.get(key) != want
        }
        if getattr(block, "_use_rms_norm", False):
            wrong["use_rms_norm"] = True
        if wrong:
            raise ValueError(
                f"{block.name!r} has settings our encoders do not support: {wrong} "
                f"(supported: {_REQUIRED_BLOCK_SETTINGS}, use_rms_norm=False)."
            )

    epsilons = {encoder._embedding_norm_layer.epsilon}
    for block in blocks:
        epsilons |= {block._attention_layer_norm.epsilon, block._output_layer_norm.epsilon}
    if len(epsilons) != 1:
        raise ValueError(
            f"{encoder.name!r} uses several LayerNorm epsilons ({sorted(epsilons)}); "
            "our encoders use one."
        )

    if hidden_activation is None:
        activations = {
            detect_activation(
                block._intermediate_activation_layer.activation, f"{encoder.name}/{block.name}"
            )
            for block in blocks
        }
        if len(activations) != 1:
            raise ValueError(
                f"The transformer layers of {encoder.name!r} use different activations "
                f"({sorted(activations)}); our encoders use one."
            )
        hidden_activation = activations.pop()

    return BertConfig(
        vocab_size=values["vocab_size"],
        hidden_size=values["hidden_size"],
        num_layers=values["num_layers"],
        num_heads=values["num_attention_heads"],
        intermediate_size=values["inner_dim"],
        max_sequence_length=values["max_sequence_length"],
        type_vocab_size=values["type_vocab_size"],
        hidden_activation=hidden_activation,
        dropout_rate=values["output_dropout"],
        attention_dropout_rate=values["attention_dropout"],
        layer_norm_epsilon=float(epsilons.pop()),
        initializer_range=_initializer_range(
            values.get("initializer"), BertConfig.initializer_range
        ),
    )



def load_model_garden_weights(encoder, mg_encoder):
    """Copies every weight of a Model Garden BERT encoder into our `BertEncoder`.

    Args:
        encoder: our built `BertEncoder`, of the same sizes.
        mg_encoder: a `BertEncoderV2` or `BertEncoder` (built if it was not).

    Raises:
        ValueError: for a mismatched layer count or tensor shape (naming the
            source tensor and both shapes).
    """
    _check_encoder_type(mg_encoder)
    _ensure_built(mg_encoder)
    if not isinstance(encoder, BertEncoder):
        raise ValueError(
            f"Model Garden weights load into a BertEncoder; got {type(encoder).__name__}."
        )
    blocks = mg_encoder.transformer_layers
    if len(encoder.transformer_layers) != len(blocks):
        raise ValueError(
            f"{mg_encoder.name!r} has {len(blocks)} transformer layers; "
            f"{encoder.name!r} has {len(encoder.transformer_layers)}."
        )

    embeddings = encoder.embeddings
    links = [
        TensorLink(
            embeddings.token_embedding.embeddings, (mg_encoder.get_embedding_table(),), "copy"
        ),
        TensorLink(
            embeddings.position_embeddings,
            (mg_encoder._position_embedding_layer._position_embeddings,),
            "copy",
        ),
        TensorLink(
            embeddings.segment_embedding.embeddings,
            (mg_encoder._type_embedding_layer.embeddings,),
            "copy",
        ),
    ]
    links += layer_norm_links(embeddings.layer_norm, mg_encoder._embedding_norm_layer)
    for ours, block in zip(encoder.transformer_layers, blocks):
        links += keras_mha_links(ours.attention, block._attention_layer)
        links += layer_norm_links(ours.attention_layer_norm, block._attention_layer_norm)
        links += dense_links(ours.intermediate_dense, block._intermediate_dense)
        links += dense_links(ours.output_dense, block._output_dense)
        links += layer_norm_links(ours.output_layer_norm, block._output_layer_norm)
    links += dense_links(encoder.pooler.dense, mg_encoder.pooler_layer)
    load_links(encoder, links)


# -- TF2 checkpoints -----------------------------------------------------------------

_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
_EMBEDDING_TABLE = "_embedding_layer/embeddings" + _VALUE


def _checkpoint_prefix(shapes, path):
    """The object path of the encoder in a checkpoint: "encoder/", "pretrainer/encoder/"..."""
    prefixes = sorted(name[: -len(_EMBEDDING_TABLE)] for name in shapes if name.endswith(
        "/" + _EMBEDDING_TABLE
    ))
    if len(prefixes) != 1:
        found = "none" if not prefixes else ", ".join(p.rstrip("/") for p in prefixes)
        raise ValueError(
            f"{path}: expected one BertEncoderV2 in the checkpoint (a variable ending in "
            f"'{_EMBEDDING_TABLE.split('/.')[0]}'); found {found}. Checkpoints written with "
            "tf.train.Checkpoint(encoder=...) or BertPretrainerV2.checkpoint_items are supported."
        )
    return prefixes[0]


def _encoder_kwargs_from_checkpoint(shapes, prefix, path):
    """BertEncoderV2 constructor sizes, read off the checkpoint's variable shapes."""

    def shape(name):
        key = prefix + name + _VALUE
        if key not in shapes:
            raise ValueError(f"{path}: the checkpoint lacks {key}.")
        return shapes[key]

    if any(name.startswith(prefix + "_embedding_projection/") for name in shapes):
        raise ValueError(
            f"{path}: the encoder factorizes its embeddings (an embedding projection); "
            "our encoders have none."
        )
    vocab_size, hidden_size = shape("_embedding_layer/embeddings")
    layer_ids = {
        int(name[len(prefix + "_transformer_layers/") :].split("/")[0])
        for name in shapes
        if name.startswith(prefix + "_transformer_layers/")
    }
    if not layer_ids or layer_ids != set(range(len(layer_ids))):
        raise ValueError(f"{path}: transformer layers {sorted(layer_ids)} are not 0..N-1.")
    block = "_transformer_layers/0/"
    return dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=len(layer_ids),
        num_attention_heads=shape(block + "_attention_layer/_query_dense/kernel")[1],
        inner_dim=shape(block + "_intermediate_dense/kernel")[1],
        max_sequence_length=shape("_position_embedding_layer/embeddings")[0],
        type_vocab_size=shape("_type_embedding_layer/embeddings")[0],
    )


def _restore_from_checkpoint(path, hidden_activation):
    """A Model Garden `BertEncoderV2` built to the checkpoint's sizes and restored from it."""
    import tensorflow as tf
    from official.nlp.modeling import networks

    path, reader = open_tf_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    prefix = _checkpoint_prefix(shapes, path)
    encoder = networks.BertEncoderV2(
        inner_activation=get_activation(hidden_activation),
        **_encoder_kwargs_from_checkpoint(shapes, prefix, path),
    )
    _ensure_built(encoder)
    root = encoder
    for part in reversed(prefix.rstrip("/").split("/")):
        root = tf.train.Checkpoint(**{part: root})
    # Every variable of the encoder must come from the file; heads and
    # optimizer slots in the same checkpoint are not ours to load.
    root.read(path).expect_partial().assert_existing_objects_matched()
    return encoder


def from_model_garden(encoder, hidden_activation=None, dtype=None):
    """A `BertEncoder` with the weights of a Model Garden BERT encoder or TF2 checkpoint.

    The two compute the same function: same sequence and pooled outputs,
    padding handled alike. Model Garden's inputs `input_word_ids`,
    `input_type_ids` and `input_mask` are our `input_ids`, `segment_ids` and
    `padding_mask`. An `output_range` on the source only trims its last
    layer's output; the converted encoder returns every position.

    Args:
        encoder: an `official.nlp.modeling.networks.BertEncoderV2` (or the
            older `BertEncoder`), post-LayerNorm, without factorized embeddings
            (an unbuilt `BertEncoderV2` is built by one call on a dummy input);
            or the path of a TF2 checkpoint (a prefix such as `.../ckpt-1`, or
            its directory) holding a `BertEncoderV2`, as written by
            `tf.train.Checkpoint(encoder=...)` or with a pretrainer's
            `checkpoint_items`. A checkpoint's sizes are read off its tensors.
        hidden_activation: our name of its feed-forward activation ("gelu",
            "gelu_approximate" or "relu"). For an object, the default is
            identified by evaluating the encoder's activation, which fails only
            for an activation we do not have; given explicitly, it is used as
            is. A checkpoint does not record it: the default is Model Garden's
            own ("gelu" there is the tanh form, our "gelu_approximate").
        dtype: dtype policy of the new encoder; default: the global policy.

    Returns:
        The new `BertEncoder`.

    Example:
    ```python
    mg = official.nlp.modeling.networks.BertEncoderV2(vocab_size=30522)
    encoder = keras_bert_kit.convert.from_model_garden(mg)
    encoder = keras_bert_kit.convert.from_model_garden("path/to/bert_ckpt/ckpt-1")
    ```
    """
    if isinstance(encoder, (str, os.PathLike)):
        encoder = _restore_from_checkpoint(encoder, hidden_activation or "gelu_approximate")
    config = config_from_model_garden(encoder, hidden_activation=hidden_activation)
    ours = BertEncoder(config, dtype=dtype)
    load_model_garden_weights(ours, encoder)
    return ours
