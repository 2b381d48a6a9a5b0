"""Hugging Face directories <-> our models, against transformers' torch models."""

import json
import os

import numpy as np
import pytest
import torch
import transformers

import keras_bert_kit as kbk
from keras_bert_kit.convert import tensor_files
from tests.conftest import (
    encoder_inputs,
    max_abs_diff,
    random_inputs,
    randomize_weights,
    tiny_bert_config,
    tiny_distilbert_config,
)
from tests.convert.hf_reference import (
    gather_positions,
    tiny_hf_model,
    torch_inputs,
)

ATOL = 1e-4
PADDING_ATOL = 3e-4


def _hf_reference(model, inputs, distil):
    with torch.no_grad():
        return model(**torch_inputs(inputs, with_segments=not distil))


# -- real weights ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_dir():
    from keras_bert_kit.assets import minilm_model_dir

    return minilm_model_dir()


def test_minilm_matches_transformers_on_real_sentences(minilm_dir):
    from keras_bert_kit.datasets import load_rotten_tomatoes

    texts = list(load_rotten_tomatoes("test").texts[:128])
    encoder = kbk.from_huggingface(minilm_dir)
    preprocessor = kbk.preprocessor_from_huggingface(minilm_dir, sequence_length=96,
                                                     padding="longest")
    assert isinstance(encoder, kbk.BertEncoder)
    assert encoder.config.hidden_size == 384 and encoder.config.num_layers == 6

    reference = transformers.BertModel.from_pretrained(minilm_dir).eval()
    inputs = {k: np.asarray(v) for k, v in preprocessor(texts).items()}
    ours = encoder(inputs)["sequence_output"].numpy()
    with torch.no_grad():
        theirs = reference(**torch_inputs(inputs)).last_hidden_state.numpy()

    real = inputs["padding_mask"].astype(bool)
    assert max_abs_diff(ours[real], theirs[real]) <= ATOL
    # Padding positions too. Nothing reads them, and float32 rounding there
    # depends on the CPU's kernels: 7.8e-5 on one AMD EPYC VM, 1.02e-4 on
    # another, on values up to 5.7 (real tokens: under 6e-6 on both).
    assert max_abs_diff(ours, theirs) <= PADDING_ATOL

    def mean_pool(states):
        mask = inputs["padding_mask"][:, :, None].astype("float64")
        return (states * mask).sum(1) / mask.sum(1)

    a, b = mean_pool(ours), mean_pool(theirs)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99999


def test_minilm_preprocessor_follows_tokenizer_config(minilm_dir):
    preprocessor = kbk.preprocessor_from_huggingface(minilm_dir)
    assert preprocessor.sequence_length == 512
    assert preprocessor.tokenizer.lowercase
    assert preprocessor.tokenizer.vocabulary_size() == 30522
    reference = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    text = "Héllo, WORLD! Tokenizers don't disagree."
    ids = np.asarray(preprocessor(text)["input_ids"])
    assert ids[ids != 0].tolist() == reference(text)["input_ids"]


# -- heads, from random transformers models ----------------------------------------


@pytest.mark.parametrize("safe_serialization", [True, False], ids=["safetensors", "bin"])
def test_bert_for_pretraining_heads(tmp_path, safe_serialization):
    reference = tiny_hf_model("BertForPreTraining", seed=1)
    reference.save_pretrained(tmp_path, safe_serialization=safe_serialization)

    model = kbk.from_huggingface(tmp_path)
    assert isinstance(model, kbk.BertPretrainer)
    inputs = random_inputs(model.encoder.config, batch_size=4, seq_len=16, num_predictions=4)
    ours = model(inputs)
    theirs = _hf_reference(reference, inputs, distil=False)
    want_mlm = gather_positions(theirs.prediction_logits, inputs["masked_positions"])
    assert max_abs_diff(ours["mlm_logits"], want_mlm) <= ATOL
    assert max_abs_diff(ours["nsp_logits"], theirs.seq_relationship_logits) <= ATOL


