"""Console scripts: each names an importable `main`, the installed ones run from any directory.

Shipped configs are found by name (`--config bert_mini_news`) from any directory.
"""

import importlib
import importlib.metadata
import os
import subprocess
import sysconfig
import tomllib

import pytest
import yaml

from tests.training.test_quiet_console import assert_quiet, env_without_log_level
from training import pretrain
from training.settings import config_path, shipped_configs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REINSTALL = "re-run `make install` (it runs `pip install --no-deps -e .`)"

with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    PROJECT = tomllib.load(f)["project"]
SCRIPTS = PROJECT["scripts"]


def test_the_jobs_have_console_scripts():
    assert SCRIPTS == {
        "kbk-pretrain": "training.pretrain:main",
        "kbk-finetune": "training.finetune:main",
        "kbk-distill": "training.distill:main",
        "kbk-export": "training.export:main",
        "kbk-serve": "serving.server:main",
        "kbk-pipeline": "training.pipeline:main",
    }


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_console_script_names_an_importable_main(script):
    module_name, function_name = SCRIPTS[script].split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function_name, None)), f"{script}: {SCRIPTS[script]}"


def test_the_installed_package_lists_the_console_scripts():
    installed = {entry.name: entry.value
                 for entry in importlib.metadata.distribution(PROJECT["name"]).entry_points
                 if entry.group == "console_scripts"}
    assert installed == SCRIPTS, f"the installed package's scripts are out of date: {REINSTALL}"


def test_an_installed_script_runs_from_another_directory(tmp_path):
    script = os.path.join(sysconfig.get_path("scripts"), "kbk-finetune")
    if not os.path.exists(script):
        pytest.fail(f"{script} is missing (the environment predates the console scripts): "
                    f"{REINSTALL}")
    env = env_without_log_level()
    env.pop("PYTHONPATH", None)  # the package comes from its installed metadata
    result = subprocess.run([script, "--help"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "--task" in result.stdout and "--learning-rate" in result.stdout
    assert_quiet(result.stderr)


def test_a_shipped_config_is_found_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped_configs() == ["bert_mini_news", "distill_news", "distill_rotten_tomatoes"]
    for name in ("bert_mini_news", "bert_mini_news.yaml"):
        settings = pretrain.parse_args(["--config", name, "--steps", "7"])
        with open(os.path.join(ROOT, "training", "configs", "bert_mini_news.yaml")) as f:
            shipped = yaml.safe_load(f)
        assert settings == {**settings, **shipped, "steps": 7}


def test_a_file_of_the_same_name_wins_over_a_shipped_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bert_mini_news.yaml").write_text("steps: 3\n")
    assert config_path("bert_mini_news.yaml") == "bert_mini_news.yaml"
    assert pretrain.parse_args(["--config", "bert_mini_news.yaml"])["steps"] == 3


def test_an_unknown_config_name_lists_the_shipped_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        pretrain.parse_args(["--config", "bert_maxi"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error == ("error: --config 'bert_maxi': no such file, nor a shipped config of that "
                     "name (shipped: bert_mini_news, distill_news, distill_rotten_tomatoes).")
    # A path with a directory is a file's: its error is the file's.
    with pytest.raises(SystemExit):
        pretrain.parse_args(["--config", "configs/bert_mini_news.yaml"])
    assert "configs/bert_mini_news.yaml: No such file" in capsys.readouterr().err

