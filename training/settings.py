"""Settings of the command-line jobs: a YAML config, overridden by options; their errors.

A settings file is a small mapping, read as untrusted input: at most
`MAX_CONFIG_BYTES`, UTF-8, YAML without anchors and aliases (what lets a few
hundred bytes expand to gigabytes: "billion laughs"), nested at most
`MAX_NESTING` deep. Option values are read the same way. Every problem, and
every error a job reports, is one line on stderr, `error: ...`, at most
`MAX_ERROR_CHARS` long, with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

import yaml
from keras_bert_kit.validation import check_int

MAX_CONFIG_BYTES = 2**20
MAX_OPTION_CHARS = 2**16
MAX_NESTING = 32
# Longer integers are no setting: Python's int() of a 5,000-digit one raises,
# and YAML 1.1's base-60 integers ("1:2:3") grow without bound.
MAX_INTEGER_CHARS = 100
MAX_ERROR_CHARS = 1000
MAX_QUOTED_CHARS = 200


# -- error lines ------------------------------------------------------------------------


def clip(text, limit=MAX_QUOTED_CHARS):
    """`text`, cut to `limit` characters with a note of how many there were."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def quote(value, limit=MAX_QUOTED_CHARS):
    """`repr(value)` for a message, at most about `limit` characters."""
    try:
        text = repr(value)
    except ValueError:  # it holds an int past the digits Python converts to text
        text = f"<a {type(value).__name__} too large to print>"
    return clip(text, limit)


def one_line(message, limit=MAX_ERROR_CHARS):
    """`message` as one printable line: line breaks joined, control characters escaped, clipped.

    Lines after one ending in ":" (a heading) follow with a space, others
    with "; " (items of a list of problems).
    """
    text = str(message)
    head = text[: 2 * limit]  # whatever is past this is cut anyway
    line = ""
    for part in head.splitlines():
        part = part.strip()
        if part:
            line = part if not line else f"{line}{' ' if line.endswith(':') else '; '}{part}"
    line = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in line)
    if len(line) > limit or len(head) < len(text):
        line = f"{line[:limit]}... (cut; the message has {len(text):,} characters)"
    return line


def report_error(error):
    """Prints `error: <message>` to stderr, on one line (see `one_line`)."""
    print(f"error: {one_line(error)}", file=sys.stderr)


def program_name(module):
    """How the user started the job, for its usage line: `kbk-...` (a console script), or
    `python -m module`."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return invoked if invoked.startswith("kbk-") else f"python -m {module}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one `error: ...` line on stderr (exit status 2)."""

    def error(self, message):
        report_error(message)
        self.exit(2)


# -- reading YAML -------------------------------------------------------------------------


class SettingsLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors and aliases, and with bounded nesting and integers.

    Settings never need anchors; refusing them is what keeps the document
    as large as its text.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name) are not allowed in settings",
                event.start_mark)
        if self._depth >= MAX_NESTING:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_NESTING} levels deep", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        # A value a constructor cannot make raises a bare Python error (a date
        # of month 13: ValueError; "!!timestamp x": AttributeError; "!!bool x":
        # KeyError); it becomes a YAML error at the node's position.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, ArithmeticError, LookupError, TypeError, AttributeError) as e:
            what = quote(node.value) if isinstance(node, yaml.ScalarNode) else "this node"
            reason = f": {clip(str(e))}" if isinstance(e, ValueError) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {what} as {node.tag}{reason}", node.start_mark
            ) from None

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_INTEGER_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(node.value):,} characters (at most "
                f"{MAX_INTEGER_CHARS})", node.start_mark)
        return super().construct_yaml_int(node)


SettingsLoader.add_constructor("tag:yaml.org,2002:int", SettingsLoader.construct_yaml_int)


def _yaml_problem(error, text, where):
    """One line for a YAML error in `text`: `where(line, column)`, then what is wrong."""
    if isinstance(error, yaml.reader.ReaderError):  # a character YAML refuses
        line = text.count("\n", 0, error.position) + 1
        column = error.position - text.rfind("\n", 0, error.position)
        return f"{where(line, column)}: character #x{error.character:04x}: {clip(error.reason)}"
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return f"{where(None, None)}: {clip(str(error))}"
    problem = clip(error.problem or "invalid YAML")
    context_mark = getattr(error, "context_mark", None)
    if error.context and context_mark is not None:
        problem += (f" ({clip(error.context)} at line {context_mark.line + 1}, "
                    f"column {context_mark.column + 1})")
    return f"{where(mark.line + 1, mark.column + 1)}: {problem}"


