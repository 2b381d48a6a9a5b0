"""training.export: a tiny classifier exported, verified and timed; versions; usage errors."""

import os

import keras
import pytest

import keras_bert_kit as kbk
from keras_bert_kit.assets import bert_uncased_vocab_path
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
    code = export.main(list(argv))
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
                   "--latency-calls"):
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
