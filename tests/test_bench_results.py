"""bench/_results.py (what every benchmark writes to bench/results/) and `make bench`'s wiring."""

import ast
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import _results  # noqa: E402
import _run_all  # noqa: E402
from _timing import Timing, format_table  # noqa: E402

BENCHMARKS = sorted(p.stem for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def fake_machine() -> _results.Machine:
    timing = Timing(times=(0.01,), first_call_seconds=0.02)
    return _results.Machine(cpu="Test CPU 9000", cores=2,
                            peak=_results.PeakCandidate(1000, "tf.function", timing),
                            versions={"python": "3.x"})


def line_chart():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure()
    figure.subplots().plot([1, 2, 3])
    return figure


def png_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_write_results_writes_machine_header_tables_and_pngs(tmp_path):
    table = _results.Table(["model", "seq/s", "vs peer"], [["ours", "12.5", "1.30x"],
                                                           ["peer | b", "9.6", "1.00x"]],
                           title="Throughput:", footnote="medians of 10 calls")
    ratios = _results.ratio_chart("ratios", {"ours vs peer": 1.3, "ours vs other": 0.9},
                                  xlabel="x", target={"ours vs peer": 1.1})

    def plotted(path):  # a chart that writes its own PNG, as export_matrix's plot does
        line_chart().savefig(path)

    paths = _results.write_results(
        "demo", [table, "PASS: 1.30x (target >= 1.1x)\n  second line"],
        {"ratios": ratios, "plot": plotted}, machine=fake_machine(), directory=tmp_path,
        command=["python", "bench/demo.py"])

    assert [p.name for p in paths] == ["demo.md", "demo-ratios.png", "demo-plot.png"]
    assert png_files(tmp_path) == ["demo-plot.png", "demo-ratios.png", "demo.md"]
    for png in paths[1:]:
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    text = paths[0].read_text()
    lines = text.splitlines()
    assert lines[0] == "# demo"
    machine_line = next(line for line in lines if line.startswith("**Machine:**"))
    assert lines.index(machine_line) < lines.index("### Throughput")
    assert "Test CPU 9000, 2 usable cores, fp32 matmul peak 200.0 GFLOP/s" in machine_line
    assert "`python bench/demo.py`" in text
    assert "| model | seq/s | vs peer |" in text
    assert "| --- | ---: | ---: |" in text
    assert "| peer \\| b | 9.6 | 1.00x |" in text
    assert "medians of 10 calls" in text
    assert "PASS: 1.30x (target >= 1.1x)  \nsecond line" in text
    assert "![ratios](demo-ratios.png)" in text and "![plot](demo-plot.png)" in text
    assert "Smoke run" not in text


def test_write_results_replaces_files_whole_and_drops_stale_charts(tmp_path):
    machine = fake_machine()
    _results.write_results("demo", ["first"], {"old": line_chart()}, machine=machine,
                           directory=tmp_path)
    before = (tmp_path / "demo.md").read_text()

    def broken(path):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _results.write_results("demo", ["second"], {"new": broken}, machine=machine,
                               directory=tmp_path)
    # Nothing half-written, no temporary file left, the earlier results untouched.
    assert png_files(tmp_path) == ["demo-old.png", "demo.md"]
    assert (tmp_path / "demo.md").read_text() == before

    with pytest.raises(ValueError, match="not a PNG"):
        _results.write_results("demo", ["second"], {"new": lambda path: Path(path).write_text(
            "text")}, machine=machine, directory=tmp_path)
    assert png_files(tmp_path) == ["demo-old.png", "demo.md"]

    _results.write_results("demo", ["third"], {"new": line_chart()}, machine=machine,
                           directory=tmp_path)
    assert png_files(tmp_path) == ["demo-new.png", "demo.md"]
    assert "third" in (tmp_path / "demo.md").read_text()


@pytest.mark.parametrize("name", ["", "../escape", "a b"])
def test_write_results_refuses_a_name_that_is_no_file_stem(tmp_path, name):
    with pytest.raises(ValueError, match="results name"):
        _results.write_results(name, [], {}, machine=fake_machine(), directory=tmp_path)


def test_bench_report_writes_the_rows_it_prints_and_quick_runs_apart(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path))
    report = _results.BenchReport("demo", quick=True, description="A demo benchmark.")
    header, rows = ["engine", "req/s"], [["server", "101.5"], ["in-process", "240.0"]]
    report.note("16 clients")
    report.table(header, rows, title="Load:")
    report.chart("ratios", _results.ratio_chart("r", {"server": 0.42}, xlabel="x"))
    paths = report.write(fake_machine())

    printed = capsys.readouterr().out
    assert "16 clients\nLoad:\n" + format_table(header, rows) in printed
    assert [p.parent for p in paths] == [tmp_path / "quick"] * 2
    text = paths[0].read_text()
    assert _results.QUICK_BANNER in text and "A demo benchmark." in text
    assert "| server | 101.5 |" in text and "| in-process | 240.0 |" in text
    assert not (tmp_path / "demo.md").exists()


