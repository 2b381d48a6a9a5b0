"""Fuzzing the model server: random and malformed gRPC (and REST) requests against a child process.

The server
-----------
`python -m serving.server` as a child process (serving_load.py's
`ServerProcess`) on serving_load.py's export of the MiniLM-L6 Rotten Tomatoes
classifier (versions 1 and 2 under `--exports`, default
runs/serving_load/exports; signatures `serving_default` and `embed`, text in,
and `predict_ids`, ids in), through a `--model_config_file` that serves model
"sentiment" with the `specific` policy {1, 2} and the labels stable -> 1 and
canary -> 2. The first half of the requests goes to a server without
batching, the second half to one with `--enable_batching` (max_batch_size 32,
batch_timeout_micros 2000), so that the batch scheduler merges random
requests too. REST is fuzzed when serving/rest.py exists (`--rest_api_port`).

What is sent
------------
Requests are drawn by hypothesis (`@given` with
`settings(max_examples=N, deadline=None, database=None)`, generate phase only,
seeded: `--seed`), in batches of `--batch` (250): each batch is sent over 4
threads at once, then the server is checked: its process alive, and a valid
text request answered OK. gRPC requests go through a generic
`channel.unary_unary` with identity serializers, so that any bytes reach any
method:

* Predict with random `TensorProto`s: every `DataType` enum (reference types
  too) and invalid enum numbers; shapes small, with negative dims, huge
  (more than 2^26 elements), of rank above 32, or of unknown rank;
  tensor_content of the right length, one off, or random; typed value
  lists of random length (strings: random bytes, invalid UTF-8 included);
  random input names, signature names, model specs (name, version, version
  label, both), output filters; plus text-like (string [n] of random bytes)
  and ids-like (three int32 [b, L] tensors, L up to 600, ids up to 40,000)
  requests that reach the model;
* Classify and Regress with random `tf.Example` inputs, GetModelMetadata with
  random metadata fields, GetModelStatus with random model specs,
  MultiInference and HandleReloadConfigRequest;
* raw bytes: random garbage, valid requests truncated or with flipped bytes,
  and huge payloads (up to 80 MB, above the 64 MB request limit), to the
  service methods and to unknown method paths.

REST (when serving/rest.py exists, half of the requests): random JSON bodies
(row and columnar formats, random values, deep nesting, b64 objects with
garbage), truncated and non-JSON bodies, wrong content types, random URLs
and methods (any token), a Content-Length longer than the body, huge bodies;
and requests on the served model's own URLs with bodies in its signatures'
shapes (rows, row objects, columns, b64 strings, ids), some of them mangled
(a value replaced by random JSON, the body cut short).

Declared shapes that a server must run (TF Serving fills a tensor from its
last value, so a string tensor [2^20] from one value is one million texts)
are drawn only up to 256 elements; one explicit probe sends a 4,096-row
request built from one value and reports its status and time.

Verdict
-------
Every request must get a status within `--deadline` (30 s): a gRPC status
code or an HTTP status. FAIL if any request has no answer in time, if any
INTERNAL or UNKNOWN (gRPC) or 5xx (REST) comes back - an unhandled path: each
is listed with the request that caused it - or if the server process dies or
stops answering a valid request (then it is restarted and the fuzzing goes
on, so that every finding of the run is listed). grpcio answers a request it
cannot parse with INTERNAL "Exception deserializing request!" before any
server code runs (C++ gRPC, and so tensorflow_model_server, also answer
INTERNAL for an unparsable message): those are counted apart and listed, not
failed; so are the HTTP 501s that Python's http.server answers for a method
token that is no HTTP method (RFC 9110's answer; TF Serving's libevent
answers 400). Findings are also written to WORK_DIR/fuzz_findings.json (each with
its method path and its bytes in base64, to replay).

    .venv/bin/python bench/serving_fuzz.py            # full run, 10,000 requests (`make bench-serving-fuzz`)
    .venv/bin/python bench/serving_fuzz.py --quick    # smoke run: ~200 requests

Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import json
import os
import random
import re
import socket
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tensorflow.core.example import example_pb2, feature_pb2  # noqa: E402
from tensorflow.core.framework import tensor_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_management_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

# bench/ is sys.path[0] when this file is run as a script.
from _results import BenchReport, counts_chart  # noqa: E402
from _timing import usable_cores  # noqa: E402
from serving_load import (  # noqa: E402
    MODEL_NAME,
    ROOT,
    ServerProcess,
    batching_file,
    text_request,
)

PREDICTION = "/tensorflow.serving.PredictionService/"
MODEL_SERVICE = "/tensorflow.serving.ModelService/"
METHOD_PATHS = [PREDICTION + name for name in
                ("Predict", "Classify", "Regress", "GetModelMetadata", "MultiInference")] + [
    MODEL_SERVICE + name for name in ("GetModelStatus", "HandleReloadConfigRequest")]
SIGNATURES = ["", "serving_default", "predict_ids", "embed", "nope"]
INPUT_NAMES = ["text", "text_pair", "input_ids", "segment_ids", "padding_mask", "inputs", ""]
OUTPUT_NAMES = ["label", "label_id", "logits", "probabilities", "pooled_output",
                "mean_embedding", "scores", "classes"]
LABELS = {"stable": 1, "canary": 2}
ID_NAMES = ("input_ids", "segment_ids", "padding_mask")
DRAWN_ELEMENTS = 256   # most elements a drawn tensor may ask the server to run
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # the server's default --max_request_bytes
PROBE_ROWS = 4096
HUGE_SIZES = (1 << 20, 16 << 20, MAX_REQUEST_BYTES + 1, 80 << 20)
FUZZ_BATCHING = dict(max_batch_size=32, batch_timeout_micros=2000, num_batch_threads=1,
                     max_enqueued_batches=1000)
SENDING_THREADS = 4
DESERIALIZER_INTERNAL = "Exception deserializing request!"
EXPECTED_CODES = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "UNIMPLEMENTED",
                  "RESOURCE_EXHAUSTED", "OUT_OF_RANGE"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# === Strategies ===================================================================

int64s = st.integers(-(2 ** 63), 2 ** 63 - 1)
names = st.one_of(st.sampled_from([MODEL_NAME, "", "nope", "Sentiment"]), st.text(max_size=40))
dtypes = st.one_of(st.sampled_from(sorted(types_pb2.DataType.values())),
                   st.integers(-3, 400), st.integers(-(2 ** 31), 2 ** 31 - 1))


# gRPC paths are HTTP/2 header values: printable ASCII (others fail in the client).
ascii_path = st.characters(min_codepoint=33, max_codepoint=126)


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of the strategies, each with its weight (`st.one_of` drops repeated ones)."""
    slots = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(slots) - 1).flatmap(slots.__getitem__)


