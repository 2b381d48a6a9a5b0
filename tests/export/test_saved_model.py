"""export_saved_model: TF Serving's layout and loading, every signature, bad requests."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_bert_kit as kbk
from keras_bert_kit.export import (
    ExportVerificationError,
    existing_versions,
    export_saved_model,
    read_export_settings,
    read_warmup_requests,
    verify_export,
)
from tests.export.session_loader import SessionModel
from tests.tasks.conftest import tiny_encoder

SENTENCES = ["A gripping, funny film.", "dull", "Zoë visited 東京 — twice!"]
CONTEXT = "John Smith lives in Paris. He works at the museum of modern art as a guard."


@pytest.fixture(scope="module")
def vocab_copy(tmp_path_factory):
    from keras_bert_kit.assets import bert_uncased_vocab_path

    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    shutil.copy(bert_uncased_vocab_path(), path)
    return path


@pytest.fixture(scope="module")
def tokenizer(vocab_copy):
    return kbk.BertTokenizer(str(vocab_copy))


@pytest.fixture(scope="module")
def models(tokenizer):
    classifier = kbk.SequenceClassifier(
        tiny_encoder(), num_classes=3, label_names=["neg", "neutral", "pos"],
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, sequence_length=32),
    )
    tagger = kbk.TokenClassifier(
        tiny_encoder("distilbert"), num_tags=3, tag_names=["O", "B-PER", "I-PER"],
        preprocessor=kbk.TokenClassifierPreprocessor(tokenizer, sequence_length=16),
    )
    reader = kbk.SpanExtractor(
        tiny_encoder(),
        preprocessor=kbk.SpanExtractorPreprocessor(
            tokenizer, sequence_length=32, stride=8, max_question_length=8
        ),
    )
    pretrainer = kbk.BertPretrainer(tiny_encoder())
    encoder = tiny_encoder("distilbert")
    return {
        "classifier": classifier, "tagger": tagger, "qa": reader,
        "pretrainer": pretrainer, "encoder": encoder,
    }


@pytest.fixture(scope="module")
def exports(models, tokenizer, vocab_copy, tmp_path_factory):
    """Each model exported, then its base directory moved and the vocabulary file deleted."""
    built = tmp_path_factory.mktemp("built")
    packer = kbk.BertPreprocessor(tokenizer, sequence_length=24)
    options = {
        "classifier": dict(pairs=True),
        "tagger": dict(dtype="bfloat16"),
        "qa": {},
        "pretrainer": dict(preprocessor=packer, top_k=3),
        "encoder": dict(preprocessor=packer),
    }
    for name, model in models.items():
        export_saved_model(model, built / name, **options[name])
    os.remove(vocab_copy)
    moved = tmp_path_factory.mktemp("moved") / "exports"
    shutil.move(str(built), str(moved))
    return {name: str(moved / name / "1") for name in models}


@pytest.fixture(scope="module")
def sessions(exports):
    """Each export as TF Serving loads it."""
    loaded = {name: SessionModel(path) for name, path in exports.items()}
    yield loaded
    for session in loaded.values():
        session.close()


@pytest.fixture(scope="module")
def reloaded(exports):
    """Each export through TF2's `tf.saved_model.load`."""
    return {name: tf.saved_model.load(path) for name, path in exports.items()}


@pytest.fixture(scope="module")
def run_both(sessions, reloaded):
    """Runs a signature through both loaders; asserts they agree; returns the outputs."""
    def run(name, signature, inputs):
        function = reloaded[name].signatures[signature]
        tf2 = {k: v.numpy() for k, v in function(
            **{k: tf.constant(v) for k, v in inputs.items()}).items()}
        tf1 = sessions[name].run(signature, inputs)
        assert set(tf1) == set(tf2)
        for key in tf2:
            if tf2[key].dtype.kind == "f":
                np.testing.assert_allclose(tf1[key], tf2[key], rtol=1e-6, atol=1e-6)
            else:
                np.testing.assert_array_equal(tf1[key], tf2[key])
        return tf2

    return run


