"""training.export: a tiny classifier exported, verified and timed; versions; TFLite; errors."""

import json
import os

import keras
import numpy as np
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.assets import bert_uncased_vocab_path
from keras_bert_kit.export import QUANTIZATIONS, TFLiteModel, read_tflite_settings
from tests.conftest import tiny_bert_config
from training import export

SIGNATURES = ("serving_default", "predict_ids", "embed")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """{"classifier": path, "encoder": path} of tiny .keras files, no vocab.txt beside them."""
    directory = tmp_path_factory.mktemp("export_cli_models")
    tokenizer = kbk.BertTokenizer(bert_uncased_vocab_path())
    config = tiny_bert_config(vocab_size=tokenizer.vocabulary_size())
    classifier = kbk.SequenceClassifier(
        kbk.BertEncoder(config), num_classes=2, label_names=["negative", "positive"],
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, sequence_length=16),
    )
    paths = {"classifier": directory / "classifier.keras", "encoder": directory / "encoder.keras"}
    classifier.save(paths["classifier"])
    classifier.encoder.save(paths["encoder"])
    return {kind: str(path) for kind, path in paths.items()}


def run(capsys, *argv):
    try:
        code = export.main(list(argv))
    except SystemExit as exit_info:  # argparse's usage errors
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out):
    """{signature: its table row} from the printed table."""
    return {line.split()[0]: line for line in out.splitlines()
            if line.split() and line.split()[0] in SIGNATURES}


def test_exports_versions_and_prints_table_and_docker_command(saved_models, tmp_path, capsys):
    base = tmp_path / "exports" / "sentiment"
    code, out, err = run(capsys, "--model", saved_models["classifier"], "--out", str(base),
                         "--latency-calls", "3")
    assert code == 0, err
    assert (base / "1" / "saved_model.pb").is_file()
    rows = table_rows(out)
    assert sorted(rows) == sorted(SIGNATURES)
    assert "text" in rows["serving_default"] and "label_id" in rows["serving_default"]
    assert "input_ids" in rows["predict_ids"] and "mean_embedding" in rows["embed"]
    assert all("/ 100%" in row for row in rows.values())  # labels agree with Keras
    assert "MB" in out
    assert (f"docker run -p 8500:8500 -p 8501:8501 -v {base}:/models/sentiment "
            "-e MODEL_NAME=sentiment tensorflow/serving:2.20.0") in out

    # Numbering is export_saved_model's (tests/export); the CLI refuses before writing.
    code, _, err = run(capsys, "--model", saved_models["classifier"], "--out", str(base),
                       "--version", "1")
    assert code == 2 and "--overwrite" in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(base)) == ["1"]