def product(dims) -> int:
    total = 1
    for size in dims:
        total *= size
    return total


small_shapes = st.lists(st.integers(0, 6), max_size=3).filter(
    lambda dims: product(dims) <= DRAWN_ELEMENTS)
negative_shapes = st.tuples(st.lists(int64s, max_size=3), st.integers(-(2 ** 63), -1),
                            st.lists(int64s, max_size=3)).map(lambda t: t[0] + [t[1]] + t[2])
huge_shapes = st.one_of(
    st.lists(st.integers(2 ** 26 + 1, 2 ** 63 - 1), min_size=1, max_size=3),
    st.lists(st.integers(2 ** 13 + 1, 2 ** 40), min_size=2, max_size=4),
)
deep_shapes = st.lists(st.integers(0, 2), min_size=33, max_size=70)
shapes = st.one_of(small_shapes, small_shapes, negative_shapes, huge_shapes, deep_shapes,
                   st.just(None))  # None: unknown rank


@st.composite
def tensor_protos(draw) -> tensor_pb2.TensorProto:
    """Any `TensorProto`: random dtype, shape and value fields, consistent or not."""
    proto = tensor_pb2.TensorProto(dtype=draw(dtypes))
    dims = draw(shapes)
    if dims is None:
        proto.tensor_shape.unknown_rank = True
        dims = []
    else:
        for size in dims:
            proto.tensor_shape.dim.add(size=size, name=draw(st.sampled_from(["", "batch"])))
    count = product(dims) if all(d >= 0 for d in dims) else 0
    near = st.one_of(st.integers(0, 8), st.sampled_from(
        [max(0, c) for c in (count - 1, count, count + 1)] if count <= DRAWN_ELEMENTS else [1]))
    fields = draw(st.lists(st.sampled_from([
        "tensor_content", "string_val", "float_val", "double_val", "int_val", "int64_val",
        "bool_val", "half_val", "uint32_val", "uint64_val", "scomplex_val", "dcomplex_val",
        "resource_handle_val", "variant_val"]), max_size=3, unique=True))
    for field in fields:
        if field == "tensor_content":
            itemsize = draw(st.sampled_from([1, 2, 4, 8, 16]))
            length = draw(st.one_of(near.map(lambda n: n * itemsize), st.integers(0, 64)))
            proto.tensor_content = draw(st.binary(min_size=min(length, 64),
                                                  max_size=min(length, 64)))
            if length > 64:  # the rest as zeros: hypothesis draws a few KB per example at most
                proto.tensor_content += bytes(length - 64)
        elif field == "string_val":
            proto.string_val.extend(draw(st.lists(st.binary(max_size=60), max_size=draw(near))))
        else:
            values = {
                "float_val": st.floats(width=32), "double_val": st.floats(),
                "int_val": st.integers(-(2 ** 31), 2 ** 31 - 1), "int64_val": int64s,
                "bool_val": st.booleans(), "half_val": st.integers(-(2 ** 31), 2 ** 31 - 1),
                "uint32_val": st.integers(0, 2 ** 32 - 1), "uint64_val": st.integers(0, 2 ** 64 - 1),
                "scomplex_val": st.floats(width=32), "dcomplex_val": st.floats(),
            }.get(field)
            if values is None:  # resource_handle_val, variant_val: empty messages
                getattr(proto, field).add()
            else:
                getattr(proto, field).extend(draw(st.lists(values, max_size=draw(near))))
    return proto


@st.composite
def model_specs(draw, spec: model_pb2.ModelSpec) -> None:
    spec.name = draw(names)
    choice = draw(st.sampled_from(["none", "none", "version", "label", "both"]))
    if choice in ("version", "both"):
        spec.version.value = draw(st.one_of(st.sampled_from([0, 1, 2, 3]), int64s))
    if choice in ("label", "both"):
        spec.version_label = draw(st.one_of(st.sampled_from([*LABELS, "", "nope"]),
                                            st.text(max_size=20)))
    spec.signature_name = draw(st.one_of(st.sampled_from(SIGNATURES), st.text(max_size=30)))