def test_tf_serving_layout_assets_and_settings(exports, models):
    export_dir = exports["classifier"]
    assert sorted(os.listdir(os.path.dirname(export_dir))) == ["1"]
    for name in ("saved_model.pb", "variables", "assets", "assets.extra"):
        assert os.path.exists(os.path.join(export_dir, name)), name
    assets = os.path.join(export_dir, "assets")
    with open(os.path.join(assets, "labels.txt")) as f:
        assert f.read().split() == ["neg", "neutral", "pos"]
    with open(os.path.join(assets, "vocab.txt")) as f:
        assert sum(1 for _ in f) == 30522
    settings = read_export_settings(export_dir)
    assert settings["kind"] == "classifier" and settings["pairs"] is True
    assert settings["sequence_length"] == 32 and settings["dtype"] == "float32"
    assert set(settings["signatures"]) == {"serving_default", "predict_ids", "embed"}
    assert set(settings["signatures"]["serving_default"]["inputs"]) == {"text", "text_pair"}
    tagger_settings = read_export_settings(exports["tagger"])
    assert tagger_settings["dtype"] == "bfloat16" and tagger_settings["weights"] == "constants"
    assert settings["weights"] == "variables"
    # Each weight is saved once: the checkpoint holds as many values as the model.
    for name in ("classifier", "qa", "pretrainer", "encoder"):
        checkpoint = tf.train.load_checkpoint(os.path.join(exports[name], "variables",
                                                           "variables"))
        values = sum(int(np.prod(shape)) for key, shape in
                     checkpoint.get_variable_to_shape_map().items() if "VARIABLE_VALUE" in key)
        assert values == models[name].count_params(), name


def test_classifier_signatures_in_both_loaders(run_both, models):
    classifier = models["classifier"]
    text = np.array(SENTENCES, dtype=object)
    pair = np.array(["yes", "no", "maybe so"], dtype=object)
    answers = run_both("classifier", "serving_default",
                        {"text": text, "text_pair": pair})
    expected = classifier.text_function(pairs=True)(tf.constant(text), tf.constant(pair))
    np.testing.assert_allclose(answers["probabilities"], expected["probabilities"], atol=1e-5)
    assert answers["probabilities"].dtype == np.float32
    assert answers["label_id"].dtype == np.int32
    assert [s.decode() for s in answers["label"]] == [
        ["neg", "neutral", "pos"][i] for i in answers["label_id"]
    ]
    features = classifier.preprocessor((tf.constant(text), tf.constant(pair)))
    ids = {k: features[k].numpy() for k in ("input_ids", "segment_ids", "padding_mask")}
    by_ids = run_both("classifier", "predict_ids", ids)
    np.testing.assert_allclose(by_ids["probabilities"], answers["probabilities"], atol=1e-6)

    embedded = run_both("classifier", "embed", {"text": text})
    np.testing.assert_allclose(np.linalg.norm(embedded["mean_embedding"], axis=-1), 1, atol=1e-5)
    outputs = classifier.encoder(classifier.preprocessor(tf.constant(text)))
    mask = classifier.preprocessor(tf.constant(text))["padding_mask"].numpy()[:, :, None]
    mean = (outputs["sequence_output"].numpy() * mask).sum(1) / mask.sum(1)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True)
    np.testing.assert_allclose(embedded["mean_embedding"], mean, atol=1e-5)
    np.testing.assert_allclose(embedded["pooled_output"], outputs["pooled_output"], atol=1e-5)


def test_tagger_equals_predict_tags(run_both, models):
    tagger = models["tagger"]
    texts = ["John Smith lives in Paris .", "", "one two three four five six seven eight nine "
             "ten eleven twelve thirteen fourteen fifteen sixteen seventeen"]
    tags = run_both("tagger", "serving_default",
                     {"text": np.array(texts, dtype=object)})
    # The export computes in bfloat16: compare with the model in bfloat16.
    from keras_bert_kit.export.saved_model import with_dtype

    expected = with_dtype(tagger, "bfloat16").predict_tags(texts)
    for row, words in enumerate(expected):
        count = tags["word_count"][row]
        assert count == len(words)
        assert list(tags["tag_ids"][row, :count]) == [w.tag_id for w in words]
        assert list(tags["starts"][row, :count]) == [w.start for w in words]
        assert list(tags["ends"][row, :count]) == [w.end for w in words]
        assert [t.decode() for t in tags["tags"][row, :count]] == [
            tagger.tag_names[w.tag_id] for w in words
        ]
        assert (tags["tag_ids"][row, count:] == -1).all()


def test_qa_equals_answer(run_both, models):
    questions = ["Where does John live?", "Who guards?", "?"]
    contexts = [CONTEXT, CONTEXT * 3, ""]
    answers = run_both("qa", "serving_default", {
        "question": np.array(questions, dtype=object),
        "context": np.array(contexts, dtype=object),
    })
    expected = models["qa"].answer(questions, contexts, n_best=32)
    for row, best in enumerate(expected[:2]):
        assert answers["answer"][row].decode() == best["text"]
        assert (answers["start"][row], answers["end"][row]) == (best["start"], best["end"])
        assert answers["score"][row] == pytest.approx(best["score"], abs=1e-4)
        assert contexts[row][answers["start"][row]:answers["end"][row]] == best["text"]
    assert answers["answer"][2] == b"" and answers["start"][2] == answers["end"][2] == 0