def test_distilbert_for_masked_lm_head(tmp_path):
    reference = tiny_hf_model("DistilBertForMaskedLM", seed=2)
    reference.save_pretrained(tmp_path)

    model = kbk.from_huggingface(tmp_path)
    assert isinstance(model, kbk.DistilBertPretrainer)
    inputs = random_inputs(model.encoder.config, batch_size=4, seq_len=16, num_predictions=4)
    ours = model(inputs)
    theirs = _hf_reference(reference, inputs, distil=True)
    want = gather_positions(theirs.logits, inputs["masked_positions"])
    assert max_abs_diff(ours["mlm_logits"], want) <= ATOL


def test_distilbert_model_encoder(tmp_path):
    reference = tiny_hf_model("DistilBertModel", seed=3, activation="gelu")
    reference.save_pretrained(tmp_path)
    encoder = kbk.from_huggingface(tmp_path)
    assert isinstance(encoder, kbk.DistilBertEncoder)
    inputs = encoder_inputs(random_inputs(encoder.config, batch_size=3, seq_len=10))
    theirs = _hf_reference(reference, inputs, distil=True).last_hidden_state
    assert max_abs_diff(encoder(inputs)["sequence_output"], theirs) <= ATOL


def test_bert_for_masked_lm_reports_the_missing_pooler_and_nsp_head(tmp_path):
    reference = tiny_hf_model("BertForMaskedLM", seed=4)
    reference.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="keep their random initial values") as record:
        model = kbk.from_huggingface(tmp_path)
    message = str(record[0].message)
    assert "pooler" in message and "next_sentence_head" in message
    assert "4 variable(s)" in message

    inputs = random_inputs(model.encoder.config, batch_size=2, seq_len=12)
    theirs = _hf_reference(reference, inputs, distil=False).logits
    want = gather_positions(theirs, inputs["masked_positions"])
    assert max_abs_diff(model(inputs)["mlm_logits"], want) <= ATOL


def test_task_model_loads_as_encoder_with_unused_tensors_named(tmp_path):
    reference = tiny_hf_model("BertForSequenceClassification", seed=5, num_labels=3)
    reference.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="BertForSequenceClassification.*target='encoder'"):
        kbk.from_huggingface(tmp_path)
    with pytest.warns(UserWarning, match="classifier.weight"):
        encoder = kbk.from_huggingface(tmp_path, target="encoder")
    inputs = encoder_inputs(random_inputs(encoder.config, batch_size=2, seq_len=8))
    with torch.no_grad():
        theirs = reference.bert(**torch_inputs(inputs))
    assert max_abs_diff(encoder(inputs)["sequence_output"], theirs.last_hidden_state) <= ATOL
    assert max_abs_diff(encoder(inputs)["pooled_output"], theirs.pooler_output) <= ATOL


# -- export and round trips ----------------------------------------------------------

EXPORTS = [
    (tiny_bert_config, kbk.BertEncoder, None, "BertModel"),
    (tiny_bert_config, kbk.BertEncoder, kbk.BertPretrainer, "BertForPreTraining"),
    (tiny_distilbert_config, kbk.DistilBertEncoder, None, "DistilBertModel"),
    (tiny_distilbert_config, kbk.DistilBertEncoder, kbk.DistilBertPretrainer,
     "DistilBertForMaskedLM"),
]


@pytest.mark.parametrize("make_config,encoder_class,pretrainer_class,architecture", EXPORTS,
                         ids=[e[3] for e in EXPORTS])
def test_round_trip_is_exact_and_transformers_agrees(
    tmp_path, bert_vocab_path, make_config, encoder_class, pretrainer_class, architecture
):
    config = make_config(vocab_size=30522)
    model = encoder_class(config)
    if pretrainer_class is not None:
        model = pretrainer_class(model)
    randomize_weights(model, seed=7)
    tokenizer = kbk.BertTokenizer(bert_vocab_path)
    kbk.to_huggingface(model, tmp_path, tokenizer=tokenizer)

    assert json.load(open(tmp_path / "config.json"))["architectures"] == [architecture]
    back = kbk.from_huggingface(tmp_path)
    assert type(back) is type(model)
    assert back.get_config()["config" if pretrainer_class is None else "encoder"] is not None
    for ours, theirs in zip(model.weights, back.weights):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())

    reference, info = getattr(transformers, architecture).from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    reference.eval()
    inputs = random_inputs(config, batch_size=3, seq_len=12)
    distil = config.model_type == "distilbert"
    theirs = _hf_reference(reference, inputs, distil)
    ours = model(inputs if pretrainer_class else encoder_inputs(inputs))
    if pretrainer_class is None:
        assert max_abs_diff(ours["sequence_output"], theirs.last_hidden_state) <= ATOL
    else:
        logits = theirs.logits if distil else theirs.prediction_logits
        want = gather_positions(logits, inputs["masked_positions"])
        assert max_abs_diff(ours["mlm_logits"], want) <= ATOL

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "Round trips keep the vocabulary, casing included."
    ours_ids = np.asarray(kbk.preprocessor_from_huggingface(tmp_path)(text)["input_ids"])
    assert ours_ids[ours_ids != 0].tolist() == hf_tokenizer(text)["input_ids"]