@st.composite
def text_tensors(draw) -> tensor_pb2.TensorProto:
    """A string [n] tensor of random bytes (valid UTF-8 or not): reaches the tokenizer."""
    texts = draw(st.lists(st.one_of(st.text(max_size=80).map(str.encode),
                                    st.binary(max_size=80)), max_size=16))
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=texts)
    proto.tensor_shape.dim.add(size=draw(st.sampled_from([len(texts), len(texts) + 1])))
    return proto


@st.composite
def ids_inputs(draw) -> dict[str, tensor_pb2.TensorProto]:
    """Three int32 [b, L] tensors (shapes equal or not): reach the encoder."""
    inputs = {}
    batch, length = draw(st.integers(0, 3)), draw(st.sampled_from([0, 1, 7, 128, 513, 600]))
    for name in ID_NAMES:
        if draw(st.integers(0, 9)) == 0:
            batch, length = draw(st.integers(0, 3)), draw(st.integers(0, 40))
        rng = random.Random(draw(st.integers(0, 2 ** 32)))
        high = draw(st.sampled_from([2, 30522, 40000]))
        low = draw(st.sampled_from([0, -5]))
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32)
        proto.tensor_shape.dim.add(size=batch)
        proto.tensor_shape.dim.add(size=length)
        values = [rng.randint(low, high) for _ in range(batch * length)]
        if draw(st.booleans()):
            proto.tensor_content = b"".join(v.to_bytes(4, "little", signed=True) for v in values)
        else:
            proto.int_val.extend(values)
        inputs[name] = proto
    return inputs


@st.composite
def predict_requests(draw) -> tuple[str, str, bytes]:
    request = predict_pb2.PredictRequest()
    draw(model_specs(request.model_spec))
    family = draw(st.sampled_from(["random tensors", "text", "ids"]))
    if family in ("text", "ids") and draw(st.integers(0, 4)):
        # Mostly a model spec that is served, so that the inputs reach the model.
        request.model_spec.Clear()
        request.model_spec.name = MODEL_NAME
        where = draw(st.sampled_from(["latest", "latest", "version", "label"]))
        if where == "version":
            request.model_spec.version.value = draw(st.sampled_from([1, 2]))
        elif where == "label":
            request.model_spec.version_label = draw(st.sampled_from(list(LABELS)))
    if family == "text":
        request.model_spec.signature_name = draw(st.sampled_from(
            ["", "serving_default", "embed", "predict_ids"]))
        request.inputs[draw(st.sampled_from(["text", "text", "text_pair"]))].CopyFrom(
            draw(text_tensors()))
    elif family == "ids":
        request.model_spec.signature_name = draw(st.sampled_from(["predict_ids", "predict_ids",
                                                                  "serving_default"]))
        for name, proto in draw(ids_inputs()).items():
            if draw(st.integers(0, 9)):
                request.inputs[name].CopyFrom(proto)
    else:
        for name in draw(st.lists(st.one_of(st.sampled_from(INPUT_NAMES), st.text(max_size=20)),
                                  max_size=3, unique=True)):
            request.inputs[name].CopyFrom(draw(tensor_protos()))
    request.output_filter.extend(draw(st.lists(
        st.one_of(st.sampled_from(OUTPUT_NAMES), st.text(max_size=15)), max_size=4)))
    return f"Predict: {family}", PREDICTION + "Predict", request.SerializeToString()


@st.composite
def examples(draw) -> example_pb2.Example:
    example = example_pb2.Example()
    for key in draw(st.lists(st.one_of(st.sampled_from(["text", "x", ""]), st.text(max_size=10)),
                             max_size=3)):
        feature = example.features.feature[key]
        kind = draw(st.sampled_from(["bytes", "float", "int64", "empty"]))
        if kind == "bytes":
            feature.bytes_list.value.extend(draw(st.lists(st.binary(max_size=40), max_size=4)))
        elif kind == "float":
            feature.float_list.value.extend(draw(st.lists(st.floats(width=32), max_size=4)))
        elif kind == "int64":
            feature.int64_list.value.extend(draw(st.lists(int64s, max_size=4)))
        else:
            feature.CopyFrom(feature_pb2.Feature())
    return example


@st.composite
def other_requests(draw) -> tuple[str, str, bytes]:
    method = draw(st.sampled_from(["Classify", "Regress", "GetModelMetadata", "GetModelStatus",
                                   "MultiInference", "HandleReloadConfigRequest"]))
    if method in ("Classify", "Regress"):
        request = (classification_pb2.ClassificationRequest() if method == "Classify"
                   else regression_pb2.RegressionRequest())
        draw(model_specs(request.model_spec))
        draw(inputs_of(request.input))
    elif method == "GetModelMetadata":
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        draw(model_specs(request.model_spec))
        request.metadata_field.extend(draw(st.lists(
            st.one_of(st.just("signature_def"), st.text(max_size=20)), max_size=3)))
    elif method == "GetModelStatus":
        request = get_model_status_pb2.GetModelStatusRequest()
        draw(model_specs(request.model_spec))
    elif method == "MultiInference":
        request = inference_pb2.MultiInferenceRequest()
        task = request.tasks.add()
        draw(model_specs(task.model_spec))
        task.method_name = draw(st.text(max_size=30))
        draw(inputs_of(request.input))
    else:
        request = model_management_pb2.ReloadConfigRequest()
        config = request.config.model_config_list.config.add()
        config.name = draw(names)
        config.base_path = draw(st.text(max_size=40))
    service = MODEL_SERVICE if method in ("GetModelStatus",
                                          "HandleReloadConfigRequest") else PREDICTION
    return method, service + method, request.SerializeToString()