def one_line_error(capsys, *argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    return err


@pytest.mark.parametrize("make_model", [
    lambda directory: directory / "missing.keras",
    lambda directory: directory / "notes.txt",
    lambda directory: directory,
])
def test_bad_model_paths_exit_2_with_one_line(tmp_path, capsys, make_model):
    (tmp_path / "notes.txt").write_text("not a model\n")
    path = make_model(tmp_path)
    err = one_line_error(capsys, "--model", str(path), "--out", str(tmp_path / "out"))
    assert str(path) in err
    assert not (tmp_path / "out").exists()


def test_a_keras_file_of_another_model_exits_2_naming_it(tmp_path, capsys):
    path = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(path)
    err = one_line_error(capsys, "--model", str(path), "--out", str(tmp_path / "out"))
    assert str(path) in err and "Sequential" in err


def test_encoder_needs_a_vocabulary(saved_models, tmp_path, capsys):
    err = one_line_error(capsys, "--model", saved_models["encoder"],
                         "--out", str(tmp_path / "out"))
    assert "--vocab" in err and "BertEncoder" in err
    err = one_line_error(capsys, "--model", saved_models["encoder"], "--out",
                         str(tmp_path / "out"), "--vocab", str(tmp_path / "missing.txt"))
    assert "missing.txt" in err
    assert not (tmp_path / "out").exists()


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "python -m training.export --model runs/rt/model.keras" in text
    for option in ("--model", "--out", "--version", "--overwrite", "--dtype", "bfloat16",
                   "--no-warmup", "--pairs", "--top-k", "--max-answer-length", "--vocab",
                   "--cased", "--sequence-length", "--verify-texts", "--tolerance",
                   "--latency-calls", "--tflite", "--text-input", "--eval-data",
                   "--representative-data", "--text-column", "--text-pair-column",
                   "--label-column", *QUANTIZATIONS):
        assert option in text


def test_verify_texts_file_one_text_or_two_fields_a_line(tmp_path):
    path = tmp_path / "texts.tsv"
    path.write_text("a fine film\tand a sequel\n\nno tab here\n", encoding="utf-8")
    assert export.read_texts(str(path), 1) == ["a fine film\tand a sequel", "no tab here"]
    with pytest.raises(ValueError, match=f"{path}:3: expected 2 tab-separated fields, found 1"):
        export.read_texts(str(path), 2)
    path.write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        export.read_texts(str(path), 1)


# -- TFLite -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_tagger(tmp_path_factory):
    tokenizer = kbk.BertTokenizer(bert_uncased_vocab_path())
    tagger = kbk.TokenClassifier(
        kbk.BertEncoder(tiny_bert_config(vocab_size=tokenizer.vocabulary_size())), num_tags=2,
        tag_names=["O", "B-PER"],
        preprocessor=kbk.TokenClassifierPreprocessor(tokenizer, sequence_length=16),
    )
    path = tmp_path_factory.mktemp("export_cli_tagger") / "tagger.keras"
    tagger.save(path)
    return str(path)


def tflite_rows(out):
    """{file name: its cells} from the printed TFLite table."""
    return {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0].endswith(".tflite")}


def test_tflite_variants_are_written_compared_timed_and_scored(saved_models, tmp_path, capsys):
    evaluation = tmp_path / "eval.csv"
    evaluation.write_text('text,label\n"A gripping, moving film.",positive\nso dull,negative\n'
                          "what a mess,0\nfun for the whole family,1\n", encoding="utf-8")
    out = tmp_path / "tflite"
    code, printed, err = run(capsys, "--model", saved_models["classifier"], "--out", str(out),
                             "--tflite", "none,dynamic_range", "--eval-data", str(evaluation),
                             "--latency-calls", "3")
    assert code == 0, err
    assert sorted(os.listdir(out)) == sorted(
        f"classifier_{q}.{ext}" for q in ("none", "dynamic_range")
        for ext in ("tflite", "json", "vocab.txt"))  # no SavedModel version
    rows = tflite_rows(printed)
    assert sorted(rows) == ["classifier_dynamic_range.tflite", "classifier_none.tflite"]
    for name, (_, megabytes, diff, agreement, latency, accuracy) in rows.items():
        assert float(megabytes) == pytest.approx(os.path.getsize(out / name) / 2**20, abs=0.01)
        assert float(diff) < 0.25 and agreement.endswith("%") and float(latency) > 0
    assert float(rows["classifier_none.tflite"][2]) < 1e-4
    assert rows["classifier_none.tflite"][3] == "100%"
    assert float(rows["classifier_dynamic_range.tflite"][1]) < float(
        rows["classifier_none.tflite"][1])
    assert read_tflite_settings(out / "classifier_dynamic_range.tflite")["quantization"] == \
        "dynamic_range"

    # The float32 model labels as Keras does, so their accuracies are equal.
    classifier = keras.saving.load_model(saved_models["classifier"])
    texts = ["A gripping, moving film.", "so dull", "what a mess", "fun for the whole family"]
    predicted = np.argmax(classifier.predict(texts, verbose=0), axis=-1)
    expected = f"{np.mean(predicted == [1, 0, 0, 1]):.2%}"
    assert rows["classifier_none.tflite"][5] == expected
    assert f"Keras model: accuracy {expected} on the 4 example(s) of --eval-data" in printed

    err = one_line_error(capsys, "--model", saved_models["classifier"], "--out", str(out),
                         "--tflite", "none")
    assert "classifier_none.tflite" in err and "--overwrite" in err