def test_fill_mask_and_encoder_signatures(run_both, exports, tokenizer):
    filled = run_both("pretrainer", "serving_default", {
        "text": np.array(["the [MASK] sat on the [MASK] .", "no mask here"], dtype=object)
    })
    assert list(filled["mask_count"]) == [2, 0]
    assert filled["tokens"].shape == (2, 2, 3)
    assert (np.diff(filled["scores"][0], axis=-1) <= 0).all()
    ids = filled["token_ids"][0]
    assert [[t.decode() for t in row] for row in filled["tokens"][0]] == [
        [tokenizer.id_to_token(int(i)) for i in row] for row in ids
    ]
    assert (filled["token_ids"][1] == -1).all() and (filled["scores"][1] == 0).all()
    assert list(filled["mask_positions"][0]) == [2, 6]

    embedded = run_both("encoder", "serving_default",
                         {"text": np.array(SENTENCES, dtype=object)})
    assert embedded["mean_embedding"].shape == (3, 32)
    assert "segment_ids" not in read_export_settings(exports["encoder"])["signatures"][
        "predict_ids"]["inputs"]


def test_warmup_records_parse_and_replay_in_the_session(exports, sessions):
    for name, export_dir in exports.items():
        logs = read_warmup_requests(export_dir)
        signatures = read_export_settings(export_dir)["signatures"]
        assert len(logs) == 2 * len(signatures)
        assert {log.predict_log.request.model_spec.signature_name for log in logs} == set(
            signatures
        )
        for log in logs:
            request = log.predict_log.request
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            outputs = sessions[name].run(request.model_spec.signature_name, inputs)
            for value in outputs.values():
                if value.dtype.kind == "f":
                    assert not np.isnan(value).any()


BAD_TEXTS = {
    "empty": [""],
    "100k characters": ["word " * 20000],
    "invalid UTF-8": [b"\xff\xfe\xc3( bad bytes"],
    "control and zero-width": ["\x00\x07\u200b\u200d\ufeff\u202e text \U0010ffff"],
    "batch of 0": [],
}


@pytest.mark.parametrize("case", list(BAD_TEXTS))
def test_bad_texts_get_answers_without_nan_in_every_text_signature(case, exports, sessions):
    texts = np.array(BAD_TEXTS[case], dtype=object)
    for name, export_dir in exports.items():
        settings = read_export_settings(export_dir)
        for signature, spec in settings["signatures"].items():
            if signature == "predict_ids":
                continue
            outputs = sessions[name].run(signature, {key: texts for key in spec["inputs"]})
            for key, value in outputs.items():
                assert value.shape[:1] == (len(texts),), (name, signature, key)
                if value.dtype.kind == "f" and key != "score":
                    assert np.isfinite(value).all(), (name, signature, key)


def test_mismatched_batches_and_bad_ids_are_errors_naming_the_input(sessions, reloaded):
    with pytest.raises(tf.errors.InvalidArgumentError, match="text_pair"):
        sessions["classifier"].run("serving_default", {
            "text": np.array(["a", "b"], dtype=object), "text_pair": np.array(["a"], dtype=object)
        })
    with pytest.raises(tf.errors.InvalidArgumentError, match="context"):
        sessions["qa"].run("serving_default", {
            "question": np.array(["a"], dtype=object), "context": np.array([], dtype=object)
        })
    ids = np.array([[101, 40000, 102]], np.int32)
    ones = np.ones_like(ids)
    with pytest.raises(tf.errors.InvalidArgumentError, match="input_ids"):
        sessions["classifier"].run("predict_ids", {
            "input_ids": ids, "segment_ids": 0 * ones, "padding_mask": ones
        })
    with pytest.raises(tf.errors.InvalidArgumentError, match="padding_mask"):
        sessions["encoder"].run("predict_ids", {"input_ids": ones, "padding_mask": 3 * ones})
    with pytest.raises(tf.errors.InvalidArgumentError, match="text_pair"):
        reloaded["classifier"].signatures["serving_default"](text=tf.constant(["a"]), text_pair=tf.constant([], tf.string))


def test_verify_export_passes_and_catches_a_perturbed_weight(exports, models):
    classifier = models["classifier"]
    report = verify_export(classifier, exports["classifier"], [("good", "fine"), ("bad", "")])
    assert set(report) == {"serving_default", "predict_ids", "embed"}
    assert all(r["max_abs_diff"] <= 1e-5 and r["agreement"] == 1 for r in report.values())
    # bfloat16 against the float32 model: within the bfloat16 tolerance.
    tagger_report = verify_export(models["tagger"], exports["tagger"], SENTENCES)
    assert 0 < tagger_report["predict_ids"]["max_abs_diff"] <= 5e-2

    kernel = classifier.get_layer("logits").kernel
    original = kernel.numpy()
    perturbed = original.copy()
    perturbed[:, 0] += 0.05  # one class's column: a constant added to all would cancel
    kernel.assign(perturbed)
    try:
        with pytest.raises(ExportVerificationError, match="serving_default"):
            verify_export(classifier, exports["classifier"], [("good", "fine")])
    finally:
        kernel.assign(original)