@st.composite
def inputs_of(draw, model_input: input_pb2.Input) -> None:
    kind = draw(st.sampled_from(["list", "with context", "none"]))
    if kind == "list":
        model_input.example_list.examples.extend(draw(st.lists(examples(), max_size=4)))
    elif kind == "with context":
        model_input.example_list_with_context.context.CopyFrom(draw(examples()))
        model_input.example_list_with_context.examples.extend(
            draw(st.lists(examples(), max_size=3)))


@st.composite
def raw_requests(draw) -> tuple[str, str, bytes]:
    """Bytes that need not parse: garbage, mangled valid requests, huge payloads."""
    path = draw(st.one_of(st.sampled_from(METHOD_PATHS), st.sampled_from(METHOD_PATHS),
                          st.text(ascii_path, max_size=40).map(lambda t: "/" + t),
                          st.just(PREDICTION + "Nope")))
    kind = draw(st.sampled_from(["garbage", "truncated", "flipped"]))
    valid = text_request(["a gripping, funny film", "dull"]).SerializeToString()
    if kind == "garbage":
        payload = draw(st.binary(max_size=600))
    elif kind == "truncated":
        payload = valid[:draw(st.integers(0, len(valid) - 1))]
    elif kind == "flipped":
        payload = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
        payload = bytes(payload)
    return f"raw {kind}", path, payload


def huge_case(index: int):
    """The `index`-th huge payload (one per batch: a few GB of loopback traffic in all)."""
    size = HUGE_SIZES[index % len(HUGE_SIZES)]
    path = METHOD_PATHS[index % len(METHOD_PATHS)]
    return "raw huge", path, ("huge", size, index)  # the bytes are made at send time


grpc_requests = st.one_of(predict_requests(), predict_requests(), other_requests(),
                          raw_requests())


# --- REST ---

REST_METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain", "",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "application/octet-stream"]
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                         st.floats(), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20)
b64_objects = st.one_of(
    st.binary(max_size=40).map(lambda b: {"b64": base64.b64encode(b).decode()}),
    st.text(max_size=30).map(lambda t: {"b64": t}),
    json_values.map(lambda v: {"b64": v}),
    st.fixed_dictionaries({"b64": st.text(max_size=10), "extra": json_values}),
)
rest_items = st.one_of(st.text(max_size=60), b64_objects, json_values,
                       st.dictionaries(st.sampled_from(INPUT_NAMES), st.one_of(
                           st.text(max_size=40), b64_objects, json_values), max_size=3),
                       st.lists(st.integers(-5, 40000), max_size=20))


@st.composite
def rest_paths(draw) -> str:
    name = draw(st.one_of(st.sampled_from([MODEL_NAME, MODEL_NAME, "nope", ""]),
                          st.text(ascii_path, max_size=20)))
    where = draw(st.sampled_from(["", "", "/versions/1", "/versions/2", "/labels/stable",
                                  "/labels/canary", "/labels/nope", "/versions/99999999999999999999",
                                  "/versions/-1", "/versions/x"]))
    tail = draw(st.sampled_from([":predict", ":predict", ":classify", ":regress", "/metadata",
                                 "", ":Predict", ":nope", "/"]))
    path = draw(st.one_of(st.just(f"/v1/models/{name}{where}{tail}"),
                          st.text(ascii_path, max_size=60).map(lambda t: "/" + t),
                          st.sampled_from(["/v1/models", "/v1/models/", "/v1/", "/",
                                           "/monitoring/prometheus/metrics", "*"])))
    if draw(st.integers(0, 9)) == 0:
        path += "?" + draw(st.text(ascii_path, max_size=20))
    return path


@st.composite
def rest_bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["rows", "rows", "columns", "columns", "json", "truncated",
                                 "garbage", "nested", "empty"]))
    if kind in ("rows", "columns"):
        body = {"instances" if kind == "rows" else "inputs": draw(st.one_of(
            st.lists(rest_items, max_size=8), rest_items))}
        if draw(st.booleans()):
            body["signature_name"] = draw(st.one_of(st.sampled_from(SIGNATURES), json_values))
        if draw(st.integers(0, 4)) == 0:
            body.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=2)))
        text = json.dumps(body)
    elif kind == "json":
        text = json.dumps(draw(json_values))
    elif kind == "truncated":
        whole = json.dumps({"instances": draw(st.lists(st.text(max_size=30), max_size=4))})
        text = whole[:draw(st.integers(0, len(whole) - 1))]
    elif kind == "garbage":
        return draw(st.binary(max_size=300))
    elif kind == "nested":
        depth = draw(st.sampled_from([10, 100, 1000, 100_000]))
        text = '{"instances": ' + "[" * depth + '"x"' + "]" * draw(st.sampled_from([0, depth]))
    else:
        return b""
    return text.encode("utf-8", "surrogatepass")


