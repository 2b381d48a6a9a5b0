"""Results files shared by the scripts in bench/: the machine, tables and charts.

Every benchmark prints its report through a `BenchReport` (`report.table(...)`,
`report.note(...)`, `report.chart(...)`) and ends with `report.write()`, which calls
`write_results`: `bench/results/<name>.md` (the machine at the top, then the tables
and notes in the order they were printed, then the charts) and one
`bench/results/<name>-<chart>.png` per chart, each file written under a temporary
name and renamed into place. A `--quick` (smoke) run writes to `bench/results/quick/`
instead, every file marked as measuring nothing. `BENCH_RESULTS_DIR` moves the
results directory.

`machine_info()` names the CPU and the usable cores and measures the float32
`tf.matmul` peak, the yardstick of every throughput figure.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from _timing import Timing, format_table, measure, usable_cores

BENCH_DIR = Path(__file__).resolve().parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
QUICK_BANNER = ("**Smoke run (`--quick`): measures nothing.** It only checks that the "
                "benchmark works.")
# Square float32 matmuls that `machine_info` times by default, on both Keras inference paths.
PEAK_MATMUL_SIZES = (1024, 2048)
KERAS_PATHS = {"tf.function": False, "tf.function+XLA": True}  # label -> jit_compile


def results_dir(quick: bool = False) -> Path:
    """`bench/results/` (or `$BENCH_RESULTS_DIR`); its `quick/` for smoke runs."""
    base = Path(os.environ.get("BENCH_RESULTS_DIR") or BENCH_DIR / "results")
    return base / "quick" if quick else base


# === The machine ===============================================================


@dataclasses.dataclass(frozen=True)
class PeakCandidate:
    """One timed square `tf.matmul`: its size, Keras path and timing."""

    size: int
    path: str
    timing: Timing

    @property
    def gflops(self) -> float:
        return 2 * self.size**3 / self.timing.median / 1e9

    def to_dict(self) -> dict:
        return {"size": self.size, "path": self.path, "gflops": self.gflops,
                **self.timing.to_dict()}  # fmt: skip


def measure_matmul_peak(
    sizes: Sequence[int] = PEAK_MATMUL_SIZES,
    *,
    budget_seconds: float,
    min_repeats: int,
    log: Callable[[str], None] | None = None,
) -> list[PeakCandidate]:
    """fp32 `tf.matmul` GFLOP/s for each size and Keras path; the best is the peak."""
    import tensorflow as tf

    candidates = []
    for size in sizes:
        a = tf.random.normal((size, size), dtype=tf.float32, seed=1)
        b = tf.random.normal((size, size), dtype=tf.float32, seed=2)
        for path, jit_compile in KERAS_PATHS.items():
            matmul = tf.function(tf.linalg.matmul, jit_compile=jit_compile)
            timing = measure(lambda: matmul(a, b).numpy(),  # noqa: B023 (used now)
                             budget_seconds=budget_seconds, min_repeats=min_repeats)
            candidates.append(PeakCandidate(size, path, timing))
            if log:
                log(f"matmul {size}x{size} {path}: {candidates[-1].gflops:.1f} GFLOP/s")
    return candidates


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclasses.dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    peak: PeakCandidate
    versions: dict[str, str]

    @property
    def matmul_peak_gflops(self) -> float:
        return self.peak.gflops

    def summary(self) -> str:
        return (f"{self.cpu}, {self.cores} usable core{'s' if self.cores != 1 else ''}, "
                f"fp32 matmul peak {self.peak.gflops:.1f} GFLOP/s "
                f"(tf.matmul {self.peak.size}x{self.peak.size}, {self.peak.path})")

    def to_dict(self) -> dict:
        return {"cpu": self.cpu, "cores": self.cores, "matmul_peak_gflops": self.peak.gflops,
                "matmul_peak": self.peak.to_dict(), "versions": self.versions}


def machine_info(
    peak_candidates: Sequence[PeakCandidate] = (),
    *,
    sizes: Sequence[int] = PEAK_MATMUL_SIZES,
    budget_seconds: float = 0.5,
    min_repeats: int = 3,
) -> Machine:
    """The CPU model, the usable cores and the fp32 `tf.matmul` peak: the best of
    `peak_candidates` when a benchmark measured them already, else measured now
    (`sizes` on both Keras paths, each for `budget_seconds` and `min_repeats` calls)."""
    import keras
    import tensorflow as tf

    candidates = list(peak_candidates) or measure_matmul_peak(
        sizes, budget_seconds=budget_seconds, min_repeats=min_repeats)
    best = max(candidates, key=lambda candidate: candidate.gflops)
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__}
    return Machine(cpu=cpu_model(), cores=usable_cores(), peak=best, versions=versions)


def run_machine_info(quick: bool) -> Machine:
    """`machine_info` as a run of the benchmarks measures it: a smoke (`--quick`) run
    times one small matmul, its peak as meaningless as its other numbers."""
    if quick:
        return machine_info(sizes=(512,), budget_seconds=0.0, min_repeats=2)
    return machine_info()


# === Writing ===================================================================


@dataclasses.dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    title: str | None = None
    footnote: str | None = None

    def text(self) -> str:
        lines = [self.title] if self.title else []
        lines.append(format_table(self.header, self.rows))
        if self.footnote:
            lines.append(self.footnote)
        return "\n".join(lines)

    def markdown(self) -> str:
        numeric = [bool(self.rows) and all(_numeric(row[i]) for row in self.rows)
                   for i in range(len(self.header))]
        lines = [f"### {self.title.rstrip(':')}", ""] if self.title else []
        lines.append("| " + " | ".join(_cell(h) for h in self.header) + " |")
        lines.append("|" + "|".join(" ---: " if right else " --- " for right in numeric) + "|")
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in self.rows]
        if self.footnote:
            lines += ["", self.footnote]
        return "\n".join(lines)


def _numeric(text) -> bool:
    if str(text) in ("-", ""):  # no figure: leaves a number column right-aligned
        return True
    try:
        float(str(text).rstrip("%x").replace(",", ""))
    except ValueError:
        return False
    return True


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or " "


def _note_markdown(text: str) -> str:
    # Hard line breaks keep the console's lines; indentation would turn into code blocks.
    lines = [line.strip() for line in text.strip("\n").splitlines()]
    return "  \n".join(line.replace("*", "\\*") for line in lines if line)


Chart = Callable[[str], None]  # writes a PNG to the path it is given


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """`write(temporary_path)` in `path`'s directory, then a rename onto `path`."""
    # Named per process, created as any file (umask), and with the suffix that tells
    # matplotlib the format.
    temporary = str(path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}"))
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _write_png(path: Path, chart) -> None:
    def write(temporary: str) -> None:
        if callable(chart):
            chart(temporary)
        else:  # a matplotlib Figure
            chart.savefig(temporary, format="png", dpi=120, bbox_inches="tight")
        with open(temporary, "rb") as f:
            if f.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise ValueError(f"chart {path.name!r}: what was written is not a PNG")

    write_atomically(path, write)


