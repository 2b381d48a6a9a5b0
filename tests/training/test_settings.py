"""training.settings: settings files and options as untrusted input, and one-line errors."""

import ast
import time

import pytest

from tests.isolation import run_cases, run_fuzz
from training import pretrain
from training.settings import MAX_CONFIG_BYTES, MAX_ERROR_CHARS, one_line, run_job



def bomb(levels, width):
    """A `steps` value: `levels` lists, each `width` aliases of the one before."""
    names = "abcdefghij"[:levels]
    lists = [f"&a [{','.join(['lol'] * width)}]"] + [
        f"&{b} [{','.join([f'*{a}'] * width)}]" for a, b in zip(names, names[1:])]
    return f"[{', '.join(lists)}]"


# "Billion laughs": 10**9 strings once expanded, from a few hundred bytes.
BOMB = bomb(9, 10)
# 9**6 strings, quoted whole (megabytes) in the error that `steps` is no integer.
SMALL_BOMB = bomb(6, 9)


def usage_error(capsys, *argv):
    """The one line `training.pretrain` prints for a usage error (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        pretrain.parse_args(list(argv))
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert len(lines[0]) < MAX_ERROR_CHARS + 100
    return lines[0]


def write(tmp_path, content, name="config.yaml"):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return str(path)


def test_yaml_bombs_exit_2_at_once_with_one_line(tmp_path):
    files = {name: write(tmp_path, f"steps: {value}\n", f"{name}.yaml")
             for name, value in [("bomb", BOMB), ("small_bomb", SMALL_BOMB)]}
    setup = """
import contextlib, io, time
from training import pretrain

def cli(*argv):
    start, stderr = time.monotonic(), io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            pretrain.main(list(argv))
            code = 0
        except SystemExit as e:
            code = e.code
    return code, stderr.getvalue(), time.monotonic() - start
"""
    cases = {name: f"cli('--config', {path!r})" for name, path in files.items()}
    cases["option_bomb"] = f"cli('--steps', {BOMB!r})"
    outcomes = run_cases(setup, cases, memory_mb=512, timeout=90)
    for name, outcome in outcomes.items():
        assert outcome.status == "ok", outcome
        code, stderr, seconds = ast.literal_eval(outcome.value)
        assert code == 2 and seconds < 5, (name, code, seconds)
        lines = stderr.splitlines()
        assert len(lines) == 1 and "anchors and aliases" in lines[0], (name, stderr[:2000])
    assert f"{files['bomb']}:1:9:" in ast.literal_eval(outcomes["bomb"].value)[1]
    assert "--steps (line 1, column 2)" in ast.literal_eval(outcomes["option_bomb"].value)[1]


@pytest.mark.parametrize("content, fragments", [
    ("steps: [1\n", [":2:1:", "expected ',' or ']'", "flow sequence at line 1, column 8"]),
    ("steps: 3\n bad: 2\n", [":2:5:", "mapping values are not allowed"]),
    ("steps: 3\nout: \x01\n", [":2:6:", "#x0001"]),
    ("steps: !!python/object/apply:os.system [ls]\n", [":1:8:", "constructor for the tag"]),
    ("steps: 2001-13-45\n", [":1:8:", "cannot read '2001-13-45' as tag:yaml.org,2002:timestamp: "
                             "month must be in 1..12"]),
    ("steps: !!timestamp x\n", [":1:8:", "cannot read 'x' as tag:yaml.org,2002:timestamp"]),
    ("steps: !!bool x\n", [":1:8:", "cannot read 'x' as tag:yaml.org,2002:bool"]),
    ("steps: " + "9" * 5000 + "\n", [":1:8:", "an integer of 5,000 characters"]),
    ("model: " + "[" * 40 + "]" * 40 + "\n", [":1:", "nested more than 32 levels"]),
    ("steps: 1\n---\nsteps: 2\n", [":2:1:", "another document"]),
    ("- steps\n", ["must hold a mapping of settings; it holds a list"]),
    ("1: 2\nsteps: 3\nzz: 4\n", ["unknown setting(s) 1, 'zz'; known:"]),
    (b"steps: 3\nout: caf\xe9\n", [":2: not UTF-8 text (byte 0xe9 at offset 17)"]),
    (b"#" * MAX_CONFIG_BYTES + b"\n", ["larger than 1,048,576 bytes"]),
])
def test_config_file_errors_are_one_line_naming_the_file(tmp_path, capsys, content, fragments):
    path = write(tmp_path, content)
    line = usage_error(capsys, "--config", path)
    assert line.startswith(f"error: {path}")
    for fragment in fragments:
        assert fragment in line, line


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    missing = str(tmp_path / "missing.yaml")
    assert usage_error(capsys, "--config", missing) == (
        f"error: --config {missing}: No such file or directory.")


@pytest.mark.parametrize("option, value, fragment", [
    ("--steps", "[1", "--steps (line 1, column 3): expected ',' or ']'"),
    ("--steps", "*x", "--steps (line 1, column 1): anchors and aliases"),
    ("--out", "x" * 70_000, "--out: a value of 70,000 characters (at most 65,536)"),
    ("--mask-rate", "high", "`mask_rate` must be a number in (0, 1]; got 'high'"),
    ("--eval-fraction", "[0.1]", "`eval_fraction` must be a number in (0, 1); got [0.1]"),
    ("--bogus", "1", "unrecognized arguments: --bogus 1"),
])
def test_option_errors_are_one_line(capsys, option, value, fragment):
    assert fragment in usage_error(capsys, option, value)


def test_settings_files_without_anchors_read_as_before(tmp_path):
    path = write(tmp_path, "steps: 1:30\nmodel: {preset: bert_tiny, dropout_rate: 0.0}\n"
                           "learning_rate: 1.0e-4\n")
    settings = pretrain.parse_args(["--config", path, "--batch-size", "0x10"])
    assert settings["steps"] == 90 and settings["batch_size"] == 16  # YAML 1.1 integers
    assert settings["model"] == {"preset": "bert_tiny", "dropout_rate": 0.0}
    assert settings["learning_rate"] == 1e-4
    assert pretrain.parse_args(["--config", write(tmp_path, "")])["steps"] == (
        pretrain.SETTINGS["steps"][0])


def test_one_line_joins_escapes_and_clips():
    assert one_line("Cannot load 'x':\n  a: 1\n  b: 2\n") == "Cannot load 'x': a: 1; b: 2"
    assert one_line("bell \x07 and \x1b[31mred") == "bell \\x07 and \\x1b[31mred"
    long = one_line("x" * 5000)
    assert long == "x" * MAX_ERROR_CHARS + "... (cut; the message has 5,000 characters)"
    start = time.monotonic()
    assert one_line("ab\n" * 10**7).endswith("(cut; the message has 30,000,000 characters)")
    assert time.monotonic() - start < 1


def test_run_job_reports_a_multi_line_error_on_one_line(capsys):
    def run(settings):
        raise ValueError("Cannot load weights into 'encoder':\n  shape mismatch: a\n"
                         "  shape mismatch: b")

    assert run_job(run, {}) == 2
    assert capsys.readouterr().err == (
        "error: Cannot load weights into 'encoder': shape mismatch: a; shape mismatch: b\n")


def test_fuzzed_settings_text_reads_or_is_refused_on_one_line():
    report = run_fuzz("tests.training.fuzz_settings", "settings_yaml", max_examples=300,
                      memory_mb=512, timeout=120)
    assert report.failure is None, report.failure
    assert report.cases == 300 and set(report.outcomes) == {"loaded", "refused"}
