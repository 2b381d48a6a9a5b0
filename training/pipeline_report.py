"""The main job's report: the metrics dict of `training.pipeline` -> charts, report.md, report.html.

`write_report(out_dir, metrics)` reads nothing but `metrics` (the metrics.json schema in
`training.pipeline`) and writes `charts/*.png`, `report.md` and `report.html` (one
self-contained page: inline CSS, charts as data: URIs). Both reports are rendered from one list
of blocks, so they say the same things. Every number shown goes through one formatter per
kind (`percent`, `milliseconds`, `mebibytes`, `count`, `seconds`, ...), and
`numbers_not_in_metrics(markdown, metrics)` checks a report.md against its metrics: each
number token must be a value of the metrics at the precision shown.
Any optional part (pretraining, general distillation, an export, the serving check) may be
missing or null: its section says so.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import html
import math
import os
import re

CHARTS_DIR = "charts"
DASH = "—"
# Stages in the order the pipeline runs them; stage_seconds is written with sorted keys.
STAGE_ORDER = ("teacher", "finetune", "distill", "evaluate", "export", "serve", "report")
MODELS = ("teacher", "student")
FORMAT_NAMES = {"keras": "Keras", "saved_model": "SavedModel", "tflite": "TFLite"}
MODEL_COLORS = {"teacher": "#1f77b4", "student": "#ff7f0e"}
FORMAT_MARKERS = {"keras": "o", "saved_model": "s", "tflite": "^"}
# Matrices larger than this are drawn without a count in every cell (it would be unreadable).
MAX_ANNOTATED_LABELS = 12
MAX_CHART_LABEL_CHARS = 24   # a label name of the user's data
MAX_CHART_NAME_CHARS = 48    # a model or export name


# -- formatting: one function per kind of number --------------------------------------


def _number(value):
    """`value` as a float, or None where the metrics hold no finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _formatter(render):
    def format_value(value):
        number = _number(value)
        return DASH if number is None else render(number)
    return format_value


percent = _formatter(lambda v: f"{100 * v:.2f}%")         # accuracy, F1, agreement (0..1)
milliseconds = _formatter(lambda v: f"{v:.2f} ms")
mebibytes = _formatter(lambda v: f"{v:.2f} MiB")
count = _formatter(lambda v: f"{round(v):,}")
seconds = _formatter(lambda v: f"{v:.1f} s")
rate = _formatter(lambda v: f"{v:.1f} seq/s")
ratio = _formatter(lambda v: f"{v:.2f}×")
difference = _formatter(lambda v: f"{v:.1e}")             # max |difference| of outputs
decimal = _formatter(lambda v: f"{v:.4f}")                # losses


def is_fraction_metric(name: str) -> bool:
    """Whether a logged metric is a fraction in [0, 1] (shown as a percentage)."""
    return any(part in name for part in ("accuracy", "f1", "agreement"))


def metric_value(name: str, value) -> str:
    return (percent if is_fraction_metric(name) else decimal)(value)


def yes_no(value) -> str:
    return DASH if value is None else ("yes" if value else "no")


def plain(value) -> str:
    """A text value of metrics (a name, a path), or a dash where it is missing."""
    return DASH if value is None else str(value)


def format_name(value) -> str:
    """'SavedModel' for saved_model: an export format as people write it."""
    return FORMAT_NAMES.get(value, plain(value)) if isinstance(value, str) else plain(value)


