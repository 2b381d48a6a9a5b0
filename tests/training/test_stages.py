"""training.stages: finished stages are checked and skipped; everything else runs again."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from training.stages import (
    INPUTS_FILE,
    RECORD_FILE,
    ProgressBar,
    Stage,
    manifest_of,
    run_stages,
    stage_dir,
)
from tests.conftest import ROOT


class Recorder:
    """Fake stages that write small files and count their runs."""

    def __init__(self):
        self.runs = []

    def stage(self, name, upstream=(), settings=None, outputs=(), body=None):
        def run(context):
            self.runs.append(name)
            with open(os.path.join(context.work_dir, "out.txt"), "w") as f:
                f.write(f"{name} from {sorted(context.records)}\n")
            for path in outputs:
                os.makedirs(os.path.join(context.out_dir, path), exist_ok=True)
                with open(os.path.join(context.out_dir, path, "file.bin"), "wb") as f:
                    f.write(name.encode() * 10)
            if body:
                body(context)
            return {"name": name, "upstream": sorted(context.records)}

        return Stage(name, f"the {name} stage", run, settings or {}, tuple(upstream),
                     tuple(outputs))

    def chain(self, settings=None, body=None):
        settings = settings or {}
        return [
            self.stage("a", settings=settings.get("a")),
            self.stage("b", upstream=("a",), settings=settings.get("b"), outputs=("shared",),
                       body=body),
            self.stage("c", upstream=("b",)),
        ]


def run(out, stages, force=False):
    stream = io.StringIO()
    records = run_stages(str(out), stages, force=force, stream=stream)
    return records, stream.getvalue()


def test_a_second_run_skips_every_finished_stage(tmp_path):
    recorder = Recorder()
    records, first = run(tmp_path, recorder.chain())
    assert recorder.runs == ["a", "b", "c"]
    assert "[1/3] a: the a stage" in first and "[3/3] c: the c stage" in first
    assert records["c"]["result"] == {"name": "c", "upstream": ["b"]}

    again, second = run(tmp_path, recorder.chain())
    assert recorder.runs == ["a", "b", "c"]
    assert second.count("skipped") == 3
    assert {name: r["run_id"] for name, r in again.items()} == \
        {name: r["run_id"] for name, r in records.items()}


def test_the_record_holds_result_timing_and_every_output(tmp_path):
    recorder = Recorder()
    run(tmp_path, recorder.chain())
    record = json.loads((tmp_path / "stages" / "b" / RECORD_FILE).read_text())
    assert record["name"] == "b" and record["seconds"] >= 0
    assert record["result"] == {"name": "b", "upstream": ["a"]}
    assert set(record["manifest"]) == {"stages/b/out.txt", "shared/file.bin"}
    assert record["manifest"]["shared/file.bin"]["size"] == 10
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.parametrize("damage", ["same size, other bytes", "shorter", "deleted"])
def test_a_damaged_output_reruns_its_stage_and_the_ones_after(tmp_path, damage):
    recorder = Recorder()
    run(tmp_path, recorder.chain())
    path = tmp_path / "shared" / "file.bin"
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"x" * 10 if damage.startswith("same") else b"b")
    _, log = run(tmp_path, recorder.chain())
    assert recorder.runs == ["a", "b", "c", "b", "c"]
    assert "shared/file.bin" in log
    assert path.read_bytes() == b"b" * 10


def test_a_changed_setting_reruns_from_an_empty_work_dir(tmp_path):
    recorder = Recorder()
    run(tmp_path, recorder.chain({"b": {"epochs": 1}}))
    (tmp_path / "stages" / "b" / "checkpoint").write_text("of the old settings")
    _, log = run(tmp_path, recorder.chain({"b": {"epochs": 2}}))
    assert recorder.runs == ["a", "b", "c", "b", "c"]
    assert "inputs changed" in log
    assert not (tmp_path / "stages" / "b" / "checkpoint").exists()


def test_an_upstream_rerun_reruns_downstream_even_with_equal_outputs(tmp_path):
    recorder = Recorder()
    run(tmp_path, recorder.chain())
    (tmp_path / "stages" / "a" / RECORD_FILE).unlink()  # a reruns, writing the same bytes
    run(tmp_path, recorder.chain())
    assert recorder.runs == ["a", "b", "c", "a", "b", "c"]


def test_force_reruns_everything_from_empty_work_dirs(tmp_path):
    recorder = Recorder()
    run(tmp_path, recorder.chain())
    stray = tmp_path / "stages" / "a" / "stray.txt"
    stray.write_text("left over")
    run(tmp_path, recorder.chain(), force=True)
    assert recorder.runs == ["a", "b", "c"] * 2
    assert not stray.exists()


def test_a_stage_that_dies_leaves_no_record_and_resumes_in_its_work_dir(tmp_path):
    recorder = Recorder()

    def dies_after_a_checkpoint(context):
        checkpoint = os.path.join(context.work_dir, "checkpoint")
        if not os.path.exists(checkpoint):
            with open(checkpoint, "w") as f:
                f.write("epoch 1")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, recorder.chain(body=dies_after_a_checkpoint))
    assert not (tmp_path / "stages" / "b" / RECORD_FILE).exists()
    assert (tmp_path / "stages" / "b" / INPUTS_FILE).exists()

    _, log = run(tmp_path, recorder.chain(body=dies_after_a_checkpoint))
    assert recorder.runs == ["a", "b", "b", "c"]
    assert "resuming" in log
    assert (tmp_path / "stages" / "b" / "checkpoint").read_text() == "epoch 1"
    assert "stages/b/checkpoint" in json.loads(
        (tmp_path / "stages" / "b" / RECORD_FILE).read_text())["manifest"]


SIGKILLED_RUN = """
import os, sys, time
from training.stages import Stage, run_stages

