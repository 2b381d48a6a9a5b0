"""Helpers running transformers' torch models as the reference in conversion tests."""

import numpy as np
import torch
import transformers

from keras_bert_kit.convert.huggingface import huggingface_links
from keras_bert_kit.convert.weights import TensorLink, load_links
from tests.conftest import TINY_SIZES

HF_BERT_SIZES = dict(
    vocab_size=TINY_SIZES["vocab_size"],
    hidden_size=TINY_SIZES["hidden_size"],
    num_hidden_layers=TINY_SIZES["num_layers"],
    num_attention_heads=TINY_SIZES["num_heads"],
    intermediate_size=TINY_SIZES["intermediate_size"],
    max_position_embeddings=TINY_SIZES["max_sequence_length"],
)
HF_DISTILBERT_SIZES = dict(
    vocab_size=TINY_SIZES["vocab_size"],
    dim=TINY_SIZES["hidden_size"],
    n_layers=TINY_SIZES["num_layers"],
    n_heads=TINY_SIZES["num_heads"],
    hidden_dim=TINY_SIZES["intermediate_size"],
    max_position_embeddings=TINY_SIZES["max_sequence_length"],
)


def randomize_torch(model, seed=0):
    """Random values for every parameter, LayerNorm scales around 1 (see randomize_weights)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            value = torch.randn(parameter.shape, generator=generator) * 0.15
            if "LayerNorm.weight" in name or "layer_norm.weight" in name:
                value += 1.0
            parameter.copy_(value)
    # Re-tie: copy_ wrote through the shared tensor, but be explicit.
    model.tie_weights()
    return model.eval()


def tiny_hf_model(architecture, seed=0, **overrides):
    """A randomly initialised transformers model of the tiny test sizes."""
    if architecture.startswith("DistilBert"):
        config = transformers.DistilBertConfig(**{**HF_DISTILBERT_SIZES, **overrides})
    else:
        config = transformers.BertConfig(**{**HF_BERT_SIZES, **overrides})
    model = getattr(transformers, architecture)(config)
    return randomize_torch(model, seed)


def torch_inputs(inputs, with_segments=True):
    out = {
        "input_ids": torch.tensor(np.asarray(inputs["input_ids"]), dtype=torch.long),
        "attention_mask": torch.tensor(np.asarray(inputs["padding_mask"]), dtype=torch.long),
    }
    if with_segments:
        out["token_type_ids"] = torch.tensor(np.asarray(inputs["segment_ids"]), dtype=torch.long)
    return out


def gather_positions(logits, positions):
    """`[batch, seq, vocab]` logits at `[batch, num_predictions]` positions."""
    logits = np.asarray(logits)
    return np.take_along_axis(logits, np.asarray(positions)[:, :, None], axis=1)


# -- task models: the encoder plus one dense head, as transformers lays them out ------

# transformers' task architecture -> the name of its dense head.
HF_TASK_HEADS = {
    "BertForSequenceClassification": "classifier",
    "BertForTokenClassification": "classifier",
    "BertForQuestionAnswering": "qa_outputs",
}


def task_links(task, architecture, head_layer):
    """`TensorLink`s between one of our tasks and a transformers task model's state dict.

    The encoder goes by the converter's own table under "bert."; the head is
    a torch `Linear` against our Dense layer `head_layer` of `task`.
    """
    head_name = HF_TASK_HEADS[architecture]
    dense = task.get_layer(head_layer)
    return huggingface_links(task.encoder, prefix="bert.") + [
        TensorLink(dense.kernel, (f"{head_name}.weight",), "transpose"),
        TensorLink(dense.bias, (f"{head_name}.bias",), "copy"),
    ]


def torch_state(model):
    """A torch model's parameters as `{name: numpy array}`."""
    return {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}


def load_task_from_torch(task, model, architecture, head_layer):
    """Copies a transformers task model's weights into our `task`.

    Our pooler is left as it is where transformers' model has none
    (token classification, question answering): those tasks freeze it.
    """
    state = torch_state(model)
    links = task_links(task, architecture, head_layer)
    loaded, missing = [], []
    for link in links:
        if all(name in state for name in link.sources):
            loaded.append(link)
        else:
            missing.append(link.target)
    load_links(task, loaded, read=state.__getitem__, left_at_init=missing)
