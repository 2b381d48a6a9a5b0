"""serving.metrics: TF Serving's request metrics in Prometheus' text format, parsed back."""

import math
import re
import threading

import grpc
import pytest

from serving import metrics
from serving.metrics import Metrics

COUNT = ":tensorflow:serving:request_count"
LATENCY = ":tensorflow:serving:request_latency"

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_exposition(text):
    """Prometheus text format 0.0.4 -> ({name: type}, [(name, labels, value)]), strictly."""
    assert text.endswith("\n")
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types
            types[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = _SAMPLE.match(line)
        assert match, line
        labels, rest = {}, match["labels"] or ""
        while rest:
            label = _LABEL.match(rest)
            assert label, rest
            value = re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group()], label[2])
            assert label[1] not in labels
            labels[label[1]] = value
            rest = rest[label.end() :]
        samples.append((match["name"], labels, float(match["value"])))
    return types, samples


def observe(registry, **overrides):
    request = dict(
        model="sentiment",
        version=2,
        signature="serving_default",
        api="predict",
        code=grpc.StatusCode.OK,
        seconds=0.0021,
        entrypoint="GRPC",
    )
    request.update(overrides)
    registry.observe(**request)


def samples_named(samples, name):
    return [(labels, value) for sample_name, labels, value in samples if sample_name == name]


def test_counts_per_model_version_signature_status_and_api():
    registry = Metrics()
    observe(registry)
    observe(registry)
    observe(registry, code=grpc.StatusCode.INVALID_ARGUMENT)
    observe(registry, version=None, signature="", api="get_model_status", entrypoint="REST")
    observe(registry, model="embedder", version=1, api="classify")
    observe(registry, model="embedder", version=1, api="regress", entrypoint=None)
    types, samples = parse_exposition(registry.render())
    assert types[COUNT] == "counter"
    counts = {
        tuple(sorted(labels.items())): value for labels, value in samples_named(samples, COUNT)
    }

    def key(
        model="sentiment",
        status="OK",
        version="2",
        signature="serving_default",
        api="Predict",
        entry="GRPC",
    ):
        labels = dict(
            model_name=model,
            status=status,
            model_version=version,
            signature_name=signature,
            API=api,
            entrypoint=entry,
        )
        return tuple(sorted(labels.items()))

    assert counts == {
        key(): 2,
        key(status="INVALID_ARGUMENT"): 1,
        key(version="", signature="", api="GetModelStatus", entry="REST"): 1,
        key(model="embedder", version="1", api="Classify"): 1,
        key(model="embedder", version="1", api="Regress", entry=""): 1,
    }


def test_latency_histogram_has_tf_servings_buckets_sum_and_count():
    registry = Metrics()
    observe(registry, seconds=0.0021)
    observe(registry, seconds=0.000005)
    observe(registry, seconds=1e4)  # past the last bound (~20 minutes)
    observe(
        registry, seconds=0.0001, code=grpc.StatusCode.NOT_FOUND
    )  # TF Serving times successes only
    types, samples = parse_exposition(registry.render())
    assert types[LATENCY] == "histogram"
    buckets = samples_named(samples, f"{LATENCY}_bucket")
    bounds = [labels["le"] for labels, _ in buckets]
    # util.cc: Buckets::Exponential(10, 1.8, 33), written as absl::StrCat writes doubles.
    assert bounds[:6] == ["10", "18", "32.4", "58.32", "104.976", "188.957"]
    assert len(bounds) == 34 and bounds[-1] == "+Inf"
    assert [float(bound) for bound in bounds[:-1]] == pytest.approx(
        [10 * 1.8**i for i in range(33)], rel=1e-5
    )
    counts = [value for _, value in buckets]
    assert counts == sorted(counts)
    assert counts[0] == 1  # 5 us
    assert counts[bounds.index("1983.59")] == 1 and counts[bounds.index("3570.47")] == 2  # 2100 us
    assert counts[-2] == 2 and counts[-1] == 3  # 1e10 us only under +Inf
    ((sum_labels, total),) = samples_named(samples, f"{LATENCY}_sum")
    ((count_labels, count),) = samples_named(samples, f"{LATENCY}_count")
    assert total == pytest.approx(2100 + 5 + 1e10)
    assert count == 3
    expected_labels = dict(
        model_name="sentiment",
        API="Predict",
        entrypoint="GRPC",
        model_version="2",
        signature_name="serving_default",
    )
    assert sum_labels == count_labels == expected_labels
    assert all(
        {k: v for k, v in labels.items() if k != "le"} == expected_labels for labels, _ in buckets
    )


