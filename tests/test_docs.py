"""Executable docs: every ```python block of README.md and docs/*.md runs, and every link resolves.

How a page is run (one test item per page):
- Its ```python blocks run in page order, in one namespace made fresh for the page, in an
  empty temporary directory (files a block writes land there). A block that raises fails the
  page, and the traceback names the page and line.
- Tiny settings for the test are declared where the reader sees them, on an assignment:
      epochs = 3  # docs-test: 1
  The test runs `epochs = 1`. Anything after `docs-test:` to the end of the line is the value;
  the comment may say more before it (`limit = None  # every example; docs-test: 64`). A
  `docs-test:` comment on a line that is not an assignment fails the page.
- `<!-- docs-test-setup: PYTHON -->` (an HTML comment, not rendered) at the start of a line holds
  Python run before the page's first block, for what a reader has already (a fine-tuned model at the
  path a block loads, a data file). Its stand-ins come from tests/docs_blocks.py, tiny and of
  one size (`path = minilm_model_dir()  # docs-test: tiny_hf_dir()` for a checkpoint directory).
- A block that cannot run on a CI machine (a multi-host cluster, a GPU, a long job) is
  preceded by `<!-- docs-test: skip: REASON -->`. Skipped blocks need a reason and stay few:
  at most MAX_SKIPPED in all.
- Output shown in `# -> ...` comments is not compared; the page's claims are checked by
  the tests of the code they describe.
Bash blocks are not run. Every relative link and image of the pages must point to a file.
"""

import os
import pathlib

import keras
import pytest

from tests import docs_blocks

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
PAGE_IDS = [str(page.relative_to(ROOT)) for page in PAGES]
MAX_SKIPPED = 5


def read(page: pathlib.Path) -> str:
    return page.read_text(encoding="utf-8")


def run_page(page: pathlib.Path, namespace: dict) -> None:
    text = read(page)
    name = page.relative_to(ROOT)
    exec(compile(docs_blocks.setup_code(text), f"{name} (docs-test-setup)", "exec"), namespace)
    for block in docs_blocks.python_blocks(text):
        if block.skip_reason is not None:
            continue
        # Blank lines before the code keep the traceback's line numbers those of the page.
        code = "\n" * (block.line - 1) + docs_blocks.tiny_code(block)
        exec(compile(code, str(name), "exec"), namespace)


def test_pages_exist():
    assert (ROOT / "docs").is_dir() and len(PAGES) > 5


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        run_page(page, {"__name__": "__docs__"})
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def test_skipped_blocks_are_few_and_explained():
    skipped = [(page.name, block.line, block.skip_reason)
               for page in PAGES for block in docs_blocks.python_blocks(read(page))
               if block.skip_reason is not None]
    assert all(reason for _, _, reason in skipped), f"a skip without a reason: {skipped}"
    assert len(skipped) <= MAX_SKIPPED, f"{len(skipped)} skipped blocks: {skipped}"


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_relative_links_resolve(page):
    broken = [(line, target) for line, target in docs_blocks.relative_links(read(page))
              if target and not (page.parent / target).exists()]
    assert not broken, f"{page.name}: links to missing files (line, target): {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {os.path.normpath(target) for _, target in docs_blocks.relative_links(read(PAGES[0]))}
    missing = [str(page.relative_to(ROOT)) for page in PAGES[1:]
               if str(page.relative_to(ROOT)) not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


# The markers themselves.

PAGE = '''Intro.
<!-- docs-test-setup:
import math
-->
```python
epochs = 3  # docs-test: 1
limit = None  # every example; docs-test: 64
```
<!-- docs-test: skip: needs a 2-host cluster -->
```python
cluster()
```
```bash
echo not python
```
See [a page](docs/x.md#part), ![chart](images/c.png), [site](https://example.com), [here](#top).
'''


def test_markers_are_read():
    blocks = docs_blocks.read_blocks(PAGE)
    assert [(b.language, b.line, b.skip_reason) for b in blocks] == [
        ("python", 6, None), ("python", 11, "needs a 2-host cluster"), ("bash", 14, None)]
    assert docs_blocks.setup_code(PAGE) == "import math\n"
    assert docs_blocks.setup_code("prose: `<!-- docs-test-setup: x -->` is not setup") == ""
    assert docs_blocks.tiny_code(blocks[0]) == "epochs = 1\nlimit = 64\n"
    assert docs_blocks.relative_links(PAGE) == [(16, "docs/x.md"), (16, "images/c.png")]


def test_a_docs_test_value_off_an_assignment_is_an_error():
    block = docs_blocks.Block("python", "model.fit(x, epochs=3)  # docs-test: 1\n", 7)
    with pytest.raises(ValueError, match="line 7: a `# docs-test: VALUE` comment must end"):
        docs_blocks.tiny_code(block)


def test_an_unclosed_block_is_an_error():
    with pytest.raises(ValueError, match="line 2: the ```python block is never closed"):
        docs_blocks.read_blocks("text\n```python\nx = 1\n")