def write_text(path: Path, text: str) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)

    write_atomically(path, write)


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def machine_markdown(machine: Machine, quick: bool) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in machine.versions.items())
    lines = [f"**Machine:** {machine.summary()}  ", f"**Software:** {versions}"]
    if quick:
        lines += ["", QUICK_BANNER]
    return "\n".join(lines)


def write_results(
    name: str,
    sections: Sequence[Table | str],
    charts: dict[str, object],
    *,
    machine: Machine,
    quick: bool = False,
    description: str | None = None,
    command: Sequence[str] | None = None,
    directory: Path | None = None,
) -> list[Path]:
    """Writes `<directory>/<name>.md` (machine, run, then `sections`: tables and notes
    in order, then the charts) and `<directory>/<name>-<chart>.png` per chart (a
    matplotlib Figure, or a callable writing a PNG to the path it is given), each
    atomically; removes `<name>-*.png` charts of earlier runs. Returns the paths."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"results name {name!r}: use letters, digits and underscores")
    for chart_name in charts:
        if not chart_name or not chart_name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"chart name {chart_name!r}: use letters, digits, - and _")
    directory = Path(directory) if directory is not None else results_dir(quick)
    directory.mkdir(parents=True, exist_ok=True)

    pngs = {chart_name: directory / f"{name}-{chart_name}.png" for chart_name in charts}
    for chart_name, chart in charts.items():
        _write_png(pngs[chart_name], chart)
    for stale in directory.glob(f"{name}-*.png"):
        if stale not in pngs.values():
            stale.unlink()

    command = list(command if command is not None else [Path(sys.executable).name, *sys.argv])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = git_commit()
    run = f"**Run:** {when}" + (f", commit {commit}" if commit else "") + \
        f": `{shlex.join(command)}`"
    parts = [f"# {name}", machine_markdown(machine, quick), run]
    if description:
        parts.insert(1, description)
    for section in sections:
        parts.append(section.markdown() if isinstance(section, Table) else _note_markdown(section))
    parts += [f"![{chart_name}]({path.name})" for chart_name, path in pngs.items()]
    markdown = directory / f"{name}.md"
    write_text(markdown, "\n\n".join(part for part in parts if part) + "\n")
    return [markdown, *pngs.values()]


@dataclasses.dataclass(frozen=True)
class BenchStatus:
    """How one benchmark of a `make bench` run ended."""

    name: str
    command: list[str]
    exit_code: int
    seconds: float
    wrote_results: bool  # its <name>.md was written by this run
    log: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.wrote_results

    def status(self) -> str:
        if self.ok:
            return "ok"
        if self.exit_code != 0:
            return f"FAILED (exit code {self.exit_code})"
        return "FAILED (exited 0 but wrote no results)"


def write_index(statuses: Sequence[BenchStatus], *, machine: Machine, quick: bool = False,
                directory: Path | None = None) -> Path:
    """`<directory>/README.md`: the machine, then one line per benchmark of the run:
    its status, minutes, results and charts (or those of an earlier run, said so), log."""
    directory = Path(directory) if directory is not None else results_dir(quick)
    directory.mkdir(parents=True, exist_ok=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = git_commit()
    failed = [s.name for s in statuses if not s.ok]
    lines = [
        "# Benchmark results", "",
        machine_markdown(machine, quick), "",
        f"**Run:** `make bench{' QUICK=1' if quick else ''}`, finished {when}"
        + (f", commit {commit}" if commit else "") + ": "
        + (f"{len(failed)} of {len(statuses)} failed ({', '.join(failed)})." if failed
           else f"all {len(statuses)} benchmarks ran."),
        "", "Each benchmark's page starts with the machine it ran on and the command that "
        "reproduces it.", "",
        "| benchmark | status | minutes | results | output |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for s in statuses:
        page = directory / f"{s.name}.md"
        links = []
        if page.exists():
            links.append(f"[tables]({page.name})")
            links += [f"[{png.stem[len(s.name) + 1:]}]({png.name})"
                      for png in sorted(directory.glob(f"{s.name}-*.png"))]
            if not s.wrote_results:
                links.append("(from an earlier run)")
        lines.append(f"| {s.name} | {s.status()} | {s.seconds / 60:.1f} | "
                     f"{', '.join(links) or '-'} | `{s.log}` |")
    index = directory / "README.md"
    write_text(index, "\n".join(lines) + "\n")
    return index


def ratio_chart(
    title: str,
    ratios: dict[str, float],
    *,
    xlabel: str,
    target: float | dict[str, float] | None = None,
):
    """A horizontal bar chart of `ratios` (label -> ratio) with a line at 1; `target`: a
    line across all bars, or {label: target} marked on those bars alone."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    labels = list(ratios)
    figure = Figure(figsize=(8, 1.2 + 0.45 * len(labels)))
    axes = figure.subplots()
    bars = axes.barh(range(len(labels)), [ratios[label] for label in labels], color="tab:blue")
    axes.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.invert_yaxis()
    axes.axvline(1.0, color="gray", linewidth=1)
    if isinstance(target, dict):
        marked = [(index, target[label]) for index, label in enumerate(labels) if label in target]
        for number, (index, value) in enumerate(marked):
            axes.vlines(value, index - 0.45, index + 0.45, color="tab:red", linestyle="--",
                        linewidth=1.5, label=None if number else "target")
        axes.legend(fontsize=8, loc="lower right")
    elif target is not None:
        axes.axvline(target, color="tab:red", linestyle="--", linewidth=1,
                     label=f"target {target:g}")
        axes.legend(fontsize=8, loc="lower right")
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_title(title, fontsize=10)
    axes.margins(x=0.15)
    figure.tight_layout()
    return figure