def test_a_bound_value_falls_in_its_own_bucket():
    registry = Metrics()
    observe(registry, seconds=10e-6)
    _, samples = parse_exposition(registry.render())
    buckets = samples_named(samples, f"{LATENCY}_bucket")
    assert (buckets[0][0]["le"], buckets[0][1]) == ("10", 1)


def test_label_values_are_escaped_and_parse_back():
    registry = Metrics()
    awkward = 'a "quoted" \\ back,slash}\nnew line'
    observe(registry, model=awkward, signature="sig=1")
    text = registry.render()
    assert '\\"quoted\\" \\\\ back,slash}\\nnew line' in text
    _, samples = parse_exposition(text)
    assert {labels["model_name"] for _, labels, _ in samples} == {awkward}
    assert {labels["signature_name"] for _, labels, _ in samples} == {"sig=1"}


def test_an_empty_registry_renders_nothing_and_the_content_type_is_prometheus_text():
    assert Metrics().render() == ""
    assert Metrics.content_type.startswith("text/plain; version=0.0.4")
    assert metrics.prometheus_name("/tensorflow/serving/request_count") == COUNT
    assert metrics.prometheus_name("9/a-b") == "_9:a:b"


def test_observations_from_many_threads_are_all_counted():
    registry = Metrics()
    threads_count, per_thread = 8, 400
    barrier = threading.Barrier(threads_count)

    def send(index):
        barrier.wait(timeout=30)
        for _ in range(per_thread):
            observe(registry, version=index % 2, seconds=0.001)
            registry.render()

    threads = [threading.Thread(target=send, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    _, samples = parse_exposition(registry.render())
    assert sum(value for _, value in samples_named(samples, COUNT)) == threads_count * per_thread
    assert (
        sum(value for _, value in samples_named(samples, f"{LATENCY}_count"))
        == threads_count * per_thread
    )
    for labels, value in samples_named(samples, f"{LATENCY}_sum"):
        assert value == pytest.approx(1000.0 * threads_count * per_thread / 2)


def test_series_past_the_bound_are_counted_together():
    registry = Metrics(max_series=2)
    for name in ("a", "b", "random-1", "random-2"):
        observe(registry, model=name)
    observe(registry, model="a")
    _, samples = parse_exposition(registry.render())
    counts = {labels["model_name"]: value for labels, value in samples_named(samples, COUNT)}
    assert counts == {"a": 2, "b": 1, metrics.OVERFLOW_LABEL: 2}
    with pytest.raises(ValueError, match="max_series must be positive; was 0"):
        Metrics(max_series=0)


@pytest.mark.parametrize(
    "override, problem",
    [
        ({"api": "Predict"}, "api must be one of"),
        ({"entrypoint": "HTTP"}, "entrypoint must be one of"),
        ({"code": 0}, "code must be a grpc.StatusCode"),
        ({"seconds": -0.5}, "seconds must be finite and >= 0"),
        ({"seconds": math.nan}, "seconds must be finite and >= 0"),
    ],
)
def test_bad_observations_are_value_errors_and_record_nothing(override, problem):
    registry = Metrics()
    with pytest.raises(ValueError, match=problem):
        observe(registry, **override)
    assert registry.render() == ""
