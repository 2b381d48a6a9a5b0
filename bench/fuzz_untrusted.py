"""Long fuzz run of the untrusted-input readers and checks.

Runs every `FUZZ_TARGETS` entry of the fuzz modules under `tests/` (the ones
the suite runs briefly: the `.bin` and safetensors readers, config parsing,
the model id checks) with many more examples, each target in its own child
process under a memory cap and a timeout (`tests/isolation.run_fuzz`), and
prints, per target, the cases tried, how they ended (loaded, or which of the
package's errors) and any failure: a case that raised another error type,
crashed, hung or blew the memory cap.

    .venv/bin/python bench/fuzz_untrusted.py                      # 2,000 cases per target
    .venv/bin/python bench/fuzz_untrusted.py --examples 20000 --seed 7
    .venv/bin/python bench/fuzz_untrusted.py --targets bin_reader --json out.json
    .venv/bin/python bench/fuzz_untrusted.py --quick              # smoke run: 20 cases per target

Exit status 1 when any target failed.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# bench/ is sys.path[0] when this file is run as a script.
from _results import BenchReport, counts_chart  # noqa: E402
from tests.isolation import run_fuzz  # noqa: E402


def fuzz_modules():
    """Module names of every `tests/**/fuzz_*.py`."""
    paths = sorted(glob.glob(os.path.join(ROOT, "tests", "**", "fuzz_*.py"), recursive=True))
    return [os.path.relpath(p, ROOT)[: -len(".py")].replace(os.sep, ".") for p in paths]


def targets_of(module):
    # Importing the module only to list its targets; each runs in its own child.
    return sorted(importlib.import_module(module).FUZZ_TARGETS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, help="cases per target (2000; --quick: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-mb", type=int, default=1024,
                        help="address space each child may add after its imports")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per target")
    parser.add_argument("--targets", default="", help="comma-separated target names (all)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 20 cases per target")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.examples is None:
        args.examples = 20 if args.quick else 2000
    wanted = {t for t in args.targets.split(",") if t}

    rows, results, failed = [], [], False
    for module in fuzz_modules():
        for target in targets_of(module):
            if wanted and target not in wanted:
                continue
            start = time.monotonic()
            report = run_fuzz(module, target, max_examples=args.examples, seed=args.seed,
                              memory_mb=args.memory_mb, timeout=args.timeout)
            seconds = time.monotonic() - start
            failed |= report.failure is not None
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
            rows.append([f"{module.split('.')[-1]}:{target}", str(report.cases),
                         outcomes or "-", f"{seconds:.0f}",
                         "FAILED" if report.failure else "ok"])
            results.append(dict(module=module, target=target, cases=report.cases,
                                outcomes=report.outcomes, seconds=seconds,
                                failure=report.failure))
            if report.failure:
                print(f"{module}:{target} failed:\n{report.failure}\n", file=sys.stderr)
    out = BenchReport("fuzz_untrusted", quick=args.quick, description=__doc__.split("\n\n")[0])
    out.note(f"{args.examples} cases per target, seed {args.seed}, memory cap "
             f"{args.memory_mb} MB per child")
    out.table(["target", "cases", "outcomes", "seconds", "result"], rows)
    out.chart("outcomes", counts_chart(
        "How each fuzz target's cases ended",
        {f"{r['module'].split('.')[-1]}:{r['target']}": r["outcomes"] for r in results},
        xlabel="cases"))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(examples=args.examples, seed=args.seed, results=results), f, indent=2)
    out.write()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