def slow(context):
    open(os.path.join(context.work_dir, "started"), "w").close()
    print("working", flush=True)
    time.sleep(60)
    return {}

def quick(context):
    open(os.path.join(context.work_dir, "done"), "w").close()
    return {"quick": True}

body = slow if sys.argv[2] == "slow" else quick
run_stages(sys.argv[1], [Stage("first", "", quick), Stage("second", "", body,
                                                          upstream=("first",))])
"""


def test_a_sigkilled_stage_runs_again_and_its_upstream_is_skipped(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SIGKILLED_RUN))
    out = tmp_path / "out"
    command = [sys.executable, str(script), str(out)]
    env = {**os.environ, "PYTHONPATH": ROOT}
    job = subprocess.Popen(command + ["slow"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = []  # the slow stage ends in 60 s: readline cannot block longer
        while "working" not in lines[-1:] and job.poll() is None:
            lines.append(job.stdout.readline().strip())
        assert "working" in lines
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=30)
    assert not (out / "stages" / "second" / RECORD_FILE).exists()

    rerun = subprocess.run(command + ["quick"], capture_output=True, text=True, env=env,
                           timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert "skipped" in rerun.stdout.split("[2/2]")[0]
    assert "resuming" in rerun.stdout.split("[2/2]")[1]
    assert (out / "stages" / "second" / "started").exists()  # the work dir was kept
    assert json.loads((out / "stages" / "second" / RECORD_FILE).read_text())["result"] == {
        "quick": True}


def test_outputs_are_removed_before_their_stage_runs(tmp_path):
    recorder = Recorder()
    run(tmp_path, recorder.chain())
    stale = tmp_path / "shared" / "stale.bin"
    stale.write_bytes(b"from an older run")
    (tmp_path / "stages" / "b" / RECORD_FILE).unlink()
    run(tmp_path, recorder.chain())
    assert not stale.exists()


def test_a_stage_must_come_after_its_upstream_stages(tmp_path):
    recorder = Recorder()
    with pytest.raises(ValueError, match="depends on"):
        run(tmp_path, [recorder.stage("b", upstream=("a",)), recorder.stage("a")])
    with pytest.raises(ValueError, match="unique"):
        run(tmp_path, [recorder.stage("a"), recorder.stage("a")])


def test_manifest_leaves_out_the_runner_files(tmp_path):
    work = tmp_path / "stages" / "x"
    work.mkdir(parents=True)
    for name in (RECORD_FILE, INPUTS_FILE, "model.keras.partial", "model.keras"):
        (work / name).write_text(name)
    nested = work / "logs"
    nested.mkdir()
    (nested / RECORD_FILE).write_text("a stage's own file of that name")
    assert sorted(manifest_of(str(tmp_path), ["stages/x"])) == [
        "stages/x/logs/stage.json", "stages/x/model.keras"]
    assert stage_dir(str(tmp_path), "x") == str(work)


def test_progress_bar_prints_a_line_per_step_off_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(2, stream=stream)
    bar.step("first")
    bar.step("second")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["0/2", "1/2", "2/2"]
    assert lines[0].endswith("first") and lines[-1].endswith("done")
