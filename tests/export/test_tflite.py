"""export_tflite: every quantization and kind runs in ai_edge_litert and agrees with Keras."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.errors import InvalidIdsError
from keras_bert_kit.export import (
    ExportVerificationError,
    TFLiteExportError,
    TFLiteModel,
    export_tflite,
    read_tflite_settings,
    tflite_ops,
    verify_export,
)
from keras_bert_kit.layers import fused_dense
from tests.isolation import run_cases
from tests.tasks.conftest import tiny_encoder

TEXTS = [
    "A gripping, funny film.",
    "dull",
    "Zoë visited 東京 — twice!",
    "an utterly forgettable mess of a movie, with no charm at all and far too long",
    "",
]
CONTEXT = "John Smith lives in Paris. He works at the museum of modern art as a guard."


@pytest.fixture(scope="module")
def tokenizer():
    from keras_bert_kit.assets import bert_uncased_vocab_path

    return kbk.BertTokenizer(bert_uncased_vocab_path())


@pytest.fixture(scope="module")
def classifier(tokenizer):
    return kbk.SequenceClassifier(
        tiny_encoder(), num_classes=3, label_names=["neg", "neutral", "pos"],
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, sequence_length=32),
    )


@pytest.fixture(scope="module")
def exported(classifier, tmp_path_factory):
    """{(quantization, text_input): path}, converted once for the module."""
    directory = tmp_path_factory.mktemp("tflite")
    cache = {}

    def get(quantization="none", text_input=False):
        key = (quantization, text_input)
        if key not in cache:
            name = f"classifier_{quantization}{'_text' if text_input else ''}.tflite"
            cache[key] = export_tflite(
                classifier, directory / name, quantization, text_input=text_input,
                representative_texts=TEXTS * 4,
            )
        return cache[key]

    return get


@pytest.mark.parametrize("quantization", ["none", "float16", "dynamic_range", "int8"])
def test_each_quantization_runs_in_litert_and_agrees_with_keras(exported, classifier,
                                                                 quantization):
    path = exported(quantization)
    # The tiny random classifier's classes are nearly tied (probabilities
    # within about 0.01), so 8-bit rounding may flip its labels: for those
    # variants only the float outputs are held to the tolerance here
    # (bench/export_matrix.py measures label agreement on a real model).
    quantized = quantization in ("dynamic_range", "int8")
    report = verify_export(classifier, path, TEXTS, min_agreement=0.0 if quantized else None)
    assert set(report) == {"predict_ids"}
    diffs = report["predict_ids"]["output_diffs"]
    assert set(diffs) == {"logits", "probabilities"}
    assert report["predict_ids"]["max_abs_diff"] == max(diffs.values())
    settings = read_tflite_settings(path)
    assert settings["quantization"] == quantization
    assert settings["custom_ops"] == []
    assert not tflite_ops(open(path, "rb").read())["custom"]
    if quantization == "none":
        assert report["predict_ids"]["max_abs_diff"] < 1e-4
        assert report["predict_ids"]["agreement"] == 1.0


def test_quantized_models_are_smaller(exported):
    size = {q: os.path.getsize(exported(q)) for q in ("none", "float16", "dynamic_range")}
    assert size["float16"] < 0.6 * size["none"]
    assert size["dynamic_range"] < 0.35 * size["none"]


def test_int8_is_calibrated_on_int32_ids_and_quantizes_activations(exported):
    model = TFLiteModel(exported("int8"))
    details = model.interpreter.get_signature_runner("predict_ids").get_input_details()
    assert {d["dtype"] for d in details.values()} == {np.int32}
    tensor_types = {d["dtype"] for d in model.interpreter.get_tensor_details()}
    assert np.int8 in tensor_types  # weights and activations
    ops = tflite_ops(open(exported("int8"), "rb").read())["builtin"]
    assert "QUANTIZE" in ops and "DEQUANTIZE" in ops  # float fallback around int8 kernels


def test_int8_keeps_the_element_wise_ops_in_float_by_default(exported, classifier, tmp_path):
    from keras_bert_kit.export.tflite import INT8_FLOAT_OPS

    assert read_tflite_settings(exported("int8"))["float_ops"] == list(INT8_FLOAT_OPS)
    assert read_tflite_settings(exported("dynamic_range"))["float_ops"] == []
    path = export_tflite(classifier, tmp_path / "all_int8.tflite", "int8",
                         representative_texts=TEXTS * 4, int8_float_ops=())
    all_int8 = TFLiteModel(path).interpreter.get_tensor_details()
    mixed = TFLiteModel(exported("int8")).interpreter.get_tensor_details()

    def int8_outputs(details, op_name):
        return sum(d["dtype"] == np.int8 and op_name in d["name"] for d in details)

    # Without the denylist LayerNorm's rsqrt runs in int8; with it, in float.
    assert int8_outputs(all_int8, "Rsqrt") > 0 and int8_outputs(mixed, "Rsqrt") == 0
    verify_export(classifier, path, TEXTS, min_agreement=0.0)  # nearly tied classes
    with pytest.raises(ValueError, match="int8_float_ops"):
        export_tflite(classifier, tmp_path / "bad.tflite", "int8",
                      representative_texts=TEXTS, int8_float_ops="SOFTMAX")


def test_int8_needs_representative_texts(classifier, tmp_path):
    with pytest.raises(ValueError, match="representative_texts"):
        export_tflite(classifier, tmp_path / "m.tflite", "int8")
    with pytest.raises(ValueError, match="strings"):
        export_tflite(classifier, tmp_path / "m.tflite", "int8", representative_texts=[[1, 2]])
    assert not os.listdir(tmp_path)


def test_one_interpreter_runs_two_sequence_lengths(exported, classifier):
    model = TFLiteModel(exported("none"))
    for text in ("short", "a much longer sentence that has many more word pieces in it"):
        features = model.features([text])
        expected = classifier.answers({k: tf.constant(v) for k, v in features.items()})
        actual = model(**features)
        np.testing.assert_allclose(actual["probabilities"], expected["probabilities"],
                                   atol=1e-5)
        assert actual["label"][0] == expected["label"].numpy()[0]
    assert len(model.features(["short"])["input_ids"][0]) < 10 < len(
        model.features(["a much longer sentence that has many more word pieces in it"])[
            "input_ids"][0])


def test_text_in_model_matches_the_tf_text_keras_model(exported, classifier):
    path = exported("none", text_input=True)
    settings = read_tflite_settings(path)
    assert settings["signature"] == "serving_default"
    assert settings["normalizer"] == "tf_text"
    assert set(settings["custom_ops"]) <= {"FastBertNormalize",
                                           "FastWordpieceTokenizeWithOffsets"}
    odd = TEXTS + ["ﬁne café ÉCOLE", "naïve 😀 emoji", "x" * 3000]
    report = verify_export(classifier, path, odd)
    assert report["serving_default"]["agreement"] == 1.0
    assert report["serving_default"]["max_abs_diff"] < 1e-4
    # The exact BERT path answers the same on text both normalisers agree on.
    answer = TFLiteModel(path)(text=["A gripping, funny film."])
    expected = classifier.predict(["A gripping, funny film."], verbose=0)
    np.testing.assert_allclose(answer["logits"], expected, atol=1e-4)


def test_text_in_int8_calibrates_through_the_tokenizer(exported, classifier):
    path = exported("int8", text_input=True)
    verify_export(classifier, path, TEXTS, min_agreement=0.0)  # nearly tied classes
    assert read_tflite_settings(path)["custom_ops"]


def test_sidecar_names_everything_an_app_needs(exported, tokenizer):
    path = exported("dynamic_range")
    with open(path[: -len(".tflite")] + ".json", encoding="utf-8") as f:
        settings = json.load(f)
    assert settings == read_tflite_settings(path)
    assert settings["inputs"] == {
        name: {"dtype": "int32", "shape": [-1, -1]}
        for name in ("input_ids", "segment_ids", "padding_mask")
    }
    assert set(settings["outputs"]) == {"logits", "probabilities", "label_id", "label"}
    assert settings["labels"] == ["neg", "neutral", "pos"]
    assert settings["lowercase"] is True and settings["normalizer"] == "bert"
    assert settings["max_sequence_length"] == 32 and settings["sequence_length"] is None
    assert settings["special_tokens"] == {"cls": 101, "sep": 102, "pad": 0, "unk": 100,
                                          "mask": 103}
    vocabulary = os.path.join(os.path.dirname(path), settings["vocabulary"])
    with open(vocabulary, encoding="utf-8") as f:
        assert f.read().splitlines() == tokenizer.get_vocabulary()
    runner = TFLiteModel(path)
    assert runner.interpreter.get_signature_list() == {
        "predict_ids": {"inputs": ["input_ids", "padding_mask", "segment_ids"],
                        "outputs": ["label", "label_id", "logits", "probabilities"]}}


def test_fixed_sequence_length(classifier, tmp_path):
    path = export_tflite(classifier, tmp_path / "fixed.tflite", sequence_length=16)
    model = TFLiteModel(path)
    assert model.settings["sequence_length"] == 16
    details = model.interpreter.get_signature_runner("predict_ids").get_input_details()
    assert [list(d["shape_signature"]) for d in details.values()] == [[-1, 16]] * 3
    features = model.features(["short", "a longer text than that"])
    assert features["input_ids"].shape == (2, 16)
    verify_export(classifier, path, TEXTS)
    with pytest.raises(ValueError, match="exactly 16"):
        model(**{name: value[:, :8] for name, value in features.items()})
    with pytest.raises(ValueError, match=r"\[3, 64\]"):
        export_tflite(classifier, tmp_path / "long.tflite", sequence_length=65)


@pytest.fixture(scope="module")
def other_kinds(tokenizer):
    preprocessor = kbk.BertPreprocessor(tokenizer, sequence_length=24)
    return {
        "tagger": (kbk.TokenClassifier(
            tiny_encoder("distilbert"), num_tags=3, tag_names=["O", "B-PER", "I-PER"],
            preprocessor=kbk.TokenClassifierPreprocessor(tokenizer, sequence_length=16),
        ), None, ["John Smith lives in Paris", "hello"]),
        "qa": (kbk.SpanExtractor(tiny_encoder(), preprocessor=kbk.SpanExtractorPreprocessor(
            tokenizer, sequence_length=32, stride=8, max_question_length=8,
        )), None, [("Where does he live?", CONTEXT), ("Who?", "Nobody.")]),
        "pretrainer": (kbk.BertPretrainer(tiny_encoder()), preprocessor,
                       ["the [MASK] sat on the [MASK] .", "no mask here"]),
        "encoder": (tiny_encoder("distilbert"), preprocessor, TEXTS),
    }


@pytest.mark.parametrize("kind", ["tagger", "qa", "pretrainer", "encoder"])
def test_every_kind_exports_ids_in_with_builtins_only(other_kinds, kind, tmp_path):
    model, preprocessor, texts = other_kinds[kind]
    path = export_tflite(model, tmp_path / f"{kind}.tflite", preprocessor=preprocessor)
    assert not tflite_ops(open(path, "rb").read())["custom"]
    report = verify_export(model, path, texts, preprocessor=preprocessor)
    assert report["predict_ids"]["max_abs_diff"] < 1e-4
    assert report["predict_ids"]["agreement"] == 1.0


def test_encoder_text_in(other_kinds, tmp_path):
    encoder, preprocessor, texts = other_kinds["encoder"]
    path = export_tflite(encoder, tmp_path / "encoder.tflite", text_input=True,
                         preprocessor=preprocessor)
    verify_export(encoder, path, texts, preprocessor=preprocessor)
    verify_export(encoder, path, texts)  # the preprocessor rebuilt from the sidecar
    embeddings = TFLiteModel(path)(text=["hello world"])["mean_embedding"]
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", ["tagger", "qa", "pretrainer"])
def test_kinds_without_an_on_device_text_graph_are_refused_with_the_reason(
        other_kinds, kind, tmp_path):
    model, preprocessor, _ = other_kinds[kind]
    with pytest.raises(TFLiteExportError, match="text_input=False"):
        export_tflite(model, tmp_path / "m.tflite", text_input=True, preprocessor=preprocessor)
    assert not os.listdir(tmp_path)


def test_an_op_without_a_builtin_kernel_is_named_with_its_layer(tokenizer, tmp_path,
                                                                 monkeypatch):
    real = fused_dense.get_activation
    monkeypatch.setattr(fused_dense, "get_activation", lambda name, training=False: (
        tf.math.sinh if name == "gelu" else real(name, training)))
    model = kbk.SequenceClassifier(
        tiny_encoder(), num_classes=2,
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, sequence_length=16),
    )
    with pytest.raises(TFLiteExportError) as error:
        export_tflite(model, tmp_path / "m.tflite")
    message = str(error.value)
    assert "Sinh" in message and "Flex" in message
    assert "transformer_layer_0" in message  # the layer it came from
    assert not os.listdir(tmp_path)


def test_bad_arguments(classifier, tmp_path):
    with pytest.raises(ValueError, match="quantization"):
        export_tflite(classifier, tmp_path / "m.tflite", "int4")
    with pytest.raises(ValueError, match=r"\.tflite"):
        export_tflite(classifier, tmp_path / "m.bin")
    with pytest.raises(ValueError, match="Export takes"):
        export_tflite(object(), tmp_path / "m.tflite")
    cased = kbk.BertTokenizer(classifier.preprocessor.tokenizer.get_vocabulary(),
                              lowercase=True, strip_accents=False)
    model = kbk.SequenceClassifier(
        tiny_encoder(), num_classes=2,
        preprocessor=kbk.SequenceClassifierPreprocessor(cased, sequence_length=16))
    with pytest.raises(TFLiteExportError, match="strips accents exactly when it lowercases"):
        export_tflite(model, tmp_path / "m.tflite", text_input=True)
    assert not os.listdir(tmp_path)


def test_verification_fails_on_a_different_model(exported, tokenizer):
    other = kbk.SequenceClassifier(
        tiny_encoder(), num_classes=3, label_names=["neg", "neutral", "pos"],
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, sequence_length=32))
    other.set_weights([w + 0.05 for w in other.get_weights()])
    with pytest.raises(ExportVerificationError, match="predict_ids: max abs difference"):
        verify_export(other, exported("none"), TEXTS)


def test_runner_checks_inputs(exported):
    model = TFLiteModel(exported("none"))
    features = model.features(["fine"])
    with pytest.raises(ValueError, match="takes the inputs"):
        model(input_ids=features["input_ids"])
    with pytest.raises(InvalidIdsError, match=r"`input_ids` must hold values in \[0, 30522\)"):
        model(**{**features, "input_ids": features["input_ids"] + 30522})
    with pytest.raises(InvalidIdsError, match="integers"):
        model(**{**features, "padding_mask": features["padding_mask"].astype(float)})
    with pytest.raises(ValueError, match="share one"):
        model(**{**features, "segment_ids": features["segment_ids"][:, :2]})
    with pytest.raises(ValueError, match="empty"):
        model(**{name: value[:0] for name, value in features.items()})
    text_model = TFLiteModel(exported("none", text_input=True))
    with pytest.raises(ValueError, match="strings"):
        text_model(text=[1, 2])


def test_bad_inputs_answer_or_fail_cleanly_in_a_child_process(exported):
    """A crash or hang in LiteRT fails this test instead of killing the suite."""
    setup = (
        "import numpy as np\n"
        "from keras_bert_kit.export import TFLiteModel\n"
        f"text = TFLiteModel({exported('none', text_input=True)!r})\n"
        f"ids = TFLiteModel({exported('dynamic_range')!r})\n"
        "def ids_call(input_ids):\n"
        "    input_ids = np.asarray(input_ids)\n"
        "    return ids(input_ids=input_ids, segment_ids=np.zeros_like(input_ids),\n"
        "               padding_mask=np.ones_like(input_ids))\n"
    )
    cases = {
        "empty text": "text(text=[''])['label'].tolist()",
        "very long text": "text(text=['word ' * 200000])['label'].tolist()",
        "invalid utf-8": "text(text=[b'\\xff\\xfe bad \\xc3', b'\\xed\\xa0\\x80'])['label'].tolist()",
        "control characters": "text(text=['\\x00\\x01\\u200b'])['label'].tolist()",
        "empty batch": "text(text=[])",
        "id past the vocabulary": "ids_call([[101, 30522, 102]])",
        "int64 id that truncates to a valid one": "ids_call([[101, 2**32 + 5, 102]])",
        "negative id": "ids_call([[101, -1, 102]])",
        "longer than the position table": "ids_call([[101] * 65])",
    }
    outcomes = run_cases(setup, cases, memory_mb=2048, timeout=240)
    for name in ("empty text", "very long text", "invalid utf-8", "control characters"):
        assert outcomes[name].status == "ok", outcomes[name]
        assert set(eval(outcomes[name].value)) <= {b"neg", b"neutral", b"pos"}
    assert outcomes["empty batch"].raised("ValueError"), outcomes["empty batch"]
    for name in ("id past the vocabulary", "int64 id that truncates to a valid one",
                 "negative id"):
        assert outcomes[name].raised("InvalidIdsError"), outcomes[name]
    assert outcomes["longer than the position table"].raised("ValueError")
    assert "position table" in outcomes["longer than the position table"].message


def test_pair_classifier_text_in_truncates_longest_first_as_keras(tokenizer, tmp_path):
    model = kbk.SequenceClassifier(
        tiny_encoder("distilbert"), num_classes=2,
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, sequence_length=16))
    pairs = [("A man plays guitar.", "Someone makes music on a stage today, loudly and long."),
             ("", "x"), ("a b c d e f g h i j k l m n", "o p q r s t u v w x y z")]
    path = export_tflite(model, tmp_path / "pairs.tflite", pairs=True, text_input=True)
    report = verify_export(model, path, pairs)
    assert report["serving_default"]["max_abs_diff"] < 1e-4
    runner = TFLiteModel(path)
    assert sorted(runner.settings["inputs"]) == ["text", "text_pair"]
    with pytest.raises(ValueError, match="as many texts"):
        runner(text=["a", "b"], text_pair=["c"])
