"""Fuzz target: settings YAML (a `--config` file's text or an option's value).

Every text must read as a value or raise a ValueError whose message is one
short line; anything else (a parser exception, a hang, a blow-up) fails.
"""

from hypothesis import strategies as st

from tests.isolation import FuzzTarget
from training.settings import MAX_ERROR_CHARS, load_yaml, one_line

# Pieces of YAML, valid and not: anchors, aliases, merges, tags, nesting, numbers.
_PIECES = [
    "steps: ", "model: ", "\n", "  ", "- ", "[", "]", "{", "}", ", ", ": ", "&a ", "*a", "<<: ",
    "!!python/object:os.system ", "!!binary ", "!!set ", "!!timestamp ", "2001-13-45", "1:30",
    "0x1f", "9" * 120, "1e999", ".nan", "'", '"', "\\", "#", "---\n", "...\n", "?", "|\n", ">\n",
    "\t", "\x00", "\x1b", "\ufeff", "caf\u00e9", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "!x ",
    "null", "true", "lol",
]

SETTINGS_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(_PIECES), max_size=40).map("".join),
)


def read_settings_text(text):
    try:
        load_yaml(text, lambda line, column: f"fuzz.yaml:{line}:{column}")
    except ValueError as e:
        line = one_line(e)
        if len(str(e)) > MAX_ERROR_CHARS or "\n" in line:
            raise AssertionError(f"an error message of {len(str(e))} characters") from e
        return "refused"
    return "loaded"


FUZZ_TARGETS = {
    "settings_yaml": FuzzTarget(SETTINGS_TEXT, read_settings_text, allowed=(),
                                case_seconds=5),
}
