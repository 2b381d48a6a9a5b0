"""A model's outputs together with its encoder's hidden states and attention maps.

Distillation losses compare what the teacher and the student compute inside
their encoders, but the pretrainers and tasks output only logits. Each builds
its graph with one method, which `with_internals` calls again on fresh inputs
over the same layers (so the weights are shared), with every layer's output.
"""

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
    """`model.with_internals()`: its outputs with every hidden state and attention map.

    A functional view of `model`, sharing its weights, with outputs
    `outputs` (what `model` outputs), `hidden_states` (the embedding output,
    then every layer's `[batch, seq, hidden]`) and `attentions` (every
    layer's float32 probabilities `[batch, heads, seq, seq]`).
    """
    encoder_of(model)
    return model.with_internals()