def test_machine_info_with_a_tiny_matmul():
    machine = _results.machine_info(sizes=(32,), budget_seconds=0.0, min_repeats=1)
    assert machine.cores >= 1
    assert machine.cpu.strip()
    assert machine.matmul_peak_gflops > 0
    assert machine.peak.size == 32 and machine.peak.path in _results.KERAS_PATHS
    assert machine.to_dict()["matmul_peak_gflops"] == machine.matmul_peak_gflops


def makefile_variable(text: str, name: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    match = re.search(rf"^{re.escape(name)}\s*:=?(.*)$", joined, re.MULTILINE)
    assert match, f"the Makefile defines no {name}"
    return match.group(1).split()


def test_make_bench_runs_every_benchmark_script():
    text = (ROOT / "Makefile").read_text()
    listed = makefile_variable(text, "BENCHMARKS")
    assert sorted(listed) == BENCHMARKS
    assert len(listed) == len(set(listed))
    # serving_fuzz serves what serving_load exports.
    assert listed.index("serving_load") < listed.index("serving_fuzz")
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", text.replace("\\\n", " "), re.MULTILINE)
    assert recipe and "bench/_run_all.py" in recipe.group(1)
    assert "$(BENCHMARKS)" in recipe.group(1)
    assert "bench" in makefile_variable(text, ".PHONY")


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_writes_its_results_under_its_own_name(name):
    tree = ast.parse((BENCH / f"{name}.py").read_text())
    reports = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
               and isinstance(node.func, ast.Name) and node.func.id == "BenchReport"]
    assert reports, f"bench/{name}.py makes no BenchReport"
    assert all(isinstance(r.args[0], ast.Constant) and r.args[0].value == name for r in reports)
    writes = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
              and isinstance(node.func, ast.Attribute) and node.func.attr == "write"
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "out"]
    assert writes, f"bench/{name}.py never calls out.write()"
    assert not re.search(r"print\(format_table\(", (BENCH / f"{name}.py").read_text())


def status(name, exit_code, wrote, seconds=90.0):
    return _results.BenchStatus(name, ["python", f"bench/{name}.py"], exit_code, seconds, wrote,
                                f"runs/bench/{name}.log")


def test_index_names_each_benchmark_status_and_links(tmp_path):
    machine = fake_machine()
    _results.write_results("fresh", [], {"ratios": line_chart()}, machine=machine,
                           directory=tmp_path)
    _results.write_results("stale", [], {}, machine=machine, directory=tmp_path)
    index = _results.write_index(
        [status("fresh", 0, True), status("stale", 1, False), status("silent", 0, False),
         status("missing", 2, False)], machine=machine, directory=tmp_path)
    text = index.read_text()
    assert index.name == "README.md"
    assert text.index("**Machine:** Test CPU 9000") < text.index("| benchmark |")
    assert "3 of 4 failed (stale, silent, missing)" in text
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| benchmark")}
    assert rows["fresh"] == ("| fresh | ok | 1.5 | [tables](fresh.md), [ratios](fresh-ratios.png)"
                             " | `runs/bench/fresh.log` |")
    assert "FAILED (exit code 1)" in rows["stale"] and "(from an earlier run)" in rows["stale"]
    assert "FAILED (exited 0 but wrote no results)" in rows["silent"]
    assert "FAILED (exit code 2)" in rows["missing"] and "| - |" in rows["missing"]


def test_runner_goes_on_past_a_failure_and_exits_nonzero_naming_it(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(tmp_path))
    assert _run_all.main(["--quick", "no_such_benchmark --flag", "nor_this_one"]) == 1
    assert "FAILED: no_such_benchmark" in capsys.readouterr().err
    text = (tmp_path / "quick" / "README.md").read_text()
    assert "2 of 2 failed (no_such_benchmark, nor_this_one)" in text
    assert _results.QUICK_BANNER in text


def test_runner_shows_and_logs_a_benchmark_output(tmp_path, capfd):
    log = tmp_path / "out.log"
    code = _run_all.run_logged(
        [sys.executable, "-c", "import sys; print('table'); print('oops', file=sys.stderr); "
         "sys.exit(3)"], str(log))
    assert code == 3
    assert log.read_text().split() == ["table", "oops"]
    assert "table" in capfd.readouterr().out
    assert os.path.isfile(log)
