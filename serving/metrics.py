"""Request counts and latency histograms in Prometheus' text exposition format.

The series are TF Serving's (servables/tensorflow/util.cc), rendered as its
PrometheusExporter renders them (util/prometheus_exporter.cc: every character
of the name outside [a-zA-Z0-9_] becomes ':'), so dashboards and alerts written
for `tensorflow_model_server` read this server too:

- `:tensorflow:serving:request_count{model_name, status}`: a counter of every
  request, `status` the canonical code's name ("OK", "NOT_FOUND", ...);
- `:tensorflow:serving:request_latency{model_name, API, entrypoint}`: a
  histogram of the wall time of successful requests in microseconds, TF
  Serving's buckets (10 us x 1.8^i, 33 of them, then +Inf).

Both also carry `model_version` and `signature_name`, and the counter also
`API` and `entrypoint`. `API` is TF Serving's gRPC method name ("Predict",
"Classify", "Regress", "GetModelMetadata", "GetModelStatus") for both
entrypoints, "GRPC" or "REST" (TF Serving's REST handler writes "predict",
"classify", "regress" there), or "" when the caller does not say.
"""

from __future__ import annotations

import bisect
import collections
import math
import re
import threading

import grpc

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUEST_COUNT = "/tensorflow/serving/request_count"
REQUEST_LATENCY = "/tensorflow/serving/request_latency"
_HELP = {
    REQUEST_COUNT: "The total number of requests.",
    REQUEST_LATENCY: "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
}

API_NAMES = {
    "predict": "Predict",
    "classify": "Classify",
    "regress": "Regress",
    "get_model_metadata": "GetModelMetadata",
    "get_model_status": "GetModelStatus",
}
ENTRYPOINTS = ("GRPC", "REST")
# The entrypoint label when the caller does not know it (a core serving both).
UNKNOWN_ENTRYPOINT = ""


def _exponential_buckets(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """TensorFlow's `Buckets::Exponential`, bound by bound as it multiplies them."""
    bounds = []
    bound = scale
    for _ in range(count):
        bounds.append(bound)
        bound *= growth
    return tuple(bounds)


# util.cc: request_latency uses Buckets::Exponential(10, 1.8, 33) (~20 minutes).
LATENCY_BUCKETS_MICROS = _exponential_buckets(10.0, 1.8, 33)

# Request fields (model and signature names) become label values, so a client
# sending random names would grow the series without end; past this many
# (model, version, signature) triples, new ones are counted under OVERFLOW_LABEL.
MAX_SERIES = 1_000
OVERFLOW_LABEL = "__other__"

_COUNT_LABELS = ("model_name", "status", "model_version", "signature_name", "API", "entrypoint")
_LATENCY_LABELS = ("model_name", "API", "entrypoint", "model_version", "signature_name")


def prometheus_name(name: str) -> str:
    """A TF metric name as TF Serving's exporter writes it (`/a/b` -> `:a:b`)."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", name)
    return f"_{name}" if name[:1].isdigit() else name


def escape_label_value(value: str) -> str:
    """A label value escaped per the text exposition format: \\, " and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_bound(bound: float) -> str:
    """A bucket bound as TF Serving writes it (absl::StrCat of a double: 6 significant digits)."""
    return f"{bound:.6g}"


def _labels(names, values, extra: str = "") -> str:
    pairs = [f'{name}="{escape_label_value(value)}"' for name, value in zip(names, values)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}"


class _Histogram:
    __slots__ = ("buckets", "total")

    def __init__(self):
        self.buckets = [0] * (len(LATENCY_BUCKETS_MICROS) + 1)
        self.total = 0.0

    def add(self, micros: float):
        # Prometheus buckets count values <= their bound ("le").
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_MICROS, micros)] += 1
        self.total += micros


class Metrics:
    """Thread-safe request metrics for one server, rendered for Prometheus."""

    content_type = CONTENT_TYPE

    def __init__(self, *, max_series: int = MAX_SERIES):
        if max_series < 1:
            raise ValueError(f"max_series must be positive; was {max_series}")
        self._max_series = max_series
        self._lock = threading.Lock()
        self._series: set[tuple[str, str, str]] = set()
        self._counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._latencies: dict[tuple[str, ...], _Histogram] = {}

    def observe(
        self,
        *,
        model: str,
        version: int | None,
        signature: str,
        api: str,
        code: grpc.StatusCode,
        seconds: float,
        entrypoint: str | None = None,
    ) -> None:
        """Records one request: counted always, its latency when `code` is OK (as TF Serving).

        `entrypoint` is "GRPC" or "REST"; None leaves the label empty.
        """
        if api not in API_NAMES:
            raise ValueError(f"api must be one of {sorted(API_NAMES)}; got {api!r}")
        if entrypoint is None:
            entrypoint = UNKNOWN_ENTRYPOINT
        elif entrypoint not in ENTRYPOINTS:
            raise ValueError(
                f"entrypoint must be one of {ENTRYPOINTS} or None; got {entrypoint!r}"
            )
        if not isinstance(code, grpc.StatusCode):
            raise ValueError(f"code must be a grpc.StatusCode; got {code!r}")
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds must be finite and >= 0; got {seconds!r}")
        series = (model, "" if version is None else str(version), signature)
        api_name = API_NAMES[api]
        with self._lock:
            if series not in self._series:
                if len(self._series) < self._max_series:
                    self._series.add(series)
                else:
                    series = (OVERFLOW_LABEL,) * 3
            model_name, model_version, signature_name = series
            self._counts[
                (model_name, code.name, model_version, signature_name, api_name, entrypoint)
            ] += 1
            if code == grpc.StatusCode.OK:
                key = (model_name, api_name, entrypoint, model_version, signature_name)
                self._latencies.setdefault(key, _Histogram()).add(seconds * 1e6)

    def render(self) -> str:
        """The metrics in Prometheus' text exposition format (version 0.0.4)."""
        with self._lock:
            counts = sorted(self._counts.items())
            latencies = sorted(
                (key, list(histogram.buckets), histogram.total)
                for key, histogram in self._latencies.items()
            )
        lines = []
        if counts:
            name = prometheus_name(REQUEST_COUNT)
            lines += [f"# HELP {name} {_HELP[REQUEST_COUNT]}", f"# TYPE {name} counter"]
            lines += [f"{name}{_labels(_COUNT_LABELS, key)} {count}" for key, count in counts]
        if latencies:
            name = prometheus_name(REQUEST_LATENCY)
            lines += [f"# HELP {name} {_HELP[REQUEST_LATENCY]}", f"# TYPE {name} histogram"]
            bounds = [format_bound(bound) for bound in LATENCY_BUCKETS_MICROS] + ["+Inf"]
            for key, buckets, total in latencies:
                cumulative = 0
                for bound, count in zip(bounds, buckets):
                    cumulative += count
                    le = f'le="{bound}"'
                    lines.append(f"{name}_bucket{_labels(_LATENCY_LABELS, key, le)} {cumulative}")
                labels = _labels(_LATENCY_LABELS, key)
                lines += [f"{name}_sum{labels} {total!r}", f"{name}_count{labels} {cumulative}"]
        return "".join(f"{line}\n" for line in lines)
