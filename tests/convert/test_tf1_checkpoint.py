"""Original google-research/bert (TF1) checkpoints -> our BERT models.

The checkpoint is written here with TF1's `Saver`, named by hand after the
original BERT's variable names (not through the importer's own translation),
from a random transformers `BertForPreTraining`, which is then the reference.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
import torch

import keras_bert_kit as kbk
from tests.conftest import encoder_inputs, max_abs_diff, random_inputs
from tests.convert.hf_reference import gather_positions, tiny_hf_model, torch_inputs

ATOL = 1e-4


def _tf1_variables(reference):
    """{original BERT name: value} for a transformers BertForPreTraining."""
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    out = {
        "bert/embeddings/word_embeddings": state["bert.embeddings.word_embeddings.weight"],
        "bert/embeddings/position_embeddings": state["bert.embeddings.position_embeddings.weight"],
        "bert/embeddings/token_type_embeddings":
            state["bert.embeddings.token_type_embeddings.weight"],
        "bert/embeddings/LayerNorm/gamma": state["bert.embeddings.LayerNorm.weight"],
        "bert/embeddings/LayerNorm/beta": state["bert.embeddings.LayerNorm.bias"],
        "bert/pooler/dense/kernel": state["bert.pooler.dense.weight"].T,
        "bert/pooler/dense/bias": state["bert.pooler.dense.bias"],
        "cls/predictions/transform/dense/kernel":
            state["cls.predictions.transform.dense.weight"].T,
        "cls/predictions/transform/dense/bias": state["cls.predictions.transform.dense.bias"],
        "cls/predictions/transform/LayerNorm/gamma":
            state["cls.predictions.transform.LayerNorm.weight"],
        "cls/predictions/transform/LayerNorm/beta":
            state["cls.predictions.transform.LayerNorm.bias"],
        "cls/predictions/output_bias": state["cls.predictions.bias"],
        "cls/seq_relationship/output_weights": state["cls.seq_relationship.weight"],
        "cls/seq_relationship/output_bias": state["cls.seq_relationship.bias"],
    }
    for i in range(reference.config.num_hidden_layers):
        tf1, hf = f"bert/encoder/layer_{i}/", f"bert.encoder.layer.{i}."
        for tf1_part, hf_part in [
            ("attention/self/query", "attention.self.query"),
            ("attention/self/key", "attention.self.key"),
            ("attention/self/value", "attention.self.value"),
            ("attention/output/dense", "attention.output.dense"),
            ("intermediate/dense", "intermediate.dense"),
            ("output/dense", "output.dense"),
        ]:
            out[f"{tf1}{tf1_part}/kernel"] = state[f"{hf}{hf_part}.weight"].T
            out[f"{tf1}{tf1_part}/bias"] = state[f"{hf}{hf_part}.bias"]
        for tf1_part, hf_part in [
            ("attention/output/LayerNorm", "attention.output.LayerNorm"),
            ("output/LayerNorm", "output.LayerNorm"),
        ]:
            out[f"{tf1}{tf1_part}/gamma"] = state[f"{hf}{hf_part}.weight"]
            out[f"{tf1}{tf1_part}/beta"] = state[f"{hf}{hf_part}.bias"]
    return out


def _write_tf1_checkpoint(variables, path):
    with tf.Graph().as_default():
        created = [tf.compat.v1.Variable(value, name=name) for name, value in variables.items()]
        saver = tf.compat.v1.train.Saver(created)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, str(path))


@pytest.fixture(scope="module")
def tf1_checkpoint(tmp_path_factory):
    reference = tiny_hf_model("BertForPreTraining", seed=11)
    variables = _tf1_variables(reference)
    # Training leftovers that the importer must skip.
    variables["global_step"] = np.array(1000, "int64")
    slot = np.zeros_like(variables["bert/pooler/dense/kernel"])
    variables["bert/pooler/dense/kernel/adam_m"] = slot
    directory = tmp_path_factory.mktemp("tf1")
    prefix = _write_tf1_checkpoint(variables, directory / "bert_model.ckpt")
    bert_config = {
        k: v for k, v in reference.config.to_dict().items()
        if k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "hidden_act", "hidden_dropout_prob",
                 "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
                 "initializer_range")
    }
    (directory / "bert_config.json").write_text(json.dumps(bert_config))
    return reference, prefix, variables, directory


def test_tf1_checkpoint_loads_with_heads_and_matches(tf1_checkpoint):
    reference, prefix, _, directory = tf1_checkpoint
    model = kbk.from_tf1_checkpoint(prefix, directory / "bert_config.json")
    assert isinstance(model, kbk.BertPretrainer)
    inputs = random_inputs(model.encoder.config, batch_size=3, seq_len=14, num_predictions=3)
    with torch.no_grad():
        theirs = reference(**torch_inputs(inputs))
    ours = model(inputs)
    want = gather_positions(theirs.prediction_logits, inputs["masked_positions"])
    assert max_abs_diff(ours["mlm_logits"], want) <= ATOL
    assert max_abs_diff(ours["nsp_logits"], theirs.seq_relationship_logits) <= ATOL


def test_tf1_checkpoint_as_encoder_from_its_directory(tf1_checkpoint):
    reference, _, _, directory = tf1_checkpoint
    config = kbk.BertConfig.from_hf_config(directory / "bert_config.json")
    with pytest.warns(UserWarning, match="cls/predictions/output_bias"):
        encoder = kbk.from_tf1_checkpoint(directory, config, target="encoder")
    inputs = encoder_inputs(random_inputs(config, batch_size=2, seq_len=9))
    with torch.no_grad():
        theirs = reference.bert(**torch_inputs(inputs))
    assert max_abs_diff(encoder(inputs)["sequence_output"], theirs.last_hidden_state) <= ATOL


def test_tf1_missing_tensor_is_named_in_tf1_terms(tf1_checkpoint, tmp_path):
    _, _, variables, directory = tf1_checkpoint
    missing = "bert/encoder/layer_1/attention/self/key/kernel"
    partial = {k: v for k, v in variables.items() if k != missing}
    prefix = _write_tf1_checkpoint(partial, tmp_path / "bert_model.ckpt")
    with pytest.raises(ValueError, match=f"lacks 1 tensor.*{missing}"):
        kbk.from_tf1_checkpoint(prefix, directory / "bert_config.json")


def test_tf1_shape_mismatch_and_bad_paths(tf1_checkpoint, tmp_path):
    _, prefix, _, directory = tf1_checkpoint
    config = kbk.BertConfig.from_hf_config(directory / "bert_config.json")
    with pytest.raises(ValueError, match=r"word_embeddings.*\(300, 32\).*\(301, 32\)"):
        kbk.from_tf1_checkpoint(prefix, config.replace(vocab_size=301))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        kbk.from_tf1_checkpoint(tmp_path, config)
    with pytest.raises(ValueError, match="`config` must be"):
        kbk.from_tf1_checkpoint(prefix, 12)
