"""Running untrusted-input cases in a child process with a memory cap and a timeout.

A crafted file that segfaults the reader, hangs it or makes it allocate
gigabytes must fail its test, not take the suite down with it. So such cases
run in a fresh Python process that first imports what it needs, then caps its
address space at what the imports left it plus `memory_mb`
(`resource.setrlimit(RLIMIT_AS)`), and is killed after `timeout` seconds.

`run_cases(setup, cases)` runs many cases in one child (importing TensorFlow
costs seconds, so one child per case would be too slow): `setup` is Python
source run once (imports), each case is an expression or statements run after
it. The child reports every case it finishes; a case it never reports (it
crashed, hung or was killed) gets an outcome saying so, and so do the cases
queued after it.

`run_fuzz(module, target, max_examples)` runs a `FuzzTarget` (a hypothesis
strategy, a function run on each drawn case, and the error types it may
raise) the same way, in a child under the same caps, and counts outcomes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r'''
import json, os, resource, sys, time, traceback

def _report(**fields):
    sys.__stdout__.write("@@CASE " + json.dumps(fields) + "\n")
    sys.__stdout__.flush()

def _vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")

job = json.loads(sys.stdin.read())
exec(compile(job["setup"], "<setup>", "exec"), globals())
if job["memory_mb"]:
    cap = _vm_bytes() + job["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
for name, code in job["cases"]:
    start = time.monotonic()
    try:
        value = eval(compile(code, name, "eval"), globals()) if job["eval"] else exec(
            compile(code, name, "exec"), globals())
    except BaseException as e:  # noqa: BLE001 - every outcome is reported
        _report(name=name, status="error", error_type=type(e).__name__,
                error_mro=[c.__name__ for c in type(e).__mro__],
                message=str(e)[:4000], seconds=time.monotonic() - start,
                traceback=traceback.format_exc()[-4000:])
    else:
        _report(name=name, status="ok", value=repr(value)[:4000] if value is not None else None,
                seconds=time.monotonic() - start)
'''


@dataclass
class Outcome:
    """What one case did: `status` is "ok", "error", "crashed" or "timeout"."""

    name: str
    status: str
    error_type: str | None = None
    error_mro: tuple = ()
    message: str = ""
    value: str | None = None
    seconds: float = 0.0
    traceback: str = ""

    def raised(self, error_type: str) -> bool:
        """Whether the case raised `error_type` (by class name) or a subclass of it."""
        return self.status == "error" and error_type in self.error_mro

    def __str__(self):
        detail = self.traceback or self.message or self.value or ""
        return f"{self.name}: {self.status} {self.error_type or ''} {detail}".strip()


def run_cases(setup: str, cases: dict[str, str], *, memory_mb: int = 1024, timeout: float = 120,
              statements: bool = False) -> dict[str, Outcome]:
    """{case name: Outcome} of running each case's code after `setup`, in one capped child.

    Args:
        setup: Python source run once, before the cap (imports, helpers).
        cases: {name: code}; code is an expression (its value is reported),
            or statements with `statements=True`.
        memory_mb: address space the cases may add to what setup left; 0: no cap.
        timeout: seconds for the whole child, setup included.
    """
    job = dict(setup=textwrap.dedent(setup), cases=list(cases.items()), memory_mb=memory_mb,
               eval=not statements)
    env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow")
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env, cwd=_ROOT, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(json.dumps(job), timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        timed_out = True
    outcomes = {}
    for line in stdout.splitlines():
        if line.startswith("@@CASE "):
            fields = json.loads(line[len("@@CASE "):])
            fields["error_mro"] = tuple(fields.get("error_mro", ()))
            outcomes[fields["name"]] = Outcome(**fields)
    if timed_out:
        how = f"timeout: killed after {timeout} s"
    elif process.returncode < 0:
        how = f"crashed: killed by signal {-process.returncode}"
    else:
        how = f"crashed: exit status {process.returncode}"
    for name in cases:
        if name not in outcomes:
            outcomes[name] = Outcome(
                name, "timeout" if timed_out else "crashed",
                message=f"{how} before reporting this case; stderr: {stderr[-3000:]}",
            )
    return outcomes


def run_case(setup: str, code: str, **kwargs) -> Outcome:
    """The Outcome of one case (see `run_cases`)."""
    return run_cases(setup, {"case": code}, **kwargs)["case"]


def assert_raises(outcome: Outcome, error_type: str, *fragments: str):
    """Fails unless the case raised `error_type` with every fragment in its message."""
    assert outcome.raised(error_type), f"expected {error_type}; got {outcome}"
    for fragment in fragments:
        assert fragment in outcome.message, f"{fragment!r} not in message: {outcome.message}"


@dataclass
class FuzzTarget:
    """A fuzz target: every drawn case must load cleanly or raise one of `allowed`.

    `run(case)` returns a short outcome name on success ("loaded"), or raises.
    Each case is also bounded in time (`case_seconds`, as a Python-level
    timer) besides the child's memory cap and timeout.
    """

    strategy: object
    run: Callable
    allowed: tuple = ()
    case_seconds: float = 10.0


@dataclass
class FuzzReport:
    """Cases tried, {outcome: count}, and the falsifying case's report if one failed."""

    cases: int
    outcomes: dict = field(default_factory=dict)
    failure: str | None = None
    seconds: float = 0.0


_FUZZ = """
import collections, importlib, json, signal, time
from hypothesis import HealthCheck, given, seed, settings

_target = getattr(importlib.import_module({module!r}), "FUZZ_TARGETS")[{target!r}]
_counts = collections.Counter()

def _alarm(signum, frame):
    raise TimeoutError(f"a fuzz case ran past {{_target.case_seconds}} s")

signal.signal(signal.SIGALRM, _alarm)

@seed({seed})
@settings(max_examples={max_examples}, database=None, deadline=None, derandomize=False,
          suppress_health_check=list(HealthCheck), print_blob=False)
@given(_target.strategy)
def _fuzz(case):
    signal.setitimer(signal.ITIMER_REAL, _target.case_seconds)
    try:
        outcome = _target.run(case)
    except _target.allowed as e:
        outcome = type(e).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    _counts[outcome or "loaded"] += 1
"""


def run_fuzz(module: str, target: str, *, max_examples: int = 100, seed: int = 0,
             memory_mb: int = 1024, timeout: float = 120) -> FuzzReport:
    """Fuzzes `module.FUZZ_TARGETS[target]` in a capped child (see `run_cases`)."""
    setup = _FUZZ.format(module=module, target=target, seed=seed, max_examples=max_examples)
    outcome = run_cases(
        setup, {"fuzz": "_fuzz() or dict(_counts)"}, memory_mb=memory_mb, timeout=timeout
    )["fuzz"]
    if outcome.status == "ok":
        import ast

        counts = ast.literal_eval(outcome.value)
        return FuzzReport(sum(counts.values()), counts, None, outcome.seconds)
    return FuzzReport(0, {}, str(outcome), outcome.seconds)
