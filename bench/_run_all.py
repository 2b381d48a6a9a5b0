"""Runs benchmarks one after another, past failures, and indexes their results (`make bench`).

    python bench/_run_all.py [--quick] "NAME [ARGS...]" ...

Each NAME is bench/NAME.py, run from the repository root with its ARGS (and
`--quick` with --quick) in a child process whose output goes to the console and to
runs/bench/NAME.log (runs/bench/quick/ for --quick). The benchmarks write their own
results to bench/results/ (bench/results/quick/); this writes bench/results/README.md
(its quick/ twin): the machine, then each benchmark's status, minutes and links.
A benchmark failed when it exits non-zero or writes no results; the others still
run, and the exit status is 1 when any failed, naming them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import (  # noqa: E402
    BENCH_DIR,
    BenchStatus,
    results_dir,
    run_machine_info,
    write_index,
)

ROOT = BENCH_DIR.parent


def run_logged(command: list[str], log_path: str) -> int:
    """Runs `command` from the repository root, its output both shown and logged."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "wb") as log, subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as child:
        for chunk in iter(lambda: child.stdout.read1(1 << 16), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            log.write(chunk)
    return child.returncode


def run_benchmark(spec: str, quick: bool) -> BenchStatus:
    name, *arguments = shlex.split(spec)
    script = BENCH_DIR / f"{name}.py"
    log_path = os.path.join("runs", "bench", *(["quick"] if quick else []), f"{name}.log")
    command = [sys.executable, os.path.relpath(script, ROOT), *arguments,
               *(["--quick"] if quick else [])]
    print(f"\n=== {name}: {shlex.join(command)}", flush=True)
    results = results_dir(quick) / f"{name}.md"
    started = time.time()
    if script.is_file():
        exit_code = run_logged(command, str(ROOT / log_path))
    else:
        print(f"no such benchmark: {script}", file=sys.stderr, flush=True)
        exit_code = 2
    wrote = results.exists() and results.stat().st_mtime >= started
    status = BenchStatus(name, command, exit_code, time.time() - started, wrote, log_path)
    print(f"=== {name}: {status.status()} in {status.seconds / 60:.1f} minutes", flush=True)
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="each benchmark's smoke run; results in bench/results/quick/")
    parser.add_argument("benchmarks", nargs="+", metavar="NAME [ARGS]",
                        help="a benchmark (bench/NAME.py) and its arguments, quoted as one")
    args = parser.parse_args(argv)
    statuses = [run_benchmark(spec, args.quick) for spec in args.benchmarks]
    # Measured after the benchmarks, on the otherwise idle machine.
    index = write_index(statuses, machine=run_machine_info(args.quick), quick=args.quick)
    failed = [s for s in statuses if not s.ok]
    print(f"\nmake bench: {len(statuses) - len(failed)} of {len(statuses)} benchmarks ran; "
          f"index: {os.path.relpath(index, ROOT)}", flush=True)
    if failed:
        print("FAILED: " + ", ".join(f"{s.name} ({s.status()}, output in {s.log})"
                                     for s in failed), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
