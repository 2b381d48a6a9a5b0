"""A model's outputs together with its encoder's hidden states and attention maps.

Distillation losses compare what the teacher and the student compute inside
their encoders, but the pretrainers and tasks output only logits. Rather than
teaching every model a second way to run, `with_internals` re-runs a model's
own functional graph, on its own layers (so the weights are shared), and
records each transformer layer's output on the way.
"""

import keras

from keras_bert_kit.layers import TransformerBlock, TransformerEmbeddings
from keras_bert_kit.models.encoder import TransformerEncoder


def encoder_of(model):
    """The `BertEncoder` / `DistilBertEncoder` inside `model` (or `model` itself)."""
    if isinstance(model, TransformerEncoder):
        return model
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, TransformerEncoder):
        raise ValueError(
            f"{type(model).__name__} holds no BERT or DistilBERT encoder; distillation "
            "takes keras_bert_kit pretrainers and tasks (BertPretrainer, "
            "DistilBertPretrainer, SequenceClassifier, TokenClassifier, SpanExtractor)."
        )
    return encoder


def with_internals(model):
    """A functional view of `model`, sharing its weights, with three outputs.

    - `outputs`: what `model` outputs (same structure);
    - `hidden_states`: the embedding output, then every transformer layer's
      output over the whole sequence, `[batch, seq, hidden]` each;
    - `attentions`: every layer's float32 attention probabilities
      `[batch, heads, seq, seq]`.

    A pretrainer's last layer normally computes only the rows its heads read;
    in the view it computes every row (its states are compared at every real
    token) and the heads still get their rows. The view takes the same input
    dict as `model`; `training` reaches every layer as usual.
    """
    encoder = encoder_of(model)
    hidden_states, attentions = [], []

    def call(layer, *args, **kwargs):
        if isinstance(layer, TransformerEncoder):
            # A task calls its encoder as one nested model: walk into it.
            return layer._run_through_graph(args[0], call_fn=call)
        if isinstance(layer, TransformerEmbeddings):
            outputs = layer(*args, **kwargs)
            hidden_states.append(outputs)
            return outputs
        if isinstance(layer, TransformerBlock):
            rows = kwargs.pop("query_positions", None)
            states, probabilities = layer(*args, **kwargs)
            hidden_states.append(states)
            attentions.append(probabilities)
            if rows is not None:
                take = keras.ops.take_along_axis
                states = take(states, rows[:, :, None], axis=1)
                probabilities = take(probabilities, rows[:, None, :, None], axis=2)
            return states, probabilities
        return layer(*args, **kwargs)

    inputs = keras.tree.map_structure(
        lambda x: keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name), model.input
    )
    # `_run_through_graph` is how Keras itself re-runs a functional graph
    # (`clone_model` with a `call_function`); clone_model would also rebuild
    # the model's optimizer, which a frozen teacher must not carry.
    outputs = model._run_through_graph(inputs, call_fn=call)
    expected = encoder.config.num_layers + 1
    if len(hidden_states) != expected:
        raise ValueError(
            f"{model.name} runs {len(hidden_states)} embedding and transformer layers, but its "
            f"encoder has {expected}: distillation needs a model that runs its encoder once."
        )
    return keras.Model(
        inputs,
        {"outputs": outputs, "hidden_states": hidden_states, "attentions": attentions},
        name=f"{model.name}_with_internals",
    )