def test_text_input_writes_a_text_in_model_and_the_float_variant_is_checked(
        saved_models, tmp_path, capsys):
    out = tmp_path / "tflite"
    # A zero tolerance: XNNPACK's sums differ from TensorFlow's in the last bits.
    code, printed, err = run(capsys, "--model", saved_models["classifier"], "--out", str(out),
                             "--tflite", "none", "--text-input", "--tolerance", "0",
                             "--latency-calls", "3")
    assert code == 2
    assert "classifier_none_text.tflite" in tflite_rows(printed)  # the table comes first
    assert len(err.splitlines()) == 1 and "differs from the model" in err
    path = out / "classifier_none_text.tflite"
    settings = json.loads((out / "classifier_none_text.json").read_text())
    assert settings["text_input"] and settings["signature"] == "serving_default"
    outputs = TFLiteModel(path)(text=["a fine film", "a dull one"])
    assert outputs["probabilities"].shape == (2, 2)


@pytest.mark.parametrize("options, message", [
    (["--tflite", "none,int4"], "unknown quantization 'int4'"),
    (["--tflite", "none,"], "unknown quantization ''"),
    (["--text-input"], "--text-input: for TFLite exports; add --tflite"),
    (["--eval-data", "rotten_tomatoes"], "--eval-data: for TFLite exports"),
    (["--tflite", "none", "--version", "3"], "--version: for SavedModel exports"),
    (["--tflite", "none", "--signatures", "predict_ids"], "--signatures: for SavedModel"),
    (["--signatures", ","], "give a comma-separated list of signature names"),
])
def test_tflite_usage_errors_exit_2_with_one_line(tmp_path, capsys, options, message):
    err = one_line_error(capsys, "--model", str(tmp_path / "m.keras"), "--out",
                         str(tmp_path / "out"), *options)
    assert message in err


def test_models_without_a_text_in_model_or_accuracy_exit_2(saved_models, saved_tagger,
                                                             tmp_path, capsys):
    err = one_line_error(capsys, "--model", saved_tagger, "--out", str(tmp_path / "out"),
                         "--tflite", "none", "--text-input")
    assert "tagger has no text-in TFLite model" in err
    err = one_line_error(capsys, "--model", saved_models["encoder"], "--out",
                         str(tmp_path / "out"), "--vocab", bert_uncased_vocab_path(),
                         "--tflite", "none", "--eval-data", "rotten_tomatoes")
    assert "--eval-data scores sequence classifiers" in err and "BertEncoder" in err
    assert not (tmp_path / "out").exists()


def test_int8_calibration_texts(saved_models, tmp_path):
    from keras_bert_kit.export import SignatureBuilder
    from keras_bert_kit.datasets import load_rotten_tomatoes

    builder = SignatureBuilder(keras.saving.load_model(saved_models["classifier"]), None)
    texts = list(export.BUILT_IN_TEXTS)

    def calibration(*options):
        args = export.parse_args(["--model", "m.keras", "--out", "out", "--tflite", "int8",
                                  *options])
        return export.representative_texts(builder, args, texts)

    assert calibration() == texts
    assert calibration("--eval-data", "rotten_tomatoes") == list(
        load_rotten_tomatoes("train").texts[:200])
    path = tmp_path / "calibration.txt"
    path.write_text("first\n\nsecond\n", encoding="utf-8")
    assert calibration("--eval-data", "rotten_tomatoes", "--representative-data",
                       str(path)) == ["first", "second"]
    with pytest.raises(FileNotFoundError, match="--representative-data"):
        calibration("--representative-data", str(tmp_path / "missing.txt"))