def test_export_of_gelu_approximate_maps_to_gelu_new(tmp_path):
    model = kbk.BertEncoder(tiny_bert_config(hidden_activation="gelu_approximate"))
    with pytest.warns(UserWarning, match="no vocab.txt"):
        kbk.to_huggingface(model, tmp_path)
    assert json.load(open(tmp_path / "config.json"))["hidden_act"] == "gelu_new"
    assert not os.path.exists(tmp_path / "vocab.txt")  # no tokenizer given
    assert kbk.from_huggingface(tmp_path).config == model.config


# -- errors ---------------------------------------------------------------------------


def _save_tiny_bert(path):
    tiny_hf_model("BertModel", seed=8).save_pretrained(path)
    return tensor_files.read_safetensors(path / "model.safetensors")


def test_missing_tensors_are_listed_by_name(tmp_path):
    state = _save_tiny_bert(tmp_path)
    del state["encoder.layer.1.output.dense.weight"]
    del state["embeddings.LayerNorm.bias"]
    tensor_files.write_safetensors(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError) as error:
        kbk.from_huggingface(tmp_path)
    message = str(error.value)
    assert "lacks 2 tensor(s)" in message
    assert "encoder.layer.1.output.dense.weight" in message
    assert "embeddings.LayerNorm.bias" in message


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path):
    state = _save_tiny_bert(tmp_path)
    state["encoder.layer.0.intermediate.dense.bias"] = np.zeros(65, "float32")
    tensor_files.write_safetensors(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.intermediate\.dense\.bias.*\(65,\)"
                       r".*\(64,\)"):
        kbk.from_huggingface(tmp_path)


def test_unknown_architecture_and_model_type(tmp_path):
    _save_tiny_bert(tmp_path)
    config = json.load(open(tmp_path / "config.json"))
    json.dump({**config, "architectures": ["BertLMHeadModel"]}, open(tmp_path / "config.json", "w"))
    with pytest.raises(ValueError, match="BertLMHeadModel.*not supported.*BertForPreTraining"):
        kbk.from_huggingface(tmp_path)
    json.dump({**config, "model_type": "roberta"}, open(tmp_path / "config.json", "w"))
    with pytest.raises(ValueError, match="'roberta' is not supported"):
        kbk.from_huggingface(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        kbk.from_huggingface(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        kbk.from_huggingface(tmp_path)
    _save_tiny_bert(tmp_path)
    os.remove(tmp_path / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="holds no weights"):
        kbk.from_huggingface(tmp_path)
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        kbk.preprocessor_from_huggingface(tmp_path)


def test_untied_decoder_is_refused(tmp_path):
    reference = tiny_hf_model("BertForPreTraining", seed=9)
    reference.save_pretrained(tmp_path)
    state = tensor_files.read_safetensors(tmp_path / "model.safetensors")
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"] + 1
    tensor_files.write_safetensors(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="decoder.weight differs from the word embeddings"):
        kbk.from_huggingface(tmp_path)


def test_failed_load_leaves_nothing_half_loaded(tmp_path):
    state = _save_tiny_bert(tmp_path)
    encoder = kbk.BertEncoder(tiny_bert_config())
    before = [w.numpy().copy() for w in encoder.weights]
    state["pooler.dense.weight"] = np.zeros((3, 3), "float32")
    from keras_bert_kit.convert.huggingface import load_state_dict

    with pytest.raises(ValueError, match="pooler.dense.weight"):
        load_state_dict(encoder, state, source="test")
    for value, weight in zip(before, encoder.weights):
        np.testing.assert_array_equal(value, weight.numpy())
