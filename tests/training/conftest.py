"""Fixtures of the command-line job tests."""

import json

import pytest

CONTEXT = ("The Eiffel Tower, completed in 1889, stands in Paris. It was designed by "
           "Gustave Eiffel's company and is 330 metres tall.")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("finetune_data")
    rows = ["text,label"] + [f"{t},{l}" for t, l in [
        ("a wonderful film", "pos"), ("terrible and boring", "neg"), ("great acting", "pos"),
        ("awful plot", "neg"), ("i loved it", "pos"), ("i hated it", "neg")]]
    (directory / "cls.csv").write_text("\n".join(rows) + "\n")
    tagged = [(["John", "Smith", "visited", "Berlin"], ["B-PER", "I-PER", "O", "B-LOC"]),
              (["Mary", "lives", "in", "Paris", "."], ["B-PER", "O", "O", "B-LOC", "O"])] * 3
    (directory / "tag.jsonl").write_text(
        "".join(json.dumps({"tokens": w, "tags": t}) + "\n" for w, t in tagged))
    questions = [("When was it completed?", "1889"), ("How tall is it?", "330 metres")] * 3
    (directory / "qa.jsonl").write_text("".join(
        json.dumps({"question": q, "context": CONTEXT,
                    "answers": {"text": [a], "answer_start": [CONTEXT.index(a)]}}) + "\n"
        for q, a in questions))
    return directory
