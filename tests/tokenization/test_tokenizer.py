"""BertTokenizer / BertPreprocessor behaviour: shapes, tf.data, SavedModel, config, errors."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.tokenization import (
    load_vocabulary,
    save_vocabulary,
    standard_reserved_tokens,
)

TEXTS = ["The film is wonderful.", "A dull, lifeless script", "ok"]


def test_shapes_and_detokenize(uncased_tokenizer):
    assert uncased_tokenizer("hello world").shape == (2,)
    batch = uncased_tokenizer(TEXTS)
    assert isinstance(batch, tf.RaggedTensor) and batch.shape[0] == 3
    assert uncased_tokenizer.detokenize(batch).numpy().tolist() == [
        b"the film is wonderful .", b"a dull , lifeless script", b"ok"]
    packed = kbk.BertPreprocessor(uncased_tokenizer, 12)(TEXTS)["input_ids"]
    assert uncased_tokenizer.detokenize(packed).numpy()[2] == b"ok"
    assert b"[CLS]" in uncased_tokenizer.detokenize(packed, skip_special_tokens=False).numpy()[2]


def test_special_ids(uncased_tokenizer):
    t = uncased_tokenizer
    assert (t.pad_token_id, t.unk_token_id, t.cls_token_id, t.sep_token_id, t.mask_token_id) == (
        0, 100, 101, 102, 103)
    assert t.id_to_token(7592) == "hello" and t.token_to_id("hello") == 7592
    assert t.id_to_token(np.int64(7592)) == "hello"


def test_tuple_is_pair_list_is_batch(uncased_tokenizer):
    p = kbk.BertPreprocessor(uncased_tokenizer, 10)
    assert p(["a", "b"])["input_ids"].shape == (2, 10)
    pair = p(("a", "b"))["input_ids"].numpy().tolist()
    assert pair == [101, 1037, 102, 1038, 102, 0, 0, 0, 0, 0]
    longest = kbk.BertPreprocessor(uncased_tokenizer, 10, padding="longest")(["a", "a b c"])
    assert longest["input_ids"].shape == (2, 5)
    assert longest["padding_mask"].numpy().tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_in_tf_data_and_tf_function(uncased_tokenizer):
    p = kbk.BertPreprocessor(uncased_tokenizer, 16)
    expected = p(TEXTS)["input_ids"].numpy()
    batched = tf.data.Dataset.from_tensor_slices(TEXTS).batch(3).map(p)
    np.testing.assert_array_equal(next(iter(batched))["input_ids"], expected)
    unbatched = tf.data.Dataset.from_tensor_slices(TEXTS).map(p).batch(3)
    np.testing.assert_array_equal(next(iter(unbatched))["input_ids"], expected)
    fn = tf.function(lambda x: p(x), input_signature=[tf.TensorSpec([None], tf.string)])
    np.testing.assert_array_equal(fn(tf.constant(TEXTS))["input_ids"], expected)


def test_one_calling_convention_x_y_sample_weight(uncased_tokenizer):
    p = kbk.BertPreprocessor(uncased_tokenizer, 16, padding="longest")
    features = p(TEXTS)
    assert isinstance(features, dict)
    labels, weights = tf.constant([1, 0, 1]), tf.constant([1.0, 0.5, 2.0])
    with_labels = p(TEXTS, labels)
    assert isinstance(with_labels, tuple) and len(with_labels) == 2
    np.testing.assert_array_equal(with_labels[0]["input_ids"], features["input_ids"])
    np.testing.assert_array_equal(with_labels[1], labels)
    packed, y, w = p(TEXTS, labels, weights)
    np.testing.assert_array_equal(w, weights)
    pairs = (TEXTS, TEXTS[::-1])
    pair_features, pair_labels = p(pairs, y=labels)
    np.testing.assert_array_equal(pair_features["segment_ids"], p(pairs)["segment_ids"])
    # The same layer maps over datasets of raw x, (x, y), (x, y, w) and ((a, b), y).
    for element, expected in (
        (TEXTS, features),
        ((TEXTS, labels), with_labels),
        ((TEXTS, labels, weights), (packed, y, w)),
        ((pairs, labels), (pair_features, pair_labels)),
    ):
        batch = next(iter(tf.data.Dataset.from_tensor_slices(element).batch(3).map(p)))
        tf.nest.map_structure(np.testing.assert_array_equal, batch, expected)


def test_saved_model_works_after_vocab_file_is_deleted(tmp_path, bert_vocab_path):
    vocab = tmp_path / "vocab.txt"
    save_vocabulary(load_vocabulary(bert_vocab_path), vocab)
    p = kbk.BertPreprocessor(kbk.BertTokenizer(str(vocab)), 16)
    module = tf.Module()
    module.preprocessor = p
    module.serve = tf.function(lambda x: p(x), input_signature=[tf.TensorSpec([None], tf.string)])
    export = tmp_path / "saved"
    tf.saved_model.save(module, str(export))
    os.remove(vocab)
    assert (export / "assets" / "vocab.txt").exists()
    expected = p(TEXTS)["input_ids"].numpy().tolist()
    code = textwrap.dedent(f"""
        import json, tensorflow as tf, tensorflow_text
        m = tf.saved_model.load({str(export)!r})
        print(json.dumps(m.serve(tf.constant({TEXTS!r}))["input_ids"].numpy().tolist()))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == str(expected).replace(" ", "").replace(
        ",", ", ")


