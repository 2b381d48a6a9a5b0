"""The transformer encoder shared by BERT and DistilBERT, as a functional Keras model."""

import keras

from keras_bert_kit.configs import EncoderConfig
from keras_bert_kit.layers import TransformerBlock, TransformerEmbeddings
from keras_bert_kit.models.inputs import IdInputsModel, check_id_inputs


def _encode(embeddings, transformer_layers, inputs, query_positions=None):
    x = embeddings(inputs["input_ids"], inputs.get("segment_ids"))
    hidden_states, attentions = [x], []
    for index, layer in enumerate(transformer_layers):
        last = index == len(transformer_layers) - 1
        x, probabilities = layer(
            x, inputs["padding_mask"], query_positions=query_positions if last else None
        )
        hidden_states.append(x)
        attentions.append(probabilities)
    return hidden_states, attentions


def _pool(pooler, states):
    return pooler(states) if pooler is not None else states[:, 0, :]


class TransformerEncoder(IdInputsModel, keras.Model):
    """Base of `BertEncoder` and `DistilBertEncoder`; not registered itself.

    Subclasses set `config_class` and say how the pooled output is made.

    Inputs (dict, int32, `[batch, seq]`, dynamic batch and length):
        `input_ids`, `segment_ids` (when the config has segments), `padding_mask`
        (1 for real tokens, 0 for padding).
    Outputs (dict):
        `sequence_output` `[batch, seq, hidden]`, `pooled_output` `[batch, hidden]`,
        `hidden_states`: the embedding output then every layer's output,
        `attentions` (only with `output_attentions=True`): every layer's float32
        attention probabilities `[batch, heads, seq, seq]`.

    Ids are checked against their tables (and shapes against each other) in
    every mode; see `keras_bert_kit.models.inputs`.
    """

    config_class = EncoderConfig

    def __init__(self, config, output_attentions=False, dtype=None, **kwargs):
        config = self._resolve_config(config)
        type_vocab_size = getattr(config, "type_vocab_size", 0)

        # === Layers ===
        embeddings = TransformerEmbeddings(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            max_sequence_length=config.max_sequence_length,
            type_vocab_size=type_vocab_size,
            layer_norm_epsilon=config.layer_norm_epsilon,
            dropout_rate=config.dropout_rate,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name="embeddings",
        )
        transformer_layers = [
            TransformerBlock(
                num_heads=config.num_heads,
                intermediate_size=config.intermediate_size,
                activation=config.hidden_activation,
                dropout_rate=config.dropout_rate,
                attention_dropout_rate=config.attention_dropout_rate,
                layer_norm_epsilon=config.layer_norm_epsilon,
                initializer_range=config.initializer_range,
                dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i in range(config.num_layers)
        ]
        pooler = self._make_pooler(config, dtype)

        # === Functional model ===
        inputs = {"input_ids": keras.Input((None,), dtype="int32", name="input_ids")}
        if type_vocab_size:
            inputs["segment_ids"] = keras.Input((None,), dtype="int32", name="segment_ids")
        inputs["padding_mask"] = keras.Input((None,), dtype="int32", name="padding_mask")

        hidden_states, attentions = _encode(embeddings, transformer_layers, inputs)
        x = hidden_states[-1]
        outputs = {
            "sequence_output": x,
            "pooled_output": _pool(pooler, x),
            "hidden_states": hidden_states,
        }
        if output_attentions:
            outputs["attentions"] = attentions
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        if dtype is not None:
            # Functional.__init__ drops `dtype`; record it so get_config has it.
            self.dtype_policy = keras.dtype_policies.get(dtype)

        # === Config ===
        self.config = config
        self.output_attentions = output_attentions
        self.embeddings = embeddings
        self.transformer_layers = transformer_layers
        self.pooler = pooler
        self._input_limits = {"input_ids": config.vocab_size}
        if type_vocab_size:
            self._input_limits["segment_ids"] = type_vocab_size
        self._input_limits["padding_mask"] = 2

    @classmethod
    def _resolve_config(cls, config):
        if isinstance(config, str):
            return cls.config_class.from_preset(config)
        if isinstance(config, dict):
            return cls.config_class.from_dict(config)
        if type(config) is not cls.config_class:
            raise ValueError(
                f"{cls.__name__} needs a {cls.config_class.__name__} (or a preset name); "
                f"got {type(config).__name__}."
            )
        return config

    def _make_pooler(self, config, dtype):
        """The layer computing `pooled_output`, or None for the raw [CLS] state."""
        return None

    @property
    def token_embedding(self):
        """The token-embedding layer; `MaskedLMHead` ties its output projection to it."""
        return self.embeddings.token_embedding

    @property
    def input_names(self):
        return list(self._input_limits)

    def check_inputs(self, inputs, owner=None, allow_empty_batch=False):
        """The encoder inputs of `inputs`, validated (names, dtypes, shapes, id ranges).

        `allow_empty_batch`: let `[0, 0]` inputs through, for models (such as
        a token tagger) that map them to empty outputs; the encoder's own
        call refuses them, since its pooled output reads each first token.
        """
        return check_id_inputs(
            inputs,
            self._input_limits,
            owner=owner or self.name,
            max_sequence_length=self.config.max_sequence_length,
            allow_empty_batch=allow_empty_batch,
        )

    def call(self, inputs, training=None, mask=None):
        return super().call(self.check_inputs(inputs), training=training, mask=mask)

    def encode(self, inputs, query_positions=None):
        """Runs the embeddings and every layer on `inputs`: (hidden_states, attentions).

        `hidden_states`: the embedding output, then every layer's output
        `[batch, seq, hidden]`; `attentions`: every layer's float32
        probabilities `[batch, heads, seq, seq]`. With `query_positions`
        (int `[batch, n]`), the last layer computes only those rows, while
        its keys and values still see every token: its state is then
        `[batch, n, hidden]` and its attention `[batch, heads, n, seq]`.

        Pretrainers and tasks build their functional graphs with it, over
        this encoder's own layers (so the weights are shared), instead of
        calling the encoder as a nested model: their graphs then reach every
        layer's states and attention maps (see their `with_internals`).
        """
        return _encode(self.embeddings, self.transformer_layers, inputs, query_positions)

    def pool(self, states):
        """`pooled_output` from final states whose first row is [CLS]'s: `[batch, hidden]`."""
        return _pool(self.pooler, states)

    def final_states_at(self, inputs, positions):
        """The last layer's output at `positions` only: `[batch, n, hidden]` (see `encode`)."""
        hidden_states, _ = self.encode(inputs, query_positions=positions)
        return hidden_states[-1]

    def get_config(self):
        return {
            "config": self.config.to_dict(),
            "output_attentions": self.output_attentions,
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)