def load_yaml(text, where):
    """The value of YAML `text` (see `SettingsLoader`), or a ValueError placed by `where`.

    `where(line, column)` names the source in the message; both are None
    when YAML gives no position.
    """
    loader = None
    try:
        loader = SettingsLoader(text)
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ValueError(_yaml_problem(e, text, where)) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_config(path):
    """The settings mapping of the YAML file at `path`; a ValueError names the file (and line)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ValueError(f"--config {path}: {e.strerror or e}.") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes; a settings file "
                         "is a small YAML mapping.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at "
                         f"offset {e.start}).") from None

    def where(line, column):
        return path if line is None else f"{path}:{line}:{column}"

    loaded = load_yaml(text, where)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a mapping of settings; it holds a "
                         f"{type(loaded).__name__}.")
    return loaded


def shipped_configs():
    """The names (without ".yaml") of the settings files shipped in `training/configs`."""
    folder = resources.files("training") / "configs"
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir()
                  if entry.name.endswith(".yaml"))


def config_path(name):
    """The file `--config name` means: the file `name`, else the shipped config so named.

    A shipped config is named without a directory, with or without ".yaml"
    (`--config bert_mini_news`), and found in the installed package, so it
    works from any directory. A ValueError lists the shipped names when
    `name` is neither.
    """
    if os.path.exists(name) or os.path.dirname(name):
        return name
    stem = name.removesuffix(".yaml")
    if stem in shipped_configs():
        return str(resources.files("training") / "configs" / f"{stem}.yaml")
    raise ValueError(f"--config {quote(name)}: no such file, nor a shipped config of that name "
                     f"(shipped: {', '.join(shipped_configs())}).")


def parse_settings(prog, description, spec, check, argv=None, flags=None):
    """The settings dict of a job: defaults, then `--config` YAML, then options.

    Args:
        prog, description: for `--help`.
        spec: {setting: (default, help)}; each is also an option
            (`batch_size` -> `--batch-size`).
        check: called with the settings; a `ValueError` from it becomes a
            usage error (exit status 2, its message on one line).
        argv: the arguments (default: `sys.argv[1:]`).
        flags: {name: help} of on/off options (`--name`), not settings of the
            config file: `settings[name]` is True when given.

    `--quiet` (one line per logged epoch) is added as `settings["quiet"]`.
    A problem with the config file or an option (see the module docstring)
    is a usage error too.
    """
    parser = ArgumentParser(
        prog=prog,
        description=description,
        epilog="Settings (YAML keys; each is also an option, e.g. --batch-size 64):\n"
        + "\n".join(f"  {k}: {help_} (default: {default})" for k, (default, help_) in spec.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file of settings, or the name of a shipped one: "
                        + ", ".join(shipped_configs()))
    for key, (default, help_) in spec.items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None,
                            help=f"{help_} (default: {default})")
    parser.add_argument("--quiet", action="store_true", help="one line per logged epoch")
    for name, help_ in (flags or {}).items():
        parser.add_argument(f"--{name}", action="store_true", help=help_)
    args = parser.parse_args(argv)
    settings = {key: default for key, (default, _) in spec.items()}
    try:
        if args.config:
            loaded = load_config(config_path(args.config))
            unknown = [key for key in loaded if key not in spec]
            if unknown:
                names = ", ".join(quote(key) for key in unknown[:10])
                more = f" and {len(unknown) - 10:,} more" if len(unknown) > 10 else ""
                raise ValueError(f"{args.config}: unknown setting(s) {names}{more}; known: "
                                 f"{sorted(spec)}.")
            settings.update(loaded)
        for key in spec:
            value = getattr(args, key)
            if value is not None:
                settings[key] = parse_value(value, f"--{key.replace('_', '-')}")
        settings["quiet"] = args.quiet
        settings.update({name: getattr(args, name) for name in flags or {}})
        check(settings)
    except ValueError as e:
        parser.error(str(e))
    return settings


def parse_value(text, option="the value"):
    """A command-line value as YAML would read it ("64", "true", "null"), numbers like 1e-4 too.

    Read like a settings file (see `SettingsLoader`); a ValueError names `option`.
    """
    if len(text) > MAX_OPTION_CHARS:
        raise ValueError(f"{option}: a value of {len(text):,} characters (at most "
                         f"{MAX_OPTION_CHARS:,}).")

    def where(line, column):
        return option if line is None else f"{option} (line {line}, column {column})"

    value = load_yaml(text, where)
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
        report_error(e)
        return 2
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    return 0
