"""A resumable run of stages: each finished stage is recorded, checked and skipped next time.

Stage `name` works in `OUT/stages/<name>/` (and may write `outputs` elsewhere
under `OUT`). When it finishes, `OUT/stages/<name>/stage.json` is written
last, atomically: its result, how long it took, a fingerprint of its inputs
and a manifest of its outputs (every file of its work directory and of its
`outputs`: size and SHA-256). A later run skips the stage only when that
record exists, its fingerprint is the same (the stage's settings and the
records of the stages it depends on) and every file of the manifest is
there with the same size and hash; otherwise the stage runs again.

A stage killed mid-way has no stage.json: it runs again in the same work
directory, which it may resume from (epoch checkpoints). The work directory
starts empty when the stage's inputs changed (new settings, or an upstream
stage that ran again) and with `force`. A stage that runs again gives its
record a new run id, which changes the fingerprint of every stage that
depends on it, so those run again too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from typing import Callable

STAGES_DIR = "stages"
RECORD_FILE = "stage.json"
# Written when a stage starts: the fingerprint its work directory belongs to.
INPUTS_FILE = "inputs.json"
PARTIAL_SUFFIX = ".partial"
_HASH_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a run.

    Attributes:
        name: names its work directory, `OUT/stages/<name>/`.
        title: what it does, shown in its header.
        run: called with a `StageContext`; returns the stage's result, a
            JSON-serialisable dict (kept in its record).
        settings: JSON-serialisable values the stage's work depends on.
        upstream: names of earlier stages whose results it uses.
        outputs: files or folders outside the work directory that the stage
            writes, relative to `OUT`; removed before it runs.
    """

    name: str
    title: str
    run: Callable[["StageContext"], dict]
    settings: dict = dataclasses.field(default_factory=dict)
    upstream: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class StageContext:
    """What a running stage gets: where to work, and the records of its upstream stages."""

    out_dir: str
    work_dir: str
    records: dict


def stage_dir(out_dir, name):
    return os.path.join(out_dir, STAGES_DIR, name)


# -- files ----------------------------------------------------------------------------


def write_json(path, value):
    """Writes `value` as JSON at `path` atomically (a `.partial` file, then a rename)."""

    def plain(item):  # numpy scalars and arrays
        if hasattr(item, "tolist"):
            return item.tolist()
        raise TypeError(f"{type(item).__name__} is not JSON serialisable")

    partial = path + PARTIAL_SUFFIX
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True, default=plain)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def read_json(path):
    """The JSON value in `path`, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _runner_file(relative):
    parts = relative.split("/")
    in_work_dir = len(parts) == 3 and parts[0] == STAGES_DIR
    return (in_work_dir and parts[2] in (RECORD_FILE, INPUTS_FILE)) or \
        relative.endswith(PARTIAL_SUFFIX)


def manifest_of(out_dir, paths):
    """{path relative to `out_dir`: {"size", "sha256"}} of every file under `paths`.

    The runner's own files (stage.json, inputs.json, *.partial) are left out.
    """
    files = []
    for path in paths:
        full = os.path.join(out_dir, path)
        if os.path.isfile(full):
            files.append(full)
        for folder, _, names in os.walk(full):
            files.extend(os.path.join(folder, name) for name in names)
    manifest = {}
    for full in sorted(files):
        relative = os.path.relpath(full, out_dir).replace(os.sep, "/")
        if not _runner_file(relative):
            manifest[relative] = {"size": os.path.getsize(full), "sha256": file_digest(full)}
    return manifest


def manifest_problem(out_dir, manifest):
    """What no longer matches `manifest` under `out_dir` (the first file), or None."""
    for relative, expected in sorted(manifest.items()):
        full = os.path.join(out_dir, relative)
        if not os.path.isfile(full):
            return f"{relative} is missing"
        if os.path.getsize(full) != expected["size"]:
            return f"{relative} changed size"
    for relative, expected in sorted(manifest.items()):
        if file_digest(os.path.join(out_dir, relative)) != expected["sha256"]:
            return f"{relative} changed"
    return None


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


# -- the run --------------------------------------------------------------------------


def fingerprint(stage, records):
    """SHA-256 of the stage's settings and of the records of its upstream stages."""
    missing = [name for name in stage.upstream if name not in records]
    if missing:
        raise ValueError(f"Stage {stage.name!r} depends on {missing}, which do not run "
                         "before it.")
    inputs = {
        "settings": stage.settings,
        "upstream": {name: {"run_id": records[name]["run_id"],
                            "manifest": records[name]["manifest"]}
                     for name in stage.upstream},
    }
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def finished_record(out_dir, stage, expected_fingerprint):
    """(the stage's record, None) when it can be skipped; else (None, why it runs)."""
    record = read_json(os.path.join(stage_dir(out_dir, stage.name), RECORD_FILE))
    if not isinstance(record, dict) or not isinstance(record.get("manifest"), dict):
        return None, None
    if record.get("fingerprint") != expected_fingerprint:
        return None, "its inputs changed"
    problem = manifest_problem(out_dir, record["manifest"])
    if problem:
        return None, problem
    return record, None


