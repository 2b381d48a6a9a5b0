"""training.pipeline_report: metrics.json -> charts/*.png, report.md, report.html."""

import base64
import copy
import html
import html.parser
import json
import re
import struct

import pytest

from training import pipeline_report
from training.pipeline_report import numbers_not_in_metrics, write_report

SCRIPT_SENTENCE = 'a <script>alert("x")</script> & 2 | stars'
ALL_CHARTS = {"summary", "comparison", "pretraining_curves", "finetune_curves",
              "general_distill_curves", "distill_curves", "confusion_matrices"}


def example_metrics(scratch=False):
    """A run's metrics.json as the pipeline writes it (plain floats, never pre-rounded)."""
    metrics = {
        "run": {"teacher": "minilm", "data": "rotten_tomatoes", "full": False,
                "recipe": {"finetune_epochs": 3, "distill_epochs": 2, "batch_size": 32,
                           "learning_rate": 5e-05, "temperature": 2.0, "seed": 1337},
                "machine": {"cpu": "AMD EPYC 7B13 64-Core Processor", "cores": 2},
                "versions": {"python": "3.11.9", "tensorflow": "2.20.0", "keras": "3.10.0",
                             "numpy": "2.1.3"},
                "stage_seconds": {"distill": 151.37, "evaluate": 41.92, "export": 118.06,
                                  "finetune": 603.4, "serve": 14.77, "teacher": 12.31},
                "total_seconds": 941.83},
        "data": {"name": "rotten_tomatoes", "label_names": ["neg", "pos"],
                 "train_examples": 8530, "test_examples": 1066, "test_source": "test split"},
        "teacher": {"source": "all-MiniLM-L6-v2", "parameters": 22713986, "layers": 6,
                    "hidden_size": 384, "pretraining": None},
        "finetune": {"epochs": 3, "train_examples": 8530,
                     "seconds_per_epoch": [201.73, 200.48, 201.19],
                     "history": {"loss": [0.51724, 0.33817, 0.24409],
                                 "accuracy": [0.74619, 0.86143, 0.90977],
                                 "val_loss": [0.43356, 0.41188, 0.44921],
                                 "val_accuracy": [0.79831, 0.81523, 0.81707]}},
        "distill": {"epochs": 2, "student_layers": [0, 2, 4], "seconds": 151.37,
                    "history": {"loss": [1.83311, 1.20094], "soft_loss": [0.91852, 0.60317],
                                "hard_loss": [0.48807, 0.35539],
                                "accuracy": [0.76253, 0.84068],
                                "val_loss": [0.46175, 0.45336],
                                "val_accuracy": [0.78612, 0.80113]},
                    "general": None},
        "evaluate": {
            "teacher": {"accuracy": 0.8170731, "macro_f1": 0.8168452,
                        "sequences_per_second": 131.264, "latency_ms": 23.0417,
                        "parameters": 22713986, "size_mb": 87.1462,
                        "confusion_matrix": [[431, 102], [93, 440]]},
            "student": {"accuracy": 0.8011257, "macro_f1": 0.8009911,
                        "sequences_per_second": 246.771, "latency_ms": 12.4826,
                        "parameters": 15616002, "size_mb": 59.9317,
                        "confusion_matrix": [[418, 115], [97, 436]]}},
        "export": {"variants": [
            {"model": "teacher", "format": "saved_model", "variant": "float32",
             "text_input": True, "path": "exports/serving/teacher/1", "size_mb": 87.5238,
             "latency_ms": 22.1174, "accuracy": 0.8170731, "max_abs_diff": 1.1920929e-07,
             "agreement": 1.0},
            {"model": "teacher", "format": "tflite", "variant": "none", "text_input": True,
             "path": "exports/tflite/teacher_none_text.tflite", "size_mb": 86.9013,
             "latency_ms": 17.5532, "accuracy": 0.8170731, "max_abs_diff": 2.3841858e-06,
             "agreement": 1.0},
            {"model": "teacher", "format": "tflite", "variant": "dynamic_range",
             "text_input": True, "path": "exports/tflite/teacher_dynamic_range_text.tflite",
             "size_mb": 22.0591, "latency_ms": 9.8814, "accuracy": 0.8142589,
             "max_abs_diff": 0.0472113, "agreement": 0.9943715},
            {"model": "student", "format": "saved_model", "variant": "float32",
             "text_input": True, "path": "exports/serving/student/1", "size_mb": 60.3305,
             "latency_ms": 11.7609, "accuracy": 0.8011257, "max_abs_diff": 9.536743e-08,
             "agreement": 1.0},
            {"model": "student", "format": "tflite", "variant": "none", "text_input": False,
             "path": "exports/tflite/student_none.tflite", "size_mb": 59.4416,
             "latency_ms": 8.9051, "accuracy": 0.8011257, "max_abs_diff": 1.9073486e-06,
             "agreement": 1.0},
            {"model": "student", "format": "tflite", "variant": "dynamic_range",
             "text_input": True, "path": "exports/tflite/student_dynamic_range_text.tflite",
             "size_mb": 15.2216, "latency_ms": 5.1342, "accuracy": 0.7973734,
             "max_abs_diff": 0.0391466, "agreement": 0.9915572}]},
        "serve": {"models": ["teacher", "student"],
                  "sentences": ["A gripping, funny film.", SCRIPT_SENTENCE,
                                "Dull: 90 minutes I'll never get back."],
                  "keras_labels": {"teacher": ["pos", "pos", "neg"],
                                   "student": ["pos", "neg", "neg"]},
                  "grpc_labels": {"teacher": ["pos", "pos", "neg"],
                                  "student": ["pos", "neg", "neg"]},
                  "rest_labels": {"teacher": ["pos", "pos", "neg"],
                                  "student": ["pos", "neg", "neg"]},
                  "max_abs_diff": {"grpc": 2.3841858e-07, "rest": 4.7683716e-07},
                  "equal": True, "seconds": 14.77},
        "commands": {
            "docker": "docker run --rm -p 8500:8500 -p 8501:8501 -v \"$PWD/runs/pipeline/"
                      "exports/serving:/models\" tensorflow/serving:2.20.0 "
                      "--model_config_file=/models/models.config",
            "serve_locally": "kbk-serve --port 8500 --rest_api_port 8501 --model_config_file "
                             "runs/pipeline/exports/serving/models.config",
            "client": "python -m serving.client --server localhost:8500 --model_name student "
                      "\"A gripping, funny film.\"",
            "curl": "curl -d '{\"instances\": [\"A gripping, funny film.\"]}' "
                    "localhost:8501/v1/models/student:predict"},
    }
    if scratch:
        metrics["run"]["teacher"] = "scratch"
        metrics["teacher"].update(source="scratch", parameters=4386050, layers=4, hidden_size=256)
        metrics["teacher"]["pretraining"] = {
            "steps": 1200, "vocab_size": 8000, "seconds": 322.6,
            "history": {"loss": [7.912, 6.4417, 5.8735], "mlm_accuracy": [0.0712, 0.1493, 0.1874],
                        "nsp_accuracy": [0.5327, 0.6178, 0.6652],
                        "val_loss": [6.9021, 6.1133, 5.7718]},
            "eval": {"loss": 5.7718, "mlm_accuracy": 0.1902, "nsp_accuracy": 0.6713}}
        metrics["distill"]["general"] = {
            "steps": 600, "seconds": 98.4,
            "history": {"loss": [3.2417, 2.7741], "val_loss": [3.0092, 2.6517]}}
    return metrics


