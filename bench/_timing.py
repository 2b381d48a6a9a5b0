"""Timing helpers shared by the scripts in bench/.

`measure(step, ...)` calls `step` (which must block until its result exists)
a few times to warm up, then times repeated calls until a wall-clock budget is
spent and a minimum repeat count is reached. `Timing` holds the per-call times
and summarises them by the median and the interquartile range. `format_table`
lays results out as an aligned text table.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import statistics
import time
from collections.abc import Callable


def usable_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="utf-8") as f:
            quota, period = f.read().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores or 1)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of each timed call, plus the first (tracing/compiling) call."""

    times: tuple[float, ...]
    first_call_seconds: float

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def quartiles(self) -> tuple[float, float]:
        if len(self.times) < 2:
            return self.times[0], self.times[0]
        q1, _, q3 = statistics.quantiles(self.times, n=4, method="inclusive")
        return q1, q3

    @property
    def spread(self) -> float:
        """Interquartile range as a fraction of the median."""
        q1, q3 = self.quartiles
        return (q3 - q1) / self.median

    def to_dict(self) -> dict:
        q1, q3 = self.quartiles
        return {
            "repeats": len(self.times),
            "median_s": self.median,
            "q1_s": q1,
            "q3_s": q3,
            "min_s": min(self.times),
            "max_s": max(self.times),
            "first_call_s": self.first_call_seconds,
            "times_s": list(self.times),
        }


def measure(
    step: Callable[[], object],
    *,
    budget_seconds: float,
    min_repeats: int = 5,
    warmup: int = 2,
    max_repeats: int = 100_000,
) -> Timing:
    """Times `step()`: `warmup` untimed calls, then repeats until both the budget
    is spent and `min_repeats` calls are timed (at most `max_repeats`).

    The Python garbage collector is paused while timing, as `timeit` does.
    """
    start = time.perf_counter()
    step()
    first_call = time.perf_counter() - start
    for _ in range(warmup - 1):
        step()

    times = []
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter() + budget_seconds
        while len(times) < max_repeats and (
            len(times) < min_repeats or time.perf_counter() < deadline
        ):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(times=tuple(times), first_call_seconds=first_call)


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    numeric = [all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(cells):
        return "  ".join(
            str(cell).rjust(width) if right else str(cell).ljust(width)
            for cell, width, right in zip(cells, widths, numeric)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _is_number(text: str) -> bool:
    try:
        float(str(text).rstrip("%x"))
    except ValueError:
        return False
    return True