def test_config_round_trip(uncased_tokenizer):
    p = kbk.BertPreprocessor(uncased_tokenizer, 20, padding="longest", name="pre")
    assert keras.saving.get_registered_name(kbk.BertTokenizer) == "keras_bert_kit>BertTokenizer"
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(p))
    assert clone.get_config() == p.get_config()
    np.testing.assert_array_equal(clone(TEXTS)["input_ids"], p(TEXTS)["input_ids"])
    cased = kbk.BertTokenizer(["[UNK]", "a"], lowercase=False)
    assert kbk.BertTokenizer.from_config(cased.get_config()).lowercase is False


def test_standard_reserved_tokens():
    tokens = standard_reserved_tokens()
    assert [tokens[i] for i in (0, 100, 101, 102, 103)] == [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda t: t(tf.constant([1, 2])), "string"),
        (lambda t: t(tf.constant([["a"]])), "1-D"),
        (lambda t: kbk.BertTokenizer(["a", "b"]), r"\[UNK\]"),
        (lambda t: kbk.BertTokenizer(["[UNK]", "a", "a"]), "lines 2 and 3"),
        (lambda t: kbk.BertTokenizer(["[UNK]", ""]), "empty"),
        (lambda t: kbk.BertTokenizer("/no/such/vocab.txt"), "No vocabulary file"),
        (lambda t: kbk.BertTokenizer(["[UNK]"], normalizer="icu"), "normalizer"),
        (lambda t: kbk.BertTokenizer(["[UNK]"], normalizer="tf_text", strip_accents=False),
         "strips accents"),
        (lambda t: kbk.BertPreprocessor(t, 2), "sequence_length"),
        (lambda t: kbk.BertPreprocessor(t, 8, padding="right"), "padding"),
        (lambda t: kbk.BertPreprocessor(kbk.BertTokenizer(["[UNK]", "a"]), 8), r"\[CLS\]"),
        (lambda t: kbk.BertPreprocessor(t, 8)((["a", "b"], ["c"])), "same number"),
        (lambda t: kbk.BertPreprocessor(t, 4)(("a", "b")), "no room"),
        (lambda t: t.detokenize(7592), r"\[num_tokens\] vector.*got shape \(\)"),
        (lambda t: t.detokenize(np.zeros((1, 2, 3), "int32")), r"got shape \(1, 2, 3\)"),
        (lambda t: t.detokenize([1.0, 2.0]), "integer token ids"),
        (lambda t: t.detokenize(np.array([2**63 + 5], np.uint64)), r"\[0, 30522\); it holds 9223"),
        (lambda t: t.id_to_token(30522), r"outside the vocabulary \[0, 30522\)"),
        (lambda t: t.id_to_token(-1), "outside the vocabulary"),
        (lambda t: t.id_to_token(7592.9), "must be an integer; got float"),
        (lambda t: t.id_to_token("7592"), "must be an integer; got str"),
        (lambda t: t.id_to_token(True), "must be an integer; got bool"),
    ],
)
def test_errors(uncased_tokenizer, build, message):
    with pytest.raises((ValueError, FileNotFoundError, tf.errors.InvalidArgumentError),
                       match=message):
        build(uncased_tokenizer)


def test_for_encoder_checks_limits(uncased_tokenizer):
    config = kbk.BertConfig(vocab_size=30522, hidden_size=32, num_layers=1, num_heads=2,
                            max_sequence_length=64)
    assert kbk.BertPreprocessor.for_encoder(config, uncased_tokenizer).sequence_length == 64
    with pytest.raises(ValueError, match="position table"):
        kbk.BertPreprocessor.for_encoder(config, uncased_tokenizer, sequence_length=65)
    with pytest.raises(ValueError, match="embedding table"):
        kbk.BertPreprocessor.for_encoder(config.replace(vocab_size=1000), uncased_tokenizer)
