"""The config fuzz target (tests/convert/fuzz_configs.py), briefly, in a capped child."""

import pytest

from tests.isolation import run_fuzz

# Enough to reach every entry point and mutation kind in a few seconds after the
# child's imports; bench/ runs the same target much longer.
EXAMPLES = 240


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Keras runs only in the child."""
    yield


def test_config_fuzz_target():
    report = run_fuzz("tests.convert.fuzz_configs", "configs", max_examples=EXAMPLES,
                      memory_mb=1024, timeout=120)
    assert report.failure is None, report.failure
    assert report.cases == EXAMPLES, report
    # Each entry point both accepted and refused some configs.
    for entry_point in ("hf_config", "from_huggingface", "config_json"):
        assert any(outcome.startswith(entry_point) for outcome in report.outcomes), report
    assert report.outcomes.get("CheckpointFormatError", 0) > EXAMPLES // 4, report
