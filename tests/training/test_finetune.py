"""training.finetune: smoke runs of each task on a few rows, outputs, and data errors."""

import json
import re

import keras
import numpy as np
import pytest

from training import finetune



def run(tmp_path, *extra):
    out = tmp_path / "out"
    # Later options win, so `extra` can override these defaults.
    code = finetune.main(["--out", str(out), "--init", "bert_tiny", "--epochs", "1",
                          "--batch-size", "4", "--sequence-length", "32", "--quiet", *extra])
    return code, out


@pytest.mark.parametrize("task, file, metric", [
    ("classify", "cls.csv", "macro_f1"),
    ("tag", "tag.jsonl", "entity_f1"),
    ("qa", "qa.jsonl", "exact_match"),
])
def test_each_task_runs_and_writes_its_outputs(tmp_path, data_dir, task, file, metric):
    code, out = run(tmp_path, "--task", task, "--data", str(data_dir / file), "--stride", "4",
                    "--validation-split", "0.34")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and metric in metrics["eval"]
    assert metrics["train_examples"] == 4 and metrics["eval_examples"] == 2
    assert len(metrics["history"]["loss"]) == 1 and len(metrics["seconds_per_epoch"]) == 1
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert len((out / "vocab.txt").read_text().splitlines()) == 30522
    assert not (out / "checkpoints").exists()  # finished: nothing to resume
    model = keras.saving.load_model(str(out / "model.keras"))
    assert model.preprocessor is not None


REQUIRED = ["--task", "classify", "--data", "x.csv", "--init", "bert_tiny", "--out", "x"]


def help_entries(text):
    """{option: its help, on one line} of argparse's --help text."""
    entries, option = {}, None
    for line in text.splitlines():
        match = re.match(r"  (-\w, )?(--[\w-]+)(?: \S+)?(?:  +(.*))?$", line)
        if match:
            option = match.group(2)
            entries[option] = match.group(3) or ""
        elif option and line.startswith("    "):
            # A wrapped line; argparse breaks "--eval-\ndata" after its hyphen.
            joiner = "" if entries[option].endswith("-") else " "
            entries[option] = (entries[option] + joiner + line.strip()).strip()
        else:
            option = None
    return entries


def test_help_gives_every_option_a_help_and_its_default_once(capsys):
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text
    entries = help_entries(text)
    options = {"--" + name.replace("_", "-") for name in vars(finetune.parse_args(REQUIRED))}
    assert options <= set(entries), options - set(entries)
    for option in options:
        words = entries[option]
        assert words, f"{option} has no help"
        if option in REQUIRED:
            assert "(required)" in words and "default" not in words, (option, words)
        else:
            assert words.count("(default") == 1, (option, words)
    assert entries["--epochs"].endswith("(default: 3)")
    assert entries["--learning-rate"].endswith("(default: 5e-05)")
    assert entries["--precision"].endswith("(default: float32)")


def test_data_errors_name_file_line_and_column(tmp_path, data_dir, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("review,label\ngood,pos\n")
    code, _ = run(tmp_path, "--task", "classify", "--data", str(bad))
    assert code == 2
    assert f"{bad}:1:" in capsys.readouterr().err

    unknown = tmp_path / "eval.csv"
    unknown.write_text("text,label\nfine,pos\nmeh,neutral\n")
    code, _ = run(tmp_path, "--task", "classify", "--data", str(data_dir / "cls.csv"),
                  "--eval-data", str(unknown))
    error = capsys.readouterr().err
    assert code == 2 and f"{unknown}:3:" in error and "neutral" in error

    out_of_range = tmp_path / "ids.jsonl"
    out_of_range.write_text('{"text": "fine", "label": 0}\n{"text": "meh", "label": 7}\n')
    code, _ = run(tmp_path, "--task", "classify", "--data", str(data_dir / "cls.csv"),
                  "--eval-data", str(out_of_range))
    error = capsys.readouterr().err
    assert code == 2 and f"{out_of_range}:2:" in error and "7" in error

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _ = run(tmp_path, "--task", "tag", "--data", str(empty))
    assert code == 2 and "empty" in capsys.readouterr().err

    code, _ = run(tmp_path, "--task", "classify", "--data", str(tmp_path / "missing.csv"))
    assert code == 2 and "missing.csv" in capsys.readouterr().err


def test_argument_errors(tmp_path, data_dir):
    with pytest.raises(SystemExit):
        finetune.parse_args(["--task", "tag", "--data", "rotten_tomatoes", "--init", "x",
                             "--out", "y"])
    code, _ = run(tmp_path, "--task", "classify", "--data", str(data_dir / "cls.csv"),
                  "--init", "no_such_preset")
    assert code == 2


def test_init_weights_of_other_shapes_than_the_config_are_one_error_line(
        tmp_path, data_dir, capsys):
    import keras_bert_kit as kbk
    from keras_bert_kit.tokenization import standard_reserved_tokens
    from tests.conftest import tiny_bert_config

    config = tiny_bert_config(num_layers=1)
    tokenizer = kbk.BertTokenizer(standard_reserved_tokens(0) + [f"w{i}" for i in range(50)])
    model_dir = tmp_path / "hf"
    kbk.to_huggingface(kbk.models.encoder_from_config(config), str(model_dir), tokenizer)
    config_path = model_dir / "config.json"
    # The weights stay 64 wide; the config now says 65.
    config_path.write_text(json.dumps(dict(json.loads(config_path.read_text()),
                                           intermediate_size=65)))
    code, out = run(tmp_path, "--task", "classify", "--data", str(data_dir / "cls.csv"),
                    "--init", str(model_dir))
    lines = capsys.readouterr().err.splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "intermediate" in lines[0]
    assert not (out / "model.keras").exists()


# -- epoch checkpoints and resume ---------------------------------------------------


def save_tiny_encoder(directory, data_dir):
    """A tiny BERT (dropout on) as `encoder.keras`, with a vocab.txt of the test data's words."""
    import keras_bert_kit as kbk
    from keras_bert_kit.tokenization import standard_reserved_tokens
    from tests.conftest import tiny_bert_config

    text = " ".join(path.read_text() for path in sorted(data_dir.iterdir()))
    words = sorted(set(re.findall(r"\w+|[^\w\s]", text.lower())))
    vocab = standard_reserved_tokens(0) + words
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    encoder = kbk.models.encoder_from_config(tiny_bert_config(vocab_size=len(vocab)))
    encoder.save(str(directory / "encoder.keras"))
    return directory / "encoder.keras"


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory, data_dir):
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny_init"), data_dir)