def run_stage(out_dir, stage, stage_fingerprint, records, force=False, stream=None):
    """Runs `stage` and writes its record; returns the record."""
    work_dir = stage_dir(out_dir, stage.name)
    started_for = (read_json(os.path.join(work_dir, INPUTS_FILE)) or {}).get("fingerprint")
    if force or started_for != stage_fingerprint:
        _remove(work_dir)  # nothing of other inputs to resume from
    else:
        if not os.path.exists(os.path.join(work_dir, RECORD_FILE)):
            print("  resuming: an earlier run of this stage did not finish.",
                  file=stream or sys.stdout, flush=True)
        _remove(os.path.join(work_dir, RECORD_FILE))
    for path in stage.outputs:
        _remove(os.path.join(out_dir, path))
    os.makedirs(work_dir, exist_ok=True)
    write_json(os.path.join(work_dir, INPUTS_FILE), {"fingerprint": stage_fingerprint})

    started = time.perf_counter()
    upstream = {name: records[name] for name in stage.upstream}
    result = stage.run(StageContext(out_dir, work_dir, upstream))
    seconds = time.perf_counter() - started
    record = {
        "name": stage.name,
        "fingerprint": stage_fingerprint,
        "run_id": uuid.uuid4().hex,
        "seconds": seconds,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "result": result,
        "manifest": manifest_of(out_dir, [os.path.relpath(work_dir, out_dir),
                                          *stage.outputs]),
    }
    write_json(os.path.join(work_dir, RECORD_FILE), record)
    return record


def run_stages(out_dir, stages, force=False, stream=None):
    """Runs `stages` in order under `out_dir`, skipping the finished ones; {name: record}.

    `force` runs every stage anew, from an empty work directory. Each stage
    gets a header, `[n/N] name: title`, and a line when it is skipped.
    """
    stream = stream or sys.stdout
    names = [stage.name for stage in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"Stage names must be unique; got {names}.")
    records = {}
    for number, stage in enumerate(stages, 1):
        print(f"\n[{number}/{len(stages)}] {stage.name}: {stage.title}", file=stream, flush=True)
        stage_fingerprint = fingerprint(stage, records)
        record, reason = (None, None) if force else finished_record(out_dir, stage,
                                                                    stage_fingerprint)
        if record is not None:
            print(f"  finished earlier in {record['seconds']:.1f} s, outputs checked: skipped.",
                  file=stream, flush=True)
        else:
            if reason:
                print(f"  running again: {reason}.", file=stream, flush=True)
            record = run_stage(out_dir, stage, stage_fingerprint, records, force=force,
                               stream=stream)
        records[stage.name] = record
    return records


# -- progress -------------------------------------------------------------------------


class ProgressBar:
    """A bar over the steps of a stage that has no Keras progress bar of its own.

    On a terminal it redraws one line; otherwise it prints a line per step.
    """

    WIDTH = 30

    def __init__(self, total, stream=None):
        self.total = max(1, int(total))
        self.done = 0
        self.stream = stream or sys.stdout
        self.interactive = getattr(self.stream, "isatty", lambda: False)()
        self.started = time.perf_counter()

    def step(self, what):
        """Marks the start of the next step, `what`, and redraws the bar."""
        self._draw(what)
        self.done += 1

    def close(self):
        self.done = self.total
        self._draw("done")
        if self.interactive:
            print(file=self.stream, flush=True)

    def _draw(self, what):
        filled = self.WIDTH * self.done // self.total
        bar = "━" * filled + " " * (self.WIDTH - filled)
        seconds = time.perf_counter() - self.started
        line = f"  {self.done}/{self.total} {bar} {seconds:.0f}s {what}"
        if self.interactive:
            print(f"\r{line}\x1b[K", end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)