def setting(value) -> str:
    """A recipe or run setting, whatever its type."""
    if isinstance(value, bool) or value is None:
        return yes_no(value)
    if isinstance(value, int):
        return count(value)
    if isinstance(value, float):
        return DASH if _number(value) is None else f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(setting(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {setting(item)}" for key, item in value.items())
    return str(value)


def derived_values(metrics) -> dict:
    """The values the report computes from metrics (not stored in them): student/teacher."""
    def quotient(numerator, denominator):
        a, b = _number(numerator), _number(denominator)
        return a / b if a is not None and b else None

    teacher = _get(metrics, "evaluate", "teacher")
    student = _get(metrics, "evaluate", "student")
    return {
        "retention": quotient(_get(student, "accuracy"), _get(teacher, "accuracy")),
        "speedup": quotient(_get(teacher, "latency_ms"), _get(student, "latency_ms")),
        "size_ratio": quotient(_get(teacher, "size_mb"), _get(student, "size_mb")),
    }


def _get(tree, *keys):
    """tree[k1][k2]...; None where a level is missing, null or not a dict."""
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def distill_history(metrics) -> dict:
    """The task distillation's history, its eval loss named for what it is.

    The distiller's evaluation runs the student alone, so its `val_loss` is the hard loss:
    beside the training `loss` (the weighted sum of every component) it would mislead.
    """
    history = dict(_as_dict(_get(metrics, "distill", "history")))
    if "hard_loss" in history and "val_loss" in history and "val_hard_loss" not in history:
        history["val_hard_loss"] = history.pop("val_loss")
    return history


def _as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _as_list(value) -> list:
    return value if isinstance(value, list) else []


# -- the document: blocks that render to both Markdown and HTML ------------------------


class Code(str):
    """Text shown verbatim in a code span (a path, a name)."""


@dataclasses.dataclass
class Heading:
    level: int
    text: str


@dataclasses.dataclass
class Paragraph:
    pieces: list  # str (plain text) or Code


@dataclasses.dataclass
class Table:
    header: list
    rows: list
    numeric: tuple = ()  # indices of right-aligned columns


@dataclasses.dataclass
class Image:
    path: str  # relative to the report
    alt: str


@dataclasses.dataclass
class CodeBlock:
    text: str
    language: str = "sh"


def _note(*pieces) -> Paragraph:
    return Paragraph(list(pieces))


def _history_table(history: dict, seconds_per_epoch=None) -> Table | None:
    """One row per epoch: every logged series (train, then eval), and the epoch's seconds."""
    history = _as_dict(history)
    names = sorted({name.removeprefix("val_") for name in history})
    columns = [n for name in names for n in (name, f"val_{name}") if n in history]
    epochs = max((len(_as_list(history[name])) for name in columns), default=0)
    if not epochs:
        return None
    timed = bool(_as_list(seconds_per_epoch))
    header = ["epoch"] + [("eval " + n[4:] if n.startswith("val_") else n).replace("_", " ")
                          for n in columns]
    header += ["time"] if timed else []
    rows = []
    for epoch in range(epochs):
        cells = [f"epoch {epoch + 1}"]
        for name in columns:
            series = _as_list(history[name])
            cells.append(metric_value(name, series[epoch]) if epoch < len(series) else DASH)
        if timed:
            cells.append(seconds(_at(seconds_per_epoch, epoch)))
        rows.append(cells)
    return Table(header, rows, numeric=tuple(range(1, len(header))))


def _at(values, index):
    values = _as_list(values)
    return values[index] if index < len(values) else None


def _chart(charts: dict, name: str, alt: str) -> list:
    return [Image(charts[name], alt)] if name in charts else []


def _facts(rows: list) -> Table:
    """A two-column table: what, and its value."""
    return Table(["", "value"], rows, numeric=(1,))


def _training_blocks(facts, history, what, charts, chart, seconds_per_epoch=None) -> list:
    """A training run: its facts, its per-epoch table (or why there is none), its curves."""
    table = _history_table(history, seconds_per_epoch)
    return ([_facts(facts), table or _note(f"No {what} history was recorded.")]
            + _chart(charts, chart, f"{what.capitalize()} curves"))


def _summary(metrics) -> Paragraph:
    data, teacher = _as_dict(metrics.get("data")), _as_dict(metrics.get("teacher"))
    scores_t = _as_dict(_get(metrics, "evaluate", "teacher"))
    scores_s = _as_dict(_get(metrics, "evaluate", "student"))
    derived = derived_values(metrics)
    pieces = [
        "Teacher ", Code(plain(teacher.get("source", _get(metrics, "run", "teacher")))),
        f" ({count(teacher.get('parameters'))} parameters), fine-tuned on ",
        Code(plain(data.get("name"))),
        f" ({count(data.get('train_examples'))} training examples; "
        f"{count(data.get('test_examples'))} test examples from the "
        f"{plain(data.get('test_source'))}), reaches {percent(scores_t.get('accuracy'))} "
        "accuracy. ",
    ]
    if not scores_s:
        return Paragraph(pieces + ["No evaluation of the student was recorded."])
    layers = _as_list(_get(metrics, "distill", "student_layers"))
    pieces.append(
        f"The distilled student ({count(scores_s.get('parameters'))} parameters"
        + (f", built from teacher layers {setting(layers)}" if layers else "")
        + f") reaches {percent(scores_s.get('accuracy'))}: it retains "
        f"{percent(derived['retention'])} of the teacher's accuracy, runs "
        f"{ratio(derived['speedup'])} faster ({milliseconds(scores_s.get('latency_ms'))} vs "
        f"{milliseconds(scores_t.get('latency_ms'))} per sentence at batch size one) and is "
        f"{ratio(derived['size_ratio'])} smaller ({mebibytes(scores_s.get('size_mb'))} vs "
        f"{mebibytes(scores_t.get('size_mb'))}).")
    return Paragraph(pieces)


def _data_section(metrics) -> list:
    data = metrics.get("data")
    if not isinstance(data, dict):
        return [Heading(2, "Data"), _note("No data description was recorded.")]
    return [Heading(2, "Data"), _facts([
        ["data set", Code(plain(data.get("name")))],
        ["labels", ", ".join(str(n) for n in _as_list(data.get("label_names"))) or DASH],
        ["training examples", count(data.get("train_examples"))],
        ["test examples", count(data.get("test_examples"))],
        ["test examples from", plain(data.get("test_source"))],
    ])]


def _teacher_section(metrics, charts) -> list:
    teacher = metrics.get("teacher")
    blocks = [Heading(2, "Teacher")]
    if not isinstance(teacher, dict):
        return blocks + [_note("No teacher description was recorded.")]
    blocks.append(_facts([
        ["source", Code(plain(teacher.get("source")))],
        ["parameters", count(teacher.get("parameters"))],
        ["layers", count(teacher.get("layers"))],
        ["hidden size", count(teacher.get("hidden_size"))],
    ]))
    pretraining = teacher.get("pretraining")
    blocks.append(Heading(3, "Pretraining"))
    if not isinstance(pretraining, dict):
        return blocks + [_note("None: the teacher came pretrained (",
                               Code(plain(teacher.get("source"))), ").")]
    return blocks + _training_blocks(
        [["steps", count(pretraining.get("steps"))],
         ["vocabulary size", count(pretraining.get("vocab_size"))],
         ["time", seconds(pretraining.get("seconds"))]]
        + [[f"eval {name}", metric_value(name, value)]
           for name, value in _as_dict(pretraining.get("eval")).items()],
        pretraining.get("history"), "pretraining", charts, "pretraining_curves")


def _finetune_section(metrics, charts) -> list:
    finetune = metrics.get("finetune")
    blocks = [Heading(2, "Fine-tuning")]
    if not isinstance(finetune, dict):
        return blocks + [_note("No fine-tuning was recorded.")]
    return blocks + _training_blocks(
        [["epochs", count(finetune.get("epochs"))],
         ["training examples", count(finetune.get("train_examples"))]],
        finetune.get("history"), "fine-tuning", charts, "finetune_curves",
        finetune.get("seconds_per_epoch"))


def _distill_section(metrics, charts) -> list:
    distill = metrics.get("distill")
    blocks = [Heading(2, "Distillation")]
    if not isinstance(distill, dict):
        return blocks + [_note("No distillation was recorded.")]
    general = distill.get("general")
    blocks.append(Heading(3, "General distillation"))
    if isinstance(general, dict):
        blocks += _training_blocks(
            [["steps", count(general.get("steps"))], ["time", seconds(general.get("seconds"))]],
            general.get("history"), "general distillation", charts, "general_distill_curves")
    else:
        blocks.append(_note("None: the student was distilled on the task only."))
    history = distill_history(metrics)
    blocks.append(Heading(3, "Task distillation"))
    if "val_hard_loss" in history:
        blocks.append(_note("Evaluation runs the student alone: its loss is the hard loss "
                            "(against the labels), shown as eval hard loss."))
    return blocks + _training_blocks(
        [["epochs", count(distill.get("epochs"))],
         ["student built from teacher layers",
          setting(_as_list(distill.get("student_layers"))) or DASH],
         ["time", seconds(distill.get("seconds"))]],
        history, "distillation", charts, "distill_curves")


def _evaluation_section(metrics, charts) -> list:
    blocks = [Heading(2, "Evaluation")]
    evaluate = _as_dict(metrics.get("evaluate"))
    rows = [[model, percent(s.get("accuracy")), percent(s.get("macro_f1")),
             rate(s.get("sequences_per_second")), milliseconds(s.get("latency_ms")),
             count(s.get("parameters")), mebibytes(s.get("size_mb"))]
            for model in MODELS if isinstance(s := evaluate.get(model), dict)]
    if not rows:
        return blocks + [_note("No evaluation was recorded.")]
    blocks.append(Table(["model", "accuracy", "macro-F1", "throughput",
                         "latency (batch size one)", "parameters", "size"], rows,
                        numeric=(1, 2, 3, 4, 5, 6)))
    blocks += [_note(f"No evaluation of the {model} was recorded.")
               for model in MODELS if not isinstance(evaluate.get(model), dict)]
    blocks += _chart(charts, "comparison", "Teacher, student and exports compared")

    blocks.append(Heading(3, "Confusion matrices"))
    names = [str(n) for n in _as_list(_get(metrics, "data", "label_names"))]
    for model in MODELS:
        matrix = _as_list(_get(evaluate, model, "confusion_matrix"))
        if not matrix:
            blocks.append(_note(f"No confusion matrix of the {model} was recorded."))
            continue
        labels = names if len(names) == len(matrix) else [DASH] * len(matrix)
        blocks.append(_note(f"{model.capitalize()} (rows: true label, columns: predicted "
                            "label):"))
        blocks.append(Table(["true \\ predicted"] + labels, [
            [label] + [count(cell) for cell in _as_list(row)]
            for label, row in zip(labels, matrix)], numeric=tuple(range(1, len(labels) + 1))))
    return blocks + _chart(charts, "confusion_matrices", "Confusion matrices")


def variant_name(variant: dict) -> str:
    """'student · TFLite dynamic_range, text in': one export in charts and tables."""
    name = f"{plain(variant.get('model'))} · {format_name(variant.get('format'))}"
    if variant.get("variant") is not None:
        name += f" {plain(variant['variant'])}"
    return name + (", text in" if variant.get("text_input") else "")


def _export_section(metrics) -> list:
    blocks = [Heading(2, "Exports")]
    variants = [v for v in _as_list(_get(metrics, "export", "variants")) if isinstance(v, dict)]
    if not variants:
        return blocks + [_note("No export was recorded.")]
    blocks.append(Table(
        ["model", "format", "variant", "text in", "size", "latency", "accuracy",
         "max |diff|", "agreement", "path"],
        [[plain(v.get("model")), format_name(v.get("format")),
          plain(v.get("variant")), yes_no(v.get("text_input")), mebibytes(v.get("size_mb")),
          milliseconds(v.get("latency_ms")), percent(v.get("accuracy")),
          difference(v.get("max_abs_diff")), percent(v.get("agreement")),
          Code(plain(v.get("path")))] for v in variants],
        numeric=(4, 5, 6, 7, 8)))
    blocks.append(_note("Parity: the largest |difference| of the export's logits from the "
                        "Keras model's, and the share of sentences where both predict the same "
                        "label. Size is on disk; latency is the median over single sentences."))
    for model in MODELS:
        for fmt in ("saved_model", "tflite"):
            if not any(v.get("model") == model and v.get("format") == fmt for v in variants):
                blocks.append(_note(f"No {FORMAT_NAMES[fmt]} export of the {model} was "
                                    "recorded."))
    blocks += [_note(f"{variant_name(v)}: ", plain(v["error"])) for v in variants
               if v.get("error")]
    return blocks


def _serve_section(metrics) -> list:
    blocks = [Heading(2, "Serving check")]
    serve = metrics.get("serve")
    if not isinstance(serve, dict):
        return blocks + [_note("The serving check did not run (nothing recorded).")]
    if serve.get("error"):
        blocks.append(_note("The serving check failed: ", str(serve["error"])))
    sentences = [str(s) for s in _as_list(serve.get("sentences"))]
    for model in [str(m) for m in _as_list(serve.get("models"))]:
        answers = {source: _as_list(_get(serve, f"{source}_labels", model))
                   for source in ("keras", "grpc", "rest")}
        if not any(answers.values()):
            blocks.append(_note(f"No answers of the {model} were recorded."))
            continue
        blocks.append(Heading(3, model.capitalize()))
        rows = []
        for index, sentence in enumerate(sentences):
            cells = [str(_at(answers[source], index) or DASH) for source in answers]
            rows.append([sentence] + cells + [yes_no(DASH not in cells and len(set(cells)) == 1)])
        blocks.append(Table(["sentence", "Keras", "gRPC", "REST", "equal"], rows))
    diffs = _as_dict(serve.get("max_abs_diff"))
    blocks.append(_facts([
        ["max |diff| of gRPC logits from Keras", difference(diffs.get("grpc"))],
        ["max |diff| of REST logits from Keras", difference(diffs.get("rest"))],
        ["all answers equal Keras'", yes_no(serve.get("equal"))],
        ["time", seconds(serve.get("seconds"))],
    ]))
    return blocks


def _timing_section(metrics) -> list:
    run = _as_dict(metrics.get("run"))
    stage_seconds = _as_dict(run.get("stage_seconds"))
    blocks = [Heading(2, "Stage timings")]
    if not stage_seconds and run.get("total_seconds") is None:
        return blocks + [_note("No stage timings were recorded.")]
    order = [s for s in STAGE_ORDER if s in stage_seconds]
    order += sorted(s for s in stage_seconds if s not in STAGE_ORDER)
    rows = [[stage, seconds(stage_seconds[stage])] for stage in order]
    return blocks + [Table(["stage", "time"], rows + [["total", seconds(run.get("total_seconds"))]],
                           numeric=(1,))]


def _machine_section(metrics) -> list:
    run = _as_dict(metrics.get("run"))
    machine, versions = _as_dict(run.get("machine")), _as_dict(run.get("versions"))
    blocks = [Heading(2, "Run, machine and versions"), _facts([
        ["teacher", Code(plain(run.get("teacher")))],
        ["data", Code(plain(run.get("data")))],
        ["full recipe", yes_no(run.get("full"))],
        ["CPU", plain(machine.get("cpu"))],
        ["cores", count(machine.get("cores"))],
    ] + [[name, str(version)] for name, version in versions.items()])]
    recipe = _as_dict(run.get("recipe"))
    if recipe:
        blocks += [Heading(3, "Recipe"), Table(["setting", "value"],
                                                [[name, setting(v)] for name, v in recipe.items()],
                                                numeric=(1,))]
    return blocks


COMMANDS = (
    ("docker", "Serve both models with the official TensorFlow Serving image:"),
    ("serve_locally", "Or serve them with this package's server, without Docker:"),
    ("client", "Ask the server with the gRPC client:"),
    ("curl", "Or over REST:"),
)


def _commands_section(metrics) -> list:
    commands = _as_dict(metrics.get("commands"))
    blocks = [Heading(2, "Serve and call the exported models")]
    for key, caption in COMMANDS:
        blocks.append(_note(caption))
        command = commands.get(key)
        blocks.append(CodeBlock(str(command)) if command else _note("(not recorded)"))
    return blocks


def report_blocks(metrics: dict, charts: dict) -> list:
    """The report as blocks. `charts`: chart name -> path relative to the report."""
    return [
        Heading(1, "keras-bert-kit pipeline report"),
        _summary(metrics),
        *_chart(charts, "summary", "Accuracy against latency, teacher vs student vs exports"),
        *_data_section(metrics),
        *_teacher_section(metrics, charts),
        *_finetune_section(metrics, charts),
        *_distill_section(metrics, charts),
        *_evaluation_section(metrics, charts),
        *_export_section(metrics),
        *_serve_section(metrics),
        *_timing_section(metrics),
        *_machine_section(metrics),
        *_commands_section(metrics),
    ]


# -- rendering ------------------------------------------------------------------------


def _markdown_text(text: str) -> str:
    """Plain text in Markdown: one line, every Markdown-significant character escaped."""
    return re.sub(r"([\\`*_\[\]<>|#!~&{}$])", r"\\\1", re.sub(r"\s+", " ", str(text)))


def _markdown_piece(piece) -> str:
    if isinstance(piece, Code):
        text = " ".join(piece.split()).replace("|", "\\|")
        # A code span holding backticks needs a longer fence, spaced from its text.
        return f"`` {text} ``" if "`" in text else f"`{text}`"
    return _markdown_text(piece)


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def to_markdown(blocks: list) -> str:
    lines = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + _markdown_text(block.text), ""]
        elif isinstance(block, Paragraph):
            lines += ["".join(_markdown_piece(p) for p in block.pieces), ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_markdown_piece(c) for c in block.header) + " |")
            lines.append("|" + "|".join("---:" if i in block.numeric else "---"
                                        for i in range(len(block.header))) + "|")
            lines += ["| " + " | ".join(_markdown_piece(c) for c in row) + " |"
                      for row in block.rows]
            lines.append("")
        elif isinstance(block, Image):
            lines += [f"![{_markdown_text(block.alt)}]({block.path})", ""]
        elif isinstance(block, CodeBlock):
            fence = _fence(block.text)
            lines += [fence + block.language, block.text, fence, ""]
    return "\n".join(lines)