def test_versions_are_atomic_numbered_and_never_overwritten(models, tmp_path):
    classifier = models["classifier"]
    base = tmp_path / "sentiment"
    first = export_saved_model(classifier, base, warmup=False)
    second = export_saved_model(classifier, base, warmup=False)
    assert (first, second) == (str(base / "1"), str(base / "2"))
    assert existing_versions(base) == [1, 2]
    with pytest.raises(FileExistsError, match="overwrite"):
        export_saved_model(classifier, base, version=2, warmup=False)
    stamp = os.stat(base / "2" / "saved_model.pb").st_mtime_ns
    export_saved_model(classifier, base, version=2, overwrite=True, warmup=False)
    assert os.stat(base / "2" / "saved_model.pb").st_mtime_ns != stamp

    # Failures leave nothing behind: no version, no staging directory.
    with pytest.raises(ValueError, match="preprocessor"):
        export_saved_model(kbk.SequenceClassifier(tiny_encoder(), num_classes=2), base)
    with pytest.raises(ValueError, match="version"):
        export_saved_model(classifier, base, version=-1)
    assert sorted(os.listdir(base)) == ["1", "2"]

    # A base directory that cannot be made (its parent is a file), or is a file.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    with pytest.raises(NotADirectoryError):
        export_saved_model(classifier, blocker / "model", warmup=False)
    with pytest.raises(NotADirectoryError, match="not a directory"):
        export_saved_model(classifier, blocker, warmup=False)
    assert blocker.read_text() == "not a directory"


def test_a_failure_midway_removes_the_staging_directory(models, tmp_path, monkeypatch):
    import keras_bert_kit.export.saved_model as saved_model

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(saved_model, "write_warmup_requests", fail)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(models["classifier"], tmp_path / "m")
    assert os.listdir(tmp_path / "m") == []


def test_saved_model_cli_shows_every_signature(exports):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [cli, "show", "--dir", exports["classifier"], "--all"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("serving_default", "predict_ids", "embed", "text_pair", "probabilities"):
        assert name in result.stdout
    assert json.loads(open(os.path.join(exports["classifier"], "assets",
                                        "keras_bert_kit.json")).read())["model"]


IDS_ONLY_LOAD = """
import sys
import tensorflow as tf
graph = tf.Graph()
session = tf.compat.v1.Session(graph=graph)
with graph.as_default():
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], sys.argv[1])
assert "tensorflow_text" not in sys.modules
signature = meta_graph.signature_def["predict_ids"]
feed = {signature.inputs[name].name: [[101, 2023, 102]]
        for name in ("input_ids", "segment_ids", "padding_mask")}
feed[signature.inputs["segment_ids"].name] = [[0, 0, 0]]
feed[signature.inputs["padding_mask"].name] = [[1, 1, 1]]
print(session.run(signature.outputs["probabilities"].name, feed).shape)
"""


def test_an_ids_only_export_loads_without_tf_text(models, tmp_path):
    from keras_bert_kit.export import check_serving_ops

    version_dir = export_saved_model(models["classifier"], tmp_path / "ids",
                                     signatures=["predict_ids"])
    settings = read_export_settings(version_dir)
    assert list(settings["signatures"]) == ["predict_ids"]
    assert {log.predict_log.request.model_spec.signature_name
            for log in read_warmup_requests(version_dir)} == {"predict_ids"}
    report = check_serving_ops(version_dir)
    assert report.non_core_ops == () and report.min_serving_version == "2.0.0"
    # A process that never imports TF Text (as a TF Serving built without its ops).
    result = subprocess.run([sys.executable, "-c", IDS_ONLY_LOAD, version_dir],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "(1, 3)"
    # TF Serving needs serving_default: Keras writes the first signature under it too.
    assert set(tf.saved_model.load(version_dir).signatures) == {"predict_ids", "serving_default"}
    report = verify_export(models["classifier"], version_dir, SENTENCES)
    assert set(report) == {"predict_ids"} and report["predict_ids"]["agreement"] == 1.0

    with pytest.raises(ValueError, match=r"some of this classifier's signatures .*'fill_mask'"):
        export_saved_model(models["classifier"], tmp_path / "bad", signatures=["fill_mask"])
    with pytest.raises(ValueError, match="some of this"):
        export_saved_model(models["classifier"], tmp_path / "bad", signatures=[])
    assert not (tmp_path / "bad").exists()
