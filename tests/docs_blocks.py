"""Reads the code blocks and links of the markdown docs, for tests/test_docs.py.

The markers (documented in tests/test_docs.py and docs/testing.md):
- `<!-- docs-test-setup: ... -->` at the start of a line: Python run before the page's first block;
- `<!-- docs-test: skip: REASON -->` on the line right before a ```python block: not run;
- `NAME = VALUE  # ... docs-test: TINY` in a block: the test runs `NAME = TINY` instead.
"""

from __future__ import annotations

import dataclasses
import re

FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
SETUP = re.compile(r"^<!--\s*docs-test-setup:(.*?)-->", re.DOTALL | re.MULTILINE)
SKIP = re.compile(r"^\s*<!--\s*docs-test:\s*skip:(.*?)-->\s*$")
# `target = value  # anything docs-test: replacement`: an assignment, then the tiny value.
TINY_VALUE = re.compile(r"^(\s*[A-Za-z_][\w.,\[\] ]*?)\s*=(?!=)\s*[^#]+?#.*?\bdocs-test:\s*(.+?)\s*$")
# [text](target) and ![alt](target); a target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclasses.dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # 1-based line of the block's first code line
    skip_reason: str | None = None


def read_blocks(text: str) -> list[Block]:
    """Every fenced code block, in page order, with the skip reason of a preceding marker."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match or not match.group(2):
            i += 1
            continue
        indent, language = match.group(1), match.group(2)
        skip = SKIP.match(lines[i - 1]) if i else None
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if end == len(lines):
            raise ValueError(f"line {i + 1}: the ```{language} block is never closed")
        body = [line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:end]]
        blocks.append(Block(language, "\n".join(body) + "\n", i + 2,
                            skip.group(1).strip() if skip else None))
        i = end + 1
    return blocks


def python_blocks(text: str) -> list[Block]:
    return [block for block in read_blocks(text) if block.language == "python"]


def setup_code(text: str) -> str:
    """The Python of the page's `docs-test-setup` comments, in page order."""
    return "\n".join(_dedent(match.group(1)) for match in SETUP.finditer(text))


def _dedent(code: str) -> str:
    import textwrap

    return textwrap.dedent(code.strip("\n")) + "\n"


def tiny_code(block: Block) -> str:
    """The block's code with each `# docs-test: VALUE` assignment given VALUE.

    A `docs-test:` comment on a line that is not `NAME = VALUE` is an error: it would be
    silently ignored otherwise.
    """
    out = []
    for number, line in enumerate(block.code.splitlines(), block.line):
        if "docs-test:" in line:
            match = TINY_VALUE.match(line)
            if not match:
                raise ValueError(f"line {number}: a `# docs-test: VALUE` comment must end an "
                                 f"assignment `NAME = VALUE`; got {line.strip()!r}")
            line = f"{match.group(1)} = {match.group(2)}"
        out.append(line)
    return "\n".join(out) + "\n"


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every link or image that is a path in this repository."""
    found = []
    in_code = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_code = not in_code
            continue
        if in_code:
            continue
        for match in LINK.finditer(line):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL (http:, mailto:) or an anchor on the same page
            found.append((number, target.split("#", 1)[0]))
    return found


# The stand-ins below share one size (TINY), so that the pages' training steps run the same
# XLA kernel shapes, compiled once per process. Only the depth differs: tracing a training
# step costs about a second a layer, so a stand-in has as few layers as its page needs (a teacher
# 5, for students made of its layers 0, 2 and 4).
TINY = dict(hidden_size=32, num_heads=4, intermediate_size=64, max_sequence_length=128)


def tiny_bert_encoder(num_layers: int):
    """A small, randomly initialised BertEncoder of the uncased vocabulary's size."""
    import keras_bert_kit as kbk
    from keras_bert_kit.assets import bert_uncased_vocab_path

    tokenizer = kbk.BertTokenizer(bert_uncased_vocab_path())
    return kbk.BertEncoder(kbk.BertConfig(vocab_size=tokenizer.vocabulary_size(),
                                          num_layers=num_layers, **TINY)), tokenizer


def save_tiny_classifier(path: str, num_layers: int = 5) -> None:
    """A small, untrained Rotten Tomatoes classifier saved at `path`, for a page's setup.

    It stands for the fine-tuned classifier a reader has made by then (docs/fine-tuning.md).
    """
    import keras_bert_kit as kbk

    encoder, tokenizer = tiny_bert_encoder(num_layers)
    classifier = kbk.SequenceClassifier(
        encoder, num_classes=2, label_names=["rotten", "fresh"],
        preprocessor=kbk.SequenceClassifierPreprocessor(tokenizer, sequence_length=128))
    classifier.save(path)


def save_tiny_pretrainer(out_dir: str) -> None:
    """A small, untrained BERT pretrainer as `kbk-pretrain` leaves it: pretrainer.keras, vocab.txt."""
    import os

    import keras_bert_kit as kbk

    encoder, tokenizer = tiny_bert_encoder(4)  # layer_map pairs its layers 2 and 4
    os.makedirs(out_dir, exist_ok=True)
    kbk.BertPretrainer(encoder).save(os.path.join(out_dir, "pretrainer.keras"))
    tokenizer.save_vocabulary(os.path.join(out_dir, "vocab.txt"))


_tiny_hf_dirs: dict[int, str] = {}


def tiny_hf_dir(num_layers: int = 2) -> str:
    """A Hugging Face BERT directory (config, safetensors, uncased vocabulary) of a tiny random
    encoder, standing for all-MiniLM-L6-v2 where a page only needs an encoder to start from.

    Written once per process and depth, in a temporary directory removed at exit.
    """
    if num_layers not in _tiny_hf_dirs:
        import atexit
        import shutil
        import tempfile

        import keras_bert_kit as kbk

        directory = tempfile.mkdtemp(prefix="docs_tiny_hf_")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        encoder, tokenizer = tiny_bert_encoder(num_layers)
        _tiny_hf_dirs[num_layers] = kbk.to_huggingface(encoder, directory, tokenizer=tokenizer)
    return _tiny_hf_dirs[num_layers]