def _html_piece(piece) -> str:
    text = html.escape(str(piece))
    return f"<code>{text}</code>" if isinstance(piece, Code) else text


STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 0; background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em; background: #fff; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: .3em .7em; vertical-align: top; }
th { background: #f3f3f3; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
pre { background: #f5f5f5; padding: .8em 1em; overflow-x: auto; border-radius: 4px; }
code { font: 13px ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
"""


def to_html(blocks: list, images: dict) -> str:
    """One self-contained page. `images`: Image.path -> PNG bytes (inlined as data: URIs)."""
    title = next((b.text for b in blocks if isinstance(b, Heading)), "report")
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append("<p>" + "".join(_html_piece(p) for p in block.pieces) + "</p>")
        elif isinstance(block, Table):
            def cells(row, tag, numeric=block.numeric):
                return "".join(
                    (f'<{tag} class="number">' if i in numeric else f"<{tag}>")
                    + _html_piece(cell) + f"</{tag}>" for i, cell in enumerate(row))
            body.append("<table><thead><tr>" + cells(block.header, "th") + "</tr></thead><tbody>"
                        + "".join(f"<tr>{cells(row, 'td')}</tr>" for row in block.rows)
                        + "</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(images[block.path]).decode("ascii")
            body.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">')
        elif isinstance(block, CodeBlock):
            body.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            # Nothing runs and nothing loads but the inlined charts and styles.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
            "<body><main>\n" + "\n".join(body) + "\n</main></body>\n</html>\n")


# -- charts ---------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # No display on servers and CI.
    import matplotlib.pyplot as plt

    return plt


def _short(text, limit=MAX_CHART_LABEL_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _series(values) -> list:
    return [math.nan if _number(v) is None else float(v) for v in _as_list(values)]


def curves_figure(plt, history, title: str):
    """One panel per logged quantity: training and evaluation per epoch."""
    from matplotlib.ticker import MaxNLocator

    history = _as_dict(history)
    names = sorted({n.removeprefix("val_") for n in history
                    if any(map(math.isfinite, _series(history[n])))})
    if not names:
        return None
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows + 0.6),
                                squeeze=False)
    for axis, name in zip(axes.flat, names):
        scale = 100 if is_fraction_metric(name) else 1
        for key, label in ((name, "train"), (f"val_{name}", "eval")):
            values = _series(history.get(key))
            if values:
                axis.plot(range(1, len(values) + 1), [scale * v for v in values],
                          marker="o", label=label)
        axis.set_title(name.replace("_", " "))
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"{name.replace('_', ' ')} (%)" if scale == 100
                        else "loss (lower is better)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _comparison_entries(metrics) -> list:
    """(name, model, format, accuracy, latency ms, size MiB): the Keras models, then exports."""
    entries = []
    for model in MODELS:
        scores = _get(metrics, "evaluate", model)
        if isinstance(scores, dict):
            entries.append((f"{model} · Keras", model, "keras", _number(scores.get("accuracy")),
                            _number(scores.get("latency_ms")), _number(scores.get("size_mb"))))
    for variant in _as_list(_get(metrics, "export", "variants")):
        if isinstance(variant, dict):
            entries.append((variant_name(variant), plain(variant.get("model")),
                            plain(variant.get("format")), _number(variant.get("accuracy")),
                            _number(variant.get("latency_ms")), _number(variant.get("size_mb"))))
    return entries


PANELS = ((3, "accuracy on the test split (%)", percent, 100),
          (4, "latency, one sentence (ms)", milliseconds, 1),
          (5, "size on disk (MiB)", mebibytes, 1))


def _comparison_figure(plt, metrics):
    entries = _comparison_entries(metrics)
    if not entries:
        return None
    height = 1.2 + 0.42 * len(entries)
    figure, axes = plt.subplots(1, 3, figsize=(15, height), sharey=True)
    positions = range(len(entries))
    for axis, (column, label, format_value, scale) in zip(axes, PANELS):
        values = [entry[column] for entry in entries]
        axis.barh(positions, [scale * v if v is not None else 0 for v in values],
                  color=[MODEL_COLORS.get(entry[1], "#7f7f7f") for entry in entries])
        for position, value in zip(positions, values):
            axis.annotate(format_value(value), (scale * value if value is not None else 0,
                                                position),
                          xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        axis.set_xlabel(label)
        axis.margins(x=0.25)
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(positions), [_short(entry[0], MAX_CHART_NAME_CHARS)
                                         for entry in entries], fontsize=9)
    axes[0].invert_yaxis()
    figure.suptitle("Teacher vs student vs each export")
    figure.tight_layout()
    return figure


def _summary_figure(plt, metrics):
    entries = [e for e in _comparison_entries(metrics) if e[3] is not None and e[4] is not None]
    if not entries:
        return None
    figure, axis = plt.subplots(figsize=(9, 5.2))
    largest = max((e[5] for e in entries if e[5] is not None), default=1.0) or 1.0
    for name, model, fmt, accuracy, latency, size in entries:
        area = 60 + 600 * (size or 0) / largest
        axis.scatter([latency], [100 * accuracy], s=area, alpha=0.7,
                     color=MODEL_COLORS.get(model, "#7f7f7f"),
                     marker=FORMAT_MARKERS.get(fmt, "D"), edgecolors="black", linewidths=0.6,
                     label=f"{_short(name, MAX_CHART_NAME_CHARS)} ({mebibytes(size)})")
    axis.set_xlabel("latency, one sentence (ms) - lower is better")
    axis.set_ylabel("accuracy on the test split (%)")
    axis.set_title("Teacher vs distilled student vs exports (marker area: size on disk)")
    axis.grid(alpha=0.3)
    axis.margins(0.15)
    legend = axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5),
                         labelspacing=1.1, frameon=False)
    for handle in legend.legend_handles:
        handle.set_sizes([70])  # Legend markers of one size: the chart shows the sizes.
    figure.tight_layout()
    return figure


def _confusion_figure(plt, metrics):
    names = [str(n) for n in _as_list(_get(metrics, "data", "label_names"))]
    matrices = [(model, _as_list(_get(metrics, "evaluate", model, "confusion_matrix")))
                for model in MODELS]
    # A matrix that is not square (a damaged metrics.json) is not drawn; its table shows it.
    matrices = [(model, [_series(row) for row in matrix]) for model, matrix in matrices
                if matrix and all(len(_as_list(row)) == len(matrix) for row in matrix)]
    if not matrices:
        return None
    size = max(len(matrix) for _, matrix in matrices)
    side = min(9.0, 2.6 + 0.45 * size)
    figure, axes = plt.subplots(1, len(matrices), figsize=(side * len(matrices), side),
                                squeeze=False)
    for axis, (model, matrix) in zip(axes.flat, matrices):
        labels = [_short(n) for n in names] if len(names) == len(matrix) else None
        axis.imshow(matrix, cmap="Blues", vmin=0)
        if len(matrix) <= MAX_ANNOTATED_LABELS:
            peak = max((v for row in matrix for v in row if math.isfinite(v)), default=0)
            for i, row in enumerate(matrix):
                for j, value in enumerate(row):
                    axis.text(j, i, count(value), ha="center", va="center",
                              color="white" if value > peak / 2 else "black")
        ticks = range(len(matrix))
        axis.set_xticks(list(ticks), labels, rotation=45 if labels else 0, ha="right")
        axis.set_yticks(list(ticks), labels)
        axis.set_xlabel("predicted label")
        axis.set_ylabel("true label")
        axis.set_title(f"{model} (test examples)")
    figure.suptitle("Confusion matrices")
    figure.tight_layout()
    return figure


def _chart_figures(plt, metrics):
    """(chart name, figure or None) of every chart the report knows."""
    pretraining = _get(metrics, "teacher", "pretraining")
    general = _get(metrics, "distill", "general")
    return [
        ("summary", _summary_figure(plt, metrics)),
        ("comparison", _comparison_figure(plt, metrics)),
        ("pretraining_curves", curves_figure(
            plt, _get(pretraining, "history"),
            f"Pretraining the teacher ({count(_get(pretraining, 'steps'))} steps)")),
        ("finetune_curves", curves_figure(plt, _get(metrics, "finetune", "history"),
                                           "Fine-tuning the teacher")),
        ("general_distill_curves", curves_figure(
            plt, _get(general, "history"),
            f"General distillation ({count(_get(general, 'steps'))} steps)")),
        ("distill_curves", curves_figure(plt, distill_history(metrics),
                                          "Task distillation of the student")),
        ("confusion_matrices", _confusion_figure(plt, metrics)),
    ]


def _write_atomically(path: str, data: bytes) -> None:
    with open(path + ".partial", "wb") as f:
        f.write(data)
    os.replace(path + ".partial", path)


def write_charts(out_dir: str, metrics: dict) -> dict:
    """Writes out_dir/charts/NAME.png; returns {name: PNG bytes} of those written.

    A chart whose data is missing is not drawn, and a stale one from an earlier run is removed.
    """
    import io

    plt = _pyplot()
    directory = os.path.join(out_dir, CHARTS_DIR)
    os.makedirs(directory, exist_ok=True)
    written = {}
    # Label names come from user data: a "$" in one must not start TeX math.
    with plt.rc_context({"text.parse_math": False}):
        figures = _chart_figures(plt, metrics)
    for name, figure in figures:
        path = os.path.join(directory, f"{name}.png")
        if figure is None:
            if os.path.exists(path):
                os.remove(path)
            continue
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        _write_atomically(path, buffer.getvalue())
        written[name] = buffer.getvalue()
    return written


def write_report(out_dir: str, metrics: dict) -> list:
    """Writes charts/*.png, report.md and report.html into out_dir; returns their paths."""
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict (the contents of metrics.json), got "
                         f"{type(metrics).__name__}")
    os.makedirs(out_dir, exist_ok=True)
    pngs = write_charts(out_dir, metrics)
    charts = {name: f"{CHARTS_DIR}/{name}.png" for name in pngs}
    blocks = report_blocks(metrics, charts)
    markdown_path = os.path.join(out_dir, "report.md")
    html_path = os.path.join(out_dir, "report.html")
    _write_atomically(markdown_path, to_markdown(blocks).encode("utf-8"))
    _write_atomically(html_path, to_html(
        blocks, {charts[name]: png for name, png in pngs.items()}).encode("utf-8"))
    return [markdown_path, html_path] + [os.path.join(out_dir, path) for path in charts.values()]


# -- checking a report against its metrics --------------------------------------------

# A number as the formatters write it: 22,713,216 / 81.23% / 2.53× / 1.0e-07 / 5e-05.
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(e[+-]?\d+)?([%×]?)(?!\w)")
EPOCH = re.compile(r"\bepoch (\d+)\b")


def _leaves(tree, numbers: list, texts: list) -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            texts.append(str(key))
            _leaves(value, numbers, texts)
    elif isinstance(tree, list):
        for value in tree:
            _leaves(value, numbers, texts)
    elif isinstance(tree, str):
        texts.append(tree)
    elif _number(tree) is not None:
        numbers.append(float(tree))


def _text_spans(text: str, strings: list) -> list:
    """(start, end) of every whole-word occurrence of the strings in text."""
    strings = sorted({" ".join(s.split()) for s in strings} - {""}, key=len, reverse=True)
    if not strings:
        return []
    # One alternation, longest first: where texts overlap, the longer one covers.
    pattern = r"(?<!\w)(?:" + "|".join(map(re.escape, strings)) + r")(?!\w)"
    return [match.span() for match in re.finditer(pattern, text)]


def numbers_not_in_metrics(markdown: str, metrics: dict) -> list:
    """Number tokens of a report.md that no value of `metrics` gives at the precision shown.

    A token matches a number of metrics.json (or a ratio of two, `derived_values`) when it
    equals it rounded to the token's decimals (percentages: 100 times the value). Not checked:
    fenced code blocks (the commands), image paths, numbers inside a text that metrics.json
    holds (a sentence, a version, a path, the CPU's name) and the epoch ordinals of the
    per-epoch tables ("epoch 3", at most the longest history).
    """
    numbers, texts = [], []
    _leaves(metrics, numbers, texts)
    numbers += [v for v in derived_values(metrics).values() if v is not None]
    # Blanks the code blocks keeping their lines, so that a line number is report.md's.
    text = re.sub(r"^(`{3,}).*?^\1[ \t]*$", lambda m: "\n" * m.group(0).count("\n"),
                  markdown, flags=re.S | re.M)
    text = re.sub(r"(!\[[^\]]*\])\([^)]*\)", r"\1", text)
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)  # Markdown's backslash escapes.
    covered = bytearray(len(text))  # 1 where a text of metrics.json or an ordinal lies
    longest = max([len(_as_list(series)) for tree in (
        _get(metrics, "finetune", "history"), _get(metrics, "distill", "history"),
        _get(metrics, "distill", "general", "history"),
        _get(metrics, "teacher", "pretraining", "history"))
        for series in _as_dict(tree).values()] + [0])
    ordinals = [m.span(1) for m in EPOCH.finditer(text) if 1 <= int(m.group(1)) <= longest]
    for start, end in _text_spans(text, texts) + ordinals:
        covered[start:end] = b"\1" * (end - start)
    numbers.sort()
    missing = []
    for match in NUMBER.finditer(text):
        start, end = match.span()
        if all(covered[start:end]):
            continue
        whole, fraction, exponent, unit = match.groups()
        shown = float(whole.replace(",", "") + (fraction or "") + (exponent or ""))
        decimals = len(fraction or ".") - 1 - int((exponent or "e0")[1:])
        scale = 100.0 if unit == "%" else 1.0
        tolerance = 0.5 * 10.0 ** -decimals * (1 + 1e-9) / scale
        nearest = bisect.bisect_left(numbers, shown / scale - tolerance)
        if nearest == len(numbers) or numbers[nearest] > shown / scale + tolerance:
            line = text.count("\n", 0, start) + 1
            missing.append(f"{match.group(0)} (line {line})")
    return missing