def counts_chart(title: str, counts: dict[str, dict[str, int]], *, xlabel: str):
    """Horizontal stacked bars: per row label, its count of each category."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    labels = list(counts)
    categories = sorted({category for row in counts.values() for category in row})
    figure = Figure(figsize=(9, 1.2 + 0.35 * max(len(labels), len(categories) / 2)))
    axes = figure.subplots()
    colors = matplotlib.colormaps["tab20"].colors
    left = [0] * len(labels)
    for number, category in enumerate(categories):
        values = [counts[label].get(category, 0) for label in labels]
        axes.barh(range(len(labels)), values, left=left, label=category,
                  color=colors[number % len(colors)])
        left = [a + b for a, b in zip(left, values)]
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.tight_layout()
    return figure


class BenchReport:
    """What a benchmark prints, kept to be written to `bench/results/` as well.

    `table` and `note` print at once (the console report is unchanged by writing);
    `write` writes everything kept, with the machine at the top."""

    def __init__(self, name: str, *, quick: bool, description: str | None = None):
        self.name, self.quick, self.description = name, quick, description
        self.sections: list[Table | str] = []
        self.charts: dict[str, object] = {}

    def note(self, text: str = "") -> None:
        print(text, flush=True)
        if text.strip():
            self.sections.append(text)

    def table(self, header: list[str], rows: list[list[str]], *, title: str | None = None,
              footnote: str | None = None) -> Table:
        table = Table(list(header), [[str(cell) for cell in row] for row in rows], title,
                      footnote)
        print(table.text(), flush=True)
        self.sections.append(table)
        return table

    def chart(self, name: str, chart) -> None:
        """`chart`: a matplotlib Figure, or a callable writing a PNG to a given path."""
        self.charts[name] = chart

    def write(self, machine: Machine | None = None) -> list[Path]:
        """Writes the results; the machine is measured now unless given."""
        paths = write_results(self.name, self.sections, self.charts,
                              machine=machine or run_machine_info(self.quick),
                              quick=self.quick, description=self.description)
        print(f"\nresults: {paths[0]}" + "".join(f", {p.name}" for p in paths[1:]), flush=True)
        return paths