def poison_second_epoch(monkeypatch):
    """Makes the model's weights NaN as its second epoch begins."""
    from training.common import EpochCheckpoints

    begin = EpochCheckpoints.on_epoch_begin

    def poison_then_begin(self, epoch, logs=None):
        if epoch == 1:
            for variable in self.model.trainable_variables:
                variable.assign(variable * float("nan"))
        begin(self, epoch, logs)

    monkeypatch.setattr(EpochCheckpoints, "on_epoch_begin", poison_then_begin)


def trained_weights(out):
    keras.backend.clear_session()
    return keras.saving.load_model(str(out / "model.keras")).get_weights()


def test_a_run_stopped_by_a_nan_resumes_from_its_last_good_epoch_as_if_uninterrupted(
        tmp_path, data_dir, tiny_init, monkeypatch, capsys):
    options = ["--task", "classify", "--data", str(data_dir / "cls.csv"), "--init",
               str(tiny_init), "--epochs", "2", "--validation-split", "0.34",
               "--learning-rate", "1e-3"]
    code, whole = run(tmp_path / "whole", *options)
    assert code == 0 and not (whole / "checkpoints").exists()

    resumed = tmp_path / "resumed"
    checkpoints = resumed / "out" / "checkpoints"
    with monkeypatch.context() as patch:
        poison_second_epoch(patch)
        capsys.readouterr()
        code, out = run(resumed, *options)
    error = capsys.readouterr().err.splitlines()
    assert code == 2 and len(error) == 1
    assert error[0].startswith("error: The loss became non-finite at step 2; stopped. The "
                               f"checkpoint of the last good epoch (1) is kept in {checkpoints}")
    assert json.loads((checkpoints / "training_metadata.json").read_text())["epoch"] == 1
    assert len(json.loads((checkpoints / "epochs.json").read_text())) == 1
    assert not (out / "model.keras").exists()

    code, _ = run(resumed, *options, "--learning-rate", "2e-3")
    error = capsys.readouterr().err
    assert code == 2 and f"{checkpoints} holds the checkpoint of another run (learning_rate " \
        "0.001 then, 0.002 now)" in error

    code, out = run(resumed, *options)
    assert code == 0
    assert f"Resuming from the checkpoint of epoch 1 in {checkpoints}." in capsys.readouterr().out
    assert not checkpoints.exists()
    metrics = json.loads((out / "metrics.json").read_text())
    expected = json.loads((whole / "metrics.json").read_text())
    assert len(metrics["history"]["loss"]) == 2 and len(metrics["seconds_per_epoch"]) == 2
    # The same data order, dropout masks, optimizer state and schedule: the same run.
    assert metrics["history"] == expected["history"]
    assert metrics["eval"] == expected["eval"]
    for resumed_weight, whole_weight in zip(trained_weights(out), trained_weights(whole),
                                            strict=True):
        np.testing.assert_array_equal(resumed_weight, whole_weight)
