"""Settings of the command-line jobs: a YAML config, overridden by options."""

from __future__ import annotations

import argparse
import sys

import yaml
from keras_bert_kit.validation import check_int


def parse_settings(prog, description, spec, check, argv=None):
    """The settings dict of a job: defaults, then `--config` YAML, then options.

    Args:
        prog, description: for `--help`.
        spec: {setting: (default, help)}; each is also an option
            (`batch_size` -> `--batch-size`).
        check: called with the settings; a `ValueError` from it becomes a
            usage error (exit status 2, its message on one line).
        argv: the arguments (default: `sys.argv[1:]`).

    `--quiet` (one line per logged epoch) is added as `settings["quiet"]`.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Settings (YAML keys; each is also an option, e.g. --batch-size 64):\n"
        + "\n".join(f"  {k}: {help_} (default: {default})" for k, (default, help_) in spec.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file of settings")
    for key, (default, help_) in spec.items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None,
                            help=f"{help_} (default: {default})")
    parser.add_argument("--quiet", action="store_true", help="one line per logged epoch")
    args = parser.parse_args(argv)
    settings = {key: default for key, (default, _) in spec.items()}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            parser.error(f"{args.config} must hold a mapping of settings.")
        unknown = sorted(set(loaded) - set(spec))
        if unknown:
            parser.error(f"{args.config}: unknown setting(s) {unknown}; known: {sorted(spec)}.")
        settings.update(loaded)
    for key in spec:
        value = getattr(args, key)
        if value is not None:
            settings[key] = parse_value(value)
    settings["quiet"] = args.quiet
    try:
        check(settings)
    except ValueError as e:
        parser.error(str(e))
    return settings


def parse_value(text):
    """A command-line value as YAML would read it ("64", "true", "null"), numbers like 1e-4 too."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e-4" as a string
        except ValueError:
            return value
    return value


def check_positive_ints(settings, keys):
    for key in keys:
        check_int(key, settings[key], minimum=1)


def run_job(run, settings, errors=(ValueError, FileNotFoundError)):
    """Runs `run(settings)`: exit status 0, or 2 with a one-line message for `errors`.

    Those are the user's to fix (settings, data, models), so they get what is
    wrong, not a traceback. `precision` sets the global dtype policy for the
    run only: it is restored afterwards.
    """
    import keras

    policy = keras.mixed_precision.dtype_policy()
    try:
        run(settings)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    return 0