def png_size(data: bytes):
    """(width, height) of a PNG, after checking its signature and header chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


class PageParser(html.parser.HTMLParser):
    """Tags, attributes and visible text (outside <pre>, <style>) of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags, self.attributes, self.text, self.skip = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, name, value) for name, value in attrs]
        self.skip += tag in ("pre", "style", "title")

    def handle_endtag(self, tag):
        self.skip -= tag in ("pre", "style", "title")

    def handle_data(self, data):
        if not self.skip:
            self.text.append(data)


def number_tokens(text):
    return sorted(m.group(0) for m in pipeline_report.NUMBER.finditer(text))


def markdown_outside_code(markdown):
    without_blocks = re.sub(r"^```.*?^```$", "", markdown, flags=re.S | re.M)
    without_images = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", without_blocks)
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", without_images.replace("`", ""))


@pytest.fixture(scope="module")
def scratch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    metrics = example_metrics(scratch=True)
    (out / "metrics.json").write_text(json.dumps(metrics))
    return out, write_report(str(out), json.loads((out / "metrics.json").read_text()))


def test_write_report_writes_both_reports_and_every_chart(scratch_run):
    out, paths = scratch_run
    assert sorted(paths) == sorted(
        [str(out / "report.md"), str(out / "report.html")]
        + [str(out / "charts" / f"{name}.png") for name in ALL_CHARTS])
    for name in ALL_CHARTS:
        width, height = png_size((out / "charts" / f"{name}.png").read_bytes())
        assert width >= 400 and height >= 250, (name, width, height)
    assert not list(out.rglob("*.partial"))
    markdown = (out / "report.md").read_text()
    for name in ALL_CHARTS:
        assert f"](charts/{name}.png)" in markdown
    for command in example_metrics()["commands"].values():
        assert f"```sh\n{command}\n```" in markdown


def test_every_number_in_report_md_is_a_value_of_metrics_json(scratch_run):
    out, _ = scratch_run
    markdown = (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert numbers_not_in_metrics(markdown, metrics) == []
    # The checker saw the numbers: those of the tables, at their precision.
    for shown in ["81.71%", "80.11%", "macro-F1", "23.04 ms", "12.48 ms", "87.15 MiB",
                  "4,386,050", "15,616,002", "131.3 seq/s",
                  "1.2e-07", "| 431 | 102 |", "941.8 s", "0.5172", "90.98%", "8,000"]:
        assert shown in markdown, shown
    teacher, student = metrics["evaluate"]["teacher"], metrics["evaluate"]["student"]
    retention = f"{100 * student['accuracy'] / teacher['accuracy']:.2f}%"
    speedup = f"{teacher['latency_ms'] / student['latency_ms']:.2f}×"
    assert f"retains {retention} of the teacher's accuracy, runs {speedup} faster" in markdown


@pytest.mark.parametrize("shown, tampered, token", [
    ("81.71%", "81.72%", "81.72%"),               # an accuracy
    ("| 431 | 102 |", "| 432 | 102 |", "432"),    # a confusion-matrix cell
    ("12.48 ms", "12.50 ms", "12.50"),            # a latency
    ("59.93 MiB", "59.39 MiB", "59.39"),          # a size
    ("1.2e-07", "1.3e-07", "1.3e-07"),            # a parity difference
    ("941.8 s", "942.8 s", "942.8"),              # the total time
    ("15,616,002", "15,616,003", "15,616,003"),   # a parameter count
])
def test_checker_catches_a_changed_number(scratch_run, shown, tampered, token):
    out, _ = scratch_run
    markdown = (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert shown in markdown
    changed = markdown.replace(shown, tampered, 1)
    line = changed[:changed.index(tampered)].count("\n") + 1
    assert numbers_not_in_metrics(changed, metrics) == [f"{token} (line {line})"]


def test_checker_catches_a_stale_report_and_a_hard_coded_number(scratch_run):
    out, _ = scratch_run
    markdown = (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    newer = copy.deepcopy(metrics)
    newer["evaluate"]["student"]["macro_f1"] = 0.8109911
    assert numbers_not_in_metrics(markdown, newer) == [
        f"80.10% (line {markdown[:markdown.index('| 80.10% |')].count(chr(10)) + 1})"]
    # A number in prose outside every table, and one inside a code span, count too.
    assert numbers_not_in_metrics(markdown + "\nIt runs 7.5× faster on `4096` tokens.\n",
                                  metrics) == [f"7.5× (line {markdown.count(chr(10)) + 2})",
                                               f"4096 (line {markdown.count(chr(10)) + 2})"]


def test_html_is_one_self_contained_page_with_the_same_numbers(scratch_run):
    out, _ = scratch_run
    page = PageParser()
    page.feed((out / "report.html").read_text())
    images = [value for tag, name, value in page.attributes if name == "src"]
    assert len(images) == len(ALL_CHARTS)
    for source in images:
        assert source.startswith("data:image/png;base64,")
        png_size(base64.b64decode(source.split(",", 1)[1]))
    for tag, name, value in page.attributes:
        assert name not in ("href", "srcset", "background", "poster", "data"), (tag, name)
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    markdown = (out / "report.md").read_text()
    assert number_tokens(" ".join(page.text)) == number_tokens(markdown_outside_code(markdown))
    assert "kbk-serve --port 8500" in (out / "report.html").read_text()


def test_text_from_user_data_is_escaped():
    metrics = example_metrics()
    metrics["data"]["label_names"] = ["<b>neg</b>", "pos & co"]
    metrics["serve"]["keras_labels"]["student"][1] = "<img src=x onerror=alert(1)>"
    blocks = pipeline_report.report_blocks(metrics, {})
    page = pipeline_report.to_html(blocks, {})
    assert "<script>" not in page and "<b>" not in page and "<img src=x" not in page
    assert html.escape(SCRIPT_SENTENCE) in page and "&lt;b&gt;neg&lt;/b&gt;" in page
    markdown = pipeline_report.to_markdown(blocks)
    assert not re.search(r"(?<!\\)<", markdown)  # Every "<" escaped: no raw HTML.
    assert r"\<img src=x onerror=alert(1)\>" in markdown
    assert r'a \<script\>alert("x")\</script\> \& 2 \| stars' in markdown
    assert numbers_not_in_metrics(markdown, metrics) == []


def without(metrics, *keys):
    tree = metrics
    for key in keys[:-1]:
        tree = tree[key]
    tree[keys[-1]] = None
    return metrics


def no_teacher_tflite(metrics):
    metrics["export"]["variants"] = [v for v in metrics["export"]["variants"]
                                     if (v["model"], v["format"]) != ("teacher", "tflite")]
    return metrics


def failed_serve(metrics):
    metrics["serve"] = {"models": ["teacher", "student"], "sentences": ["fine"],
                        "error": "the server did not start within 60 s", "equal": False}
    return metrics


@pytest.mark.parametrize("change, says", [
    (lambda m: m, ["Pretraining\n\nNone: the teacher came pretrained",
                   "None: the student was distilled on the task only."]),
    (no_teacher_tflite, ["No TFLite export of the teacher was recorded."]),
    (lambda m: without(m, "serve"), ["The serving check did not run (nothing recorded)."]),
    (failed_serve, ["The serving check failed: the server did not start within 60 s",
                    "No answers of the teacher were recorded.",
                    "| all answers equal Keras' | no |"]),
    (lambda m: without(m, "evaluate", "student"), ["No evaluation of the student was recorded.",
                                                   "No confusion matrix of the student"]),
    (lambda m: without(m, "export"), ["No export was recorded."]),
    (lambda m: without(m, "commands"), ["(not recorded)"]),
    (lambda m: without(m, "finetune", "history"), ["No fine-tuning history was recorded."]),
])
def test_a_missing_part_is_said_missing(change, says):
    metrics = change(example_metrics())
    markdown = pipeline_report.to_markdown(pipeline_report.report_blocks(metrics, {}))
    for sentence in says:
        assert sentence in markdown
    assert numbers_not_in_metrics(markdown, metrics) == []


def key_paths(tree, prefix=()):
    """The key path of every value in a metrics tree (list items included)."""
    items = tree.items() if isinstance(tree, dict) else (
        enumerate(tree) if isinstance(tree, list) else ())
    for key, value in items:
        yield prefix + (key,)
        yield from key_paths(value, prefix + (key,))


@pytest.mark.parametrize("replace, depth", [("delete", 9), (None, 9), ("text", 3), ([], 3)])
def test_any_part_missing_or_malformed_renders(replace, depth):
    """Whatever one value of metrics.json is lost or garbled, the report still renders."""
    original = example_metrics(scratch=True)
    paths = [path for path in key_paths(original) if len(path) <= depth]
    assert len(paths) > (250 if depth == 9 else 60)
    for path in paths:
        metrics = copy.deepcopy(original)
        parent = metrics
        for key in path[:-1]:
            parent = parent[key]
        if replace == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.copy(replace)
        markdown = pipeline_report.to_markdown(pipeline_report.report_blocks(metrics, {}))
        assert markdown.startswith("# keras-bert-kit pipeline report\n"), path
        assert numbers_not_in_metrics(markdown, metrics) == [], path


def test_a_report_of_almost_nothing_still_writes(tmp_path):
    """Charts lacking their data are left out (a stale one removed), sections say why."""
    (tmp_path / "charts").mkdir()
    (tmp_path / "charts" / "pretraining_curves.png").write_bytes(b"from an earlier run")
    paths = write_report(str(tmp_path), {"data": {"name": "reviews.csv"}})
    assert sorted(paths) == [str(tmp_path / "report.html"), str(tmp_path / "report.md")]
    assert list((tmp_path / "charts").iterdir()) == []
    markdown = (tmp_path / "report.md").read_text()
    for sentence in ["No teacher description was recorded.", "No evaluation was recorded.",
                     "No export was recorded.", "No stage timings were recorded."]:
        assert sentence in markdown
    assert numbers_not_in_metrics(markdown, {"data": {"name": "reviews.csv"}}) == []


def test_damaged_chart_data_is_drawn_around(tmp_path):
    metrics = example_metrics()
    metrics["evaluate"]["teacher"]["confusion_matrix"] = [[431, 102], [93]]
    metrics["finetune"]["history"]["accuracy"] = [0.7, None, "n/a"]
    metrics["distill"]["history"] = {"loss": "not a list"}
    metrics["export"]["variants"][0].update(accuracy=None, latency_ms=float("nan"))
    metrics["data"]["label_names"] = ["$x^{$ and a long name cut to fit", "pos"]  # not TeX
    paths = write_report(str(tmp_path), metrics)
    charts = {path.rsplit("/", 1)[1] for path in paths if path.endswith(".png")}
    assert charts == {"summary.png", "comparison.png", "finetune_curves.png",
                      "confusion_matrices.png"}
    markdown = (tmp_path / "report.md").read_text()
    assert "| epoch 2 | — |" in markdown and "No distillation history was recorded." in markdown
    assert numbers_not_in_metrics(markdown, metrics) == []


def test_metrics_must_be_a_dict(tmp_path):
    with pytest.raises(ValueError, match="metrics must be a dict"):
        write_report(str(tmp_path), [1, 2])


def test_one_formatter_per_kind():
    assert pipeline_report.percent(0.812345) == "81.23%"
    assert pipeline_report.milliseconds(23.0417) == "23.04 ms"
    assert pipeline_report.mebibytes(87.1462) == "87.15 MiB"
    assert pipeline_report.count(22713986) == "22,713,986"
    assert pipeline_report.seconds(941.83) == "941.8 s"
    assert pipeline_report.difference(1.1920929e-07) == "1.2e-07"
    for formatter in (pipeline_report.percent, pipeline_report.count, pipeline_report.seconds):
        assert formatter(None) == formatter(float("nan")) == formatter("n/a") == "—"