@st.composite
def served_rest_requests(draw) -> tuple[str, str, tuple]:
    """Requests on the served model's own URLs with bodies of its signatures' shape, often
    mangled a little: they reach the JSON <-> tensor conversion and the model."""
    where = draw(st.sampled_from(["", "", "/versions/1", "/versions/2", "/labels/stable",
                                  "/labels/canary"]))
    base = f"/v1/models/{MODEL_NAME}{where}"
    if draw(st.integers(0, 4)) == 0:
        return "REST GET served", "REST", ("GET", base + draw(st.sampled_from(["", "/metadata"])),
                                            "", "right", b"")
    texts = st.lists(st.one_of(st.text(max_size=60), st.binary(max_size=40).map(
        lambda b: {"b64": base64.b64encode(b).decode()})), min_size=1, max_size=8)
    # Rows of one length, ids in the vocabulary but for the odd one outside it.
    length = draw(st.integers(1, 12))
    ids = st.lists(st.lists(weighted((9, st.integers(0, 30521)), (1, st.integers(-3, 40000))),
                            min_size=length, max_size=length), min_size=1, max_size=3)
    layout = draw(st.sampled_from(["rows", "row objects", "columns", "column list", "ids rows",
                                   "ids columns"]))
    if layout == "rows":
        body = {"instances": draw(texts)}
    elif layout == "row objects":
        body = {"instances": [{"text": t} for t in draw(texts)]}
    elif layout == "columns":
        body = {"inputs": {"text": draw(texts)}}
    elif layout == "column list":
        body = {"inputs": draw(texts)}
    else:
        rows = draw(ids)
        columns = {"input_ids": rows, "segment_ids": [[0] * length for _ in rows],
                   "padding_mask": [[1] * length for _ in rows]}
        body = {"signature_name": "predict_ids"}
        if layout == "ids rows":
            body["instances"] = [{name: columns[name][i] for name in ID_NAMES}
                                 for i in range(len(rows))]
        else:
            body["inputs"] = columns
    if draw(st.integers(0, 3)) == 0:
        body["signature_name"] = draw(st.one_of(st.sampled_from(SIGNATURES), json_values))
    if draw(st.integers(0, 3)) == 0:  # one value replaced by any JSON
        key = draw(st.sampled_from(sorted(body)))
        body[key] = draw(json_values)
    text = json.dumps(body)
    if draw(st.integers(0, 5)) == 0:
        text = text[:draw(st.integers(0, len(text) - 1))]
    content_type = draw(st.sampled_from(["application/json", "application/json", "text/plain",
                                         ""]))
    return f"REST POST served: {layout}", "REST", (
        "POST", base + ":predict", content_type, "right", text.encode("utf-8", "surrogatepass"))


@st.composite
def rest_requests(draw) -> tuple[str, str, tuple]:
    method = draw(weighted((3, st.sampled_from(["POST", "POST", "GET", *REST_METHODS])),
                           (1, st.text(st.characters(min_codepoint=65, max_codepoint=90),
                                       min_size=1, max_size=8))))
    path = draw(rest_paths())
    body = draw(rest_bodies()) if method not in ("GET", "HEAD") or draw(
        st.integers(0, 4)) == 0 else b""
    content_type = draw(st.one_of(st.sampled_from(CONTENT_TYPES), st.text(ascii_path, max_size=20)))
    # Content-Length: right, or more than is sent (the body is cut short, then the
    # client half-closes), or absent.
    length = draw(st.sampled_from(["right", "right", "right", "short", "absent"]))
    return f"REST {method if method in REST_METHODS else 'random method'}", "REST", (
        method, path, content_type, length, body)


def huge_rest_case(index: int):
    """A body over the request limit (one per batch), as JSON that would parse."""
    size = HUGE_SIZES[index % len(HUGE_SIZES)]
    return "REST huge body", "REST", ("POST", f"/v1/models/{MODEL_NAME}:predict",
                                      "application/json", "right", ("huge json", size))


def rest_payload(body) -> bytes:
    if isinstance(body, tuple):  # ("huge json", size): '{"instances": ["xxx..."]}'
        _, size = body
        return b'{"instances": ["' + b"x" * max(0, size - 19) + b'"]}'
    return body


def send_rest(port: int, case, deadline: float) -> dict:
    """One HTTP/1.1 request over a raw socket (any method, path or framing): its status."""
    family, _, (method, path, content_type, length, body) = case
    body = rest_payload(body)
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if content_type:
        head.append(f"Content-Type: {content_type}")
    sent = body
    if length == "right":
        head.append(f"Content-Length: {len(body)}")
    elif length == "short":
        head.append(f"Content-Length: {len(body) + 1 + len(body) // 2}")
    else:
        sent = b""
    started = time.perf_counter()
    ends = time.monotonic() + deadline
    code, message = "NO STATUS", ""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=deadline) as connection:
            try:
                connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + sent)
                if length == "short":
                    connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may answer (413, say) and close before the body is all sent
            reply = b""
            while b"\r\n\r\n" not in reply or len(reply) < reply_length(reply, method):
                connection.settimeout(max(0.001, ends - time.monotonic()))
                chunk = connection.recv(65536)
                if not chunk:
                    break
                reply += chunk
                if len(reply) > 1 << 20:
                    break
        if reply.startswith(b"HTTP/"):
            code = f"HTTP {int(reply.split(None, 2)[1])}"
            message = reply.partition(b"\r\n\r\n")[2][:500].decode("utf-8", "replace")
        else:
            message = f"closed after {len(reply)} bytes: {reply[:80]!r}"
    except socket.timeout:
        code = "DEADLINE_EXCEEDED"
    except OSError as error:
        message = f"{type(error).__name__}: {error}"
    return {"family": family, "code": code, "message": message,
            "seconds": time.perf_counter() - started}


def reply_length(reply: bytes, method: str) -> int:
    """Bytes of the whole reply once its head is in (Content-Length, else unbounded)."""
    head, _, _ = reply.partition(b"\r\n\r\n")
    if method == "HEAD":
        return len(head) + 4
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(head) + 4 + int(value)
    return 1 << 62


def drawn(strategy, count: int, seed: int) -> list:
    """`count` examples of `strategy`, as hypothesis generates them under `seed`."""
    found = []

    @hypothesis_seed(seed)
    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example):
        found.append(example)

    collect()
    return found


# === Sending ======================================================================


def payload_bytes(payload) -> bytes:
    if isinstance(payload, tuple):  # ("huge", size, seed): random-looking, cheap to make
        _, size, seed = payload
        block = random.Random(seed).randbytes(1 << 16)
        return (block * (size // len(block) + 1))[:size]
    return payload


def send_grpc(channel, case, deadline: float) -> dict:
    family, path, payload = case
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    started = time.perf_counter()
    try:
        call(payload_bytes(payload), timeout=deadline)
        code, message = "OK", ""
    except grpc.RpcError as error:
        code, message = error.code().name, error.details() or ""
    except Exception as error:  # noqa: BLE001 (the client refused to send it: counted apart)
        code, message = "CLIENT_ERROR", f"{type(error).__name__}: {error}"
    return {"family": family, "code": code, "message": message,
            "seconds": time.perf_counter() - started}


def healthy(address: str, deadline: float) -> str | None:
    """None if a valid text request is answered OK; else what went wrong."""
    with grpc.insecure_channel(address) as channel:
        result = send_grpc(channel, ("health", PREDICTION + "Predict",
                                     text_request(["a gripping, funny film"]).SerializeToString()),
                           deadline)
    return None if result["code"] == "OK" else f"{result['code']}: {result['message'][:200]}"


def finding_kind(case, result: dict) -> str | None:
    """Why a result is a finding (None: an expected status)."""
    if result["code"] == "HTTP 501" and case[2][0] not in REST_METHODS:
        return "http.server: method not implemented"
    if result["code"] == "CLIENT_ERROR":
        return "client-side error (not sent)"
    if result["code"] == "DEADLINE_EXCEEDED":
        return "no answer within the deadline"
    if result["code"] == "NO STATUS":
        return "no status (the connection closed without one)"
    if result["code"].startswith("HTTP "):
        return "unhandled: " + result["code"] if result["code"].startswith("HTTP 5") else None
    if result["code"] == "INTERNAL" and result["message"] == DESERIALIZER_INTERNAL:
        return "grpcio deserializer"
    if result["code"] in ("INTERNAL", "UNKNOWN") or result["code"] not in EXPECTED_CODES | {
            "UNAVAILABLE"}:
        return f"unhandled: {result['code']}"
    return None


def describe(case) -> dict:
    family, path, payload = case
    if path == "REST":
        method, url, content_type, length, body = payload
        body = (f"{body[1]} bytes of JSON" if isinstance(body, tuple)
                else body[:600].decode("utf-8", "backslashreplace"))
        return {"family": family, "path": f"{method} {url}", "text":
                f"Content-Type {content_type!r}, Content-Length {length}, body {body}"}
    if isinstance(payload, tuple):
        return {"family": family, "path": path, "payload": f"{payload[1]} generated bytes "
                f"(seed {payload[2]})"}
    text = ""
    parsers = {PREDICTION + "Predict": predict_pb2.PredictRequest}
    if path in parsers:
        try:
            text = str(parsers[path].FromString(payload))[:1500]
        except Exception:  # noqa: BLE001 (not a parsable request: the bytes say it)
            text = ""
    return {"family": family, "path": path, "bytes": len(payload),
            "base64": base64.b64encode(payload[:65536]).decode(), "text": text}


class Fuzzer:
    """Sends batches of cases to one server process, checks it after each, restarts it if needed."""

    def __init__(self, server_factory, deadline: float):
        self.server_factory = server_factory
        self.deadline = deadline
        self.server = server_factory().start()
        self.results = []
        self.findings = []
        self.server_failures = []

    def batch(self, cases: list, label: str) -> None:
        with grpc.insecure_channel(self.server.address, options=[
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1)]) as channel, \
                concurrent.futures.ThreadPoolExecutor(SENDING_THREADS) as pool:
            results = list(pool.map(lambda case: self.send(channel, case), cases))
        for case, result in zip(cases, results):
            result["server"] = label
            self.results.append(result)
            kind = finding_kind(case, result)
            if kind:
                self.findings.append({"kind": kind, "server": label, "code": result["code"],
                                      "message": result["message"][:500],
                                      "seconds": result["seconds"], **describe(case)})
        self.check(label)

    def send(self, channel, case) -> dict:
        if case[1] == "REST":
            return send_rest(self.server.rest_port, case, self.deadline)
        return send_grpc(channel, case, self.deadline)

    def check(self, label: str) -> None:
        problem = None if self.server.alive() else (
            f"the server process exited with {self.server.process.returncode}")
        if problem is None:
            problem = healthy(self.server.address, self.deadline)
        if problem is None:
            return
        log(f"  SERVER FAILURE ({label}): {problem}; restarting it")
        self.server_failures.append({"server": label, "after_requests": len(self.results),
                                     "problem": problem, "log_tail": self.server.log_tail()})
        self.server.stop(grace=5)
        self.server = self.server_factory().start()

    def close(self) -> int | None:
        return self.server.stop()


def amplification_probe(address: str, deadline: float) -> dict:
    """One string [PROBE_ROWS] tensor from a single value: TF's fill rule makes it 4,096 texts."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    proto = request.inputs["text"]
    proto.dtype = types_pb2.DT_STRING
    proto.tensor_shape.dim.add(size=PROBE_ROWS)
    proto.string_val.append(b"a gripping, funny film")
    with grpc.insecure_channel(address) as channel:
        result = send_grpc(channel, ("probe", PREDICTION + "Predict", request.SerializeToString()),
                           deadline)
    result["request_bytes"] = request.ByteSize()
    return result


# === Servers ======================================================================


def model_config_file(work_dir: str, base: str) -> str:
    path = os.path.join(work_dir, "fuzz_models.config")
    labels = "".join(f'    version_labels {{ key: "{label}" value: {version} }}\n'
                     for label, version in LABELS.items())
    with open(path, "w", encoding="utf-8") as f:
        f.write("model_config_list {\n  config {\n"
                f'    name: "{MODEL_NAME}"\n    base_path: "{base}"\n'
                '    model_platform: "tensorflow"\n'
                "    model_version_policy { specific { versions: 1 versions: 2 } }\n"
                f"{labels}  }}\n}}\n")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_factory(config_path: str, work_dir: str, batching: bool, rest: bool):
    flags = ["--model_config_file", config_path]
    if batching:
        flags += ["--enable_batching", "--batching_parameters_file",
                  batching_file(os.path.join(work_dir, "fuzz_batching.config"), FUZZ_BATCHING)]
    log_path = os.path.join(work_dir, f"fuzz_server_{'batched' if batching else 'unbatched'}.log")
    # The CLI's --rest_api_port 0 means no REST (as in TF Serving): a free port is picked here.
    return lambda: ServerProcess(
        flags + (["--rest_api_port", str(free_port())] if rest else []), log_path)


# === Main =========================================================================


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: ~200 requests")
    parser.add_argument("--requests", type=int, default=10_000,
                        help="fuzz requests in all (default 10,000)")
    parser.add_argument("--batch", type=int, default=250,
                        help="requests between two server checks (default 250)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=30.0,
                        help="seconds each request may take (default 30)")
    parser.add_argument("--exports", default=os.path.join("runs", "serving_load", "exports"),
                        help="a base directory with versions 1 and 2 (default serving_load.py's)")
    parser.add_argument("--work-dir", default=os.path.join("runs", "serving_fuzz"))
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    total, batch = (200, 50) if args.quick else (args.requests, args.batch)
    work_dir = os.path.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    exports = os.path.abspath(args.exports)
    if not all(os.path.isdir(os.path.join(exports, str(v))) for v in (1, 2)):
        raise SystemExit(f"{exports} lacks versions 1 and 2: run bench/serving_load.py first "
                         "(it exports them), or pass --exports")
    meta = {"quick": args.quick, "requests": total, "batch": batch, "seed": args.seed,
            "work_dir": os.path.relpath(work_dir),
            "deadline_s": args.deadline, "cores": usable_cores(),
            "load_average_start": os.getloadavg()[0],
            "rest": os.path.exists(os.path.join(ROOT, "serving", "rest.py"))}
    config = model_config_file(work_dir, exports)
    started = time.perf_counter()
    results, findings, failures, probes = [], [], [], {}
    for half, batching in enumerate((False, True)):
        label = "batched" if batching else "unbatched"
        log(f"{label} server: starting")
        fuzzer = Fuzzer(server_factory(config, work_dir, batching, meta["rest"]), args.deadline)
        # Half gRPC, half REST (random, and on the served model's URLs).
        strategy = weighted((2, grpc_requests), (1, rest_requests()),
                            (1, served_rest_requests())) \
            if meta["rest"] else grpc_requests
        try:
            share = total // 2 + (total % 2 if batching else 0)
            sent = 0
            while sent < share:
                count = min(batch, share - sent)
                index = sent // batch
                cases = drawn(strategy, count - 1, args.seed * 1000 + half * 500 + index)
                if not cases:
                    raise RuntimeError("hypothesis drew no requests")
                cases.append(huge_rest_case(index // 2) if meta["rest"] and index % 2
                             else huge_case(index))
                fuzzer.batch(cases, label)
                sent += len(cases)
                codes = collections.Counter(r["code"] for r in fuzzer.results)
                log(f"  {label}: {sent}/{share} sent, {len(fuzzer.findings)} findings, "
                    f"{dict(codes.most_common(4))}")
            probes[label] = amplification_probe(fuzzer.server.address, args.deadline)
            fuzzer.check(label)
        finally:
            exit_code = fuzzer.close()
        results += fuzzer.results
        findings += fuzzer.findings
        failures += fuzzer.server_failures
        meta[f"{label}_server_exit_code"] = exit_code
    meta["seconds"] = time.perf_counter() - started
    meta["load_average_end"] = os.getloadavg()[0]
    with open(os.path.join(work_dir, "fuzz_findings.json"), "w", encoding="utf-8") as f:
        json.dump({"findings": findings, "server_failures": failures}, f, indent=2)
    out = BenchReport("serving_fuzz", quick=args.quick, description=__doc__.splitlines()[0])
    summary = report(out, meta, results, findings, failures, probes)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        print(f"\nWrote {args.json}")
    out.write()
    return summary


def printable(text: str) -> str:
    """`text` on one line, control characters escaped (requests carry any bytes)."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text.replace("\n", " "))


def report(out: BenchReport, meta, results, findings, failures, probes) -> dict:
    quick = "  [QUICK: a smoke run]" if meta["quick"] else ""
    out.note(f"{meta['cores']} usable CPU(s); load average at start "
             f"{meta['load_average_start']:.2f}, at end {meta['load_average_end']:.2f}; "
             f"{len(results)} requests in {meta['seconds']:.0f} s (seed {meta['seed']}, "
             f"{SENDING_THREADS} sending threads, deadline {meta['deadline_s']:.0f} s){quick}")
    if not meta["rest"]:
        out.note("REST: not fuzzed (serving/rest.py is not in this checkout)")
    counts = collections.Counter((r["server"], r["family"], r["code"]) for r in results)
    families = sorted({(server, family) for server, family, _ in counts})
    codes = sorted({code for *_, code in counts}, key=lambda c: (c != "OK", c))
    rows = [[server, family, *(str(counts[(server, family, code)]) for code in codes),
             str(sum(counts[(server, family, code)] for code in codes))]
            for server, family in families]
    totals = collections.Counter(r["code"] for r in results)
    rows.append(["all", "all", *(str(totals[code]) for code in codes), str(len(results))])
    print()
    out.table(["server", "requests", *codes, "total"], rows)
    out.chart("statuses", counts_chart(
        "Statuses per request family (both servers)",
        {family: {code: sum(counts[(server, family, code)] for server in ("unbatched", "batched"))
                  for code in codes}
         for family in sorted({family for _, family in families})},
        xlabel="requests"))
    messages = collections.Counter((r["code"], r["message"][:110]) for r in results
                                   if r["code"] != "OK")
    print()
    out.table(["requests", "status", "message"], [
        [str(n), code, printable(message)] for (code, message), n in
        messages.most_common(15)], title="Most common statuses with their messages:")
    slowest = max(results, key=lambda r: r["seconds"])
    out.note(f"slowest answer: {slowest['seconds']:.2f} s ({slowest['family']}, "
             f"{slowest['code']})")

    out.note(f"\nOne {PROBE_ROWS}-row string tensor from a single value (work a tiny request "
             "asks for):\n" + "\n".join(
                 f"  {label} server: {probe['code']} in {probe['seconds']:.2f} s "
                 f"({probe['request_bytes']} request bytes) {probe['message'][:160]}"
                 for label, probe in probes.items()))

    by_kind = collections.Counter(f["kind"] for f in findings)
    deserializer = by_kind.pop("grpcio deserializer", 0)
    unknown_methods = by_kind.pop("http.server: method not implemented", 0)
    out.note(f"\nINTERNAL from grpcio's deserializer (unparsable bytes, before any server "
             f"code; C++ gRPC answers these INTERNAL too): {deserializer}\n"
             f"HTTP 501 from http.server for a method that is no HTTP method (before any server "
             f"code; RFC 9110's answer; TF Serving's libevent answers 400): {unknown_methods}")
    failing = [f for f in findings if f["kind"] not in (
        "grpcio deserializer", "http.server: method not implemented")]
    if failing:
        # The requests themselves (any bytes) stay on the console and in the JSON file.
        out.note(f"\nFINDINGS ({len(failing)}): statuses that mean an unhandled path, or no "
                 "answer; each listed with its request on the console and in "
                 f"{os.path.join(meta['work_dir'], 'fuzz_findings.json')}")
        seen = collections.Counter()
        for finding in failing:
            # One example per kind of finding: names, numbers and quoted text vary.
            key = (finding["kind"], finding["family"],
                   re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", finding["message"][:80]))
            seen[key] += 1
            if seen[key] > 1:
                continue
            print(f"- {finding['kind']} ({finding['server']} server, {finding['family']}, "
                  f"{printable(finding['path'])}, {finding['seconds']:.2f} s): "
                  f"{printable(finding['message'][:300])}")
            print("  request: " + printable((finding.get("text") or finding.get("payload")
                                             or finding.get("base64", ""))[:600]))
        repeats = {key: n for key, n in seen.items() if n > 1}
        for (kind, family, message), n in repeats.items():
            print(f"  ({n} requests in all: {kind}, {family}: {message!r})")
    for failure in failures:
        out.note(f"\nSERVER FAILURE ({failure['server']} server, after "
                 f"{failure['after_requests']} requests): {failure['problem']}")
        print(f"  log tail: {failure['log_tail'][-800:]}")

    hung = by_kind.get("no answer within the deadline", 0)
    no_status = by_kind.get("no status (the connection closed without one)", 0)
    unhandled = sum(n for kind, n in by_kind.items() if kind.startswith("unhandled"))
    exits = [meta.get(f"{label}_server_exit_code") for label in ("unbatched", "batched")]
    verdicts = {
        "requests": len(results) >= meta["requests"],
        "every request answered in time": hung == 0,
        "every request got a status": no_status == 0,
        "no INTERNAL/UNKNOWN/5xx": unhandled == 0,
        "server never died or stopped answering": not failures,
        "clean exit on SIGTERM": all(code == 0 for code in exits),
    }
    out.note("\nVerdict" + (" (quick run)" if meta["quick"] else "") + "\n"
             f"  requests: {len(results)} (target >= {meta['requests']})\n"
             f"  no answer within {meta['deadline_s']:.0f} s: {hung}\n"
             f"  connection closed without a status (REST): {no_status}\n"
             f"  INTERNAL / UNKNOWN / other unexpected statuses: {unhandled}\n"
             f"  server failures (died, or a valid request failed after a batch): "
             f"{len(failures)}\n"
             f"  server exit codes after SIGTERM: {exits}\n"
             f"  {'PASS' if all(verdicts.values()) else 'FAIL'}"
             + "".join(f"; {name}: {'yes' if ok else 'NO'}" for name, ok in verdicts.items()))
    return {"meta": meta, "counts": {"/".join(k): v for k, v in counts.items()},
            "findings": findings, "server_failures": failures, "probes": probes,
            "verdicts": verdicts}


if __name__ == "__main__":
    main()
