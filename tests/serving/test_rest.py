"""TF Serving's REST API (serving.rest.RestServer) over a real ServingCore, over loopback HTTP."""

import base64
import contextlib
import gzip
import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from serving.config import ModelConfig
from serving.core import ServingCore
from serving.metrics import Metrics
from serving.rest import RestServer
from tests.serving.conftest import LABELS, copy_version
from tests.serving.test_server import example_models  # noqa: F401  (a fixture)

TEXTS = ["a gripping, funny film", "dull", "Zoë visited 東京 — twice!"]
METRICS_PATH = "/monitoring/prometheus/metrics"
MAX_REQUEST_BYTES = 64 * 1024
READ_TIMEOUT = 1.0
TIMEOUT = 20


@pytest.fixture(scope="module")
def core(classifier_exports, example_models, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("rest") / "sentiment"
    base.mkdir()
    for version in (1, 2):
        copy_version(classifier_exports, base, version)
    metrics = Metrics()
    core = ServingCore([
        ModelConfig("sentiment", str(base), policy="all", labels={"stable": 1}),
        ModelConfig("classify", str(example_models / "classify")),
        ModelConfig("regress", str(example_models / "regress")),
    ], poll_wait_seconds=0, metrics=metrics)
    core.metrics = metrics
    core.start()
    try:
        yield core
    finally:
        core.stop()


@contextlib.contextmanager
def rest_server(core, **options):
    options = {"max_request_bytes": MAX_REQUEST_BYTES, "read_timeout": READ_TIMEOUT,
               "metrics": core.metrics, "metrics_path": METRICS_PATH, **options}
    server = RestServer(core, "127.0.0.1", 0, **options).start()
    try:
        yield server
    finally:
        server.stop(timeout=5)


@pytest.fixture(scope="module")
def server(core):
    with rest_server(core) as server:
        yield server


@pytest.fixture
def client(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        yield connection
    finally:
        connection.close()


def call(client, method, path, body=None, headers=None):
    """(status, parsed JSON reply, headers) over `client`'s kept-alive connection."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    client.request(method, path, body=body, headers=headers or {})
    response = client.getresponse()
    data = response.read()
    content_type = response.getheader("Content-Type")
    parsed = json.loads(data) if content_type == "application/json" and data else data
    return response.status, parsed, response


def core_probabilities(core, texts, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "sentiment"
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(np.array(texts, dtype=object)))
    return tf.make_ndarray(core.predict(request).outputs["probabilities"])


def assert_predicts(client, core):
    """A good request succeeds (after an error, on the same server)."""
    status, reply, _ = call(client, "POST", "/v1/models/sentiment:predict",
                            {"instances": TEXTS[:1]})
    assert status == 200, reply
    np.testing.assert_allclose([reply["predictions"][0]["probabilities"]],
                               core_probabilities(core, TEXTS[:1]), rtol=1e-5)


def test_row_and_columnar_round_trips(core, client):
    status, reply, response = call(client, "POST", "/v1/models/sentiment:predict",
                                   {"instances": TEXTS})
    assert status == 200 and response.getheader("Content-Type") == "application/json"
    rows = reply["predictions"]
    expected = core_probabilities(core, TEXTS, version=2)
    assert [sorted(row) for row in rows] == [["label", "label_id", "logits", "probabilities"]] * 3
    np.testing.assert_allclose([row["probabilities"] for row in rows], expected, rtol=1e-5)
    assert [row["label"] for row in rows] == [LABELS[row["label_id"]] for row in rows]

    status, reply, _ = call(client, "POST", "/v1/models/sentiment:predict",
                            {"inputs": TEXTS, "signature_name": "serving_default"})
    assert status == 200
    np.testing.assert_allclose(reply["outputs"]["probabilities"], expected, rtol=1e-5)
    assert reply["outputs"]["label"] == [row["label"] for row in rows]

    b64 = [{"b64": base64.b64encode(text.encode()).decode()} for text in TEXTS]
    status, reply, _ = call(client, "POST", "/v1/models/sentiment:predict", {"instances": b64})
    assert status == 200
    np.testing.assert_allclose([row["probabilities"] for row in reply["predictions"]],
                               expected, rtol=1e-5)


def test_versions_and_labels_in_the_url(core, client):
    def probabilities(path):
        status, reply, _ = call(client, "POST", path, {"inputs": TEXTS})
        assert status == 200, reply
        return np.array(reply["outputs"]["probabilities"])

    first = probabilities("/v1/models/sentiment/versions/1:predict")
    second = probabilities("/V1/Models/sentiment/versions/2:predict")  # case-insensitive
    np.testing.assert_allclose(first, core_probabilities(core, TEXTS, version=1), rtol=1e-5)
    np.testing.assert_allclose(second, core_probabilities(core, TEXTS, version=2), rtol=1e-5)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(probabilities("/v1/models/sentiment/labels/stable:predict"), first)
    np.testing.assert_allclose(probabilities("/v1/models/sent%69ment:predict"), second)


def test_status_and_metadata(client):
    status, reply, _ = call(client, "GET", "/v1/models/sentiment")
    assert status == 200
    assert reply == {"model_version_status": [
        {"version": version, "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}
        for version in ("2", "1")
    ]}
    status, reply, _ = call(client, "GET", "/v1/models/sentiment/labels/stable")
    assert status == 200 and [v["version"] for v in reply["model_version_status"]] == ["1"]

    status, reply, _ = call(client, "GET", "/v1/models/sentiment/versions/1/metadata")
    assert status == 200
    assert reply["model_spec"] == {"name": "sentiment", "version": "1", "signature_name": ""}
    signature = reply["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["text"]["dtype"] == "DT_STRING"
    assert set(signature["outputs"]) == {"label", "label_id", "logits", "probabilities"}


def test_classify_and_regress(client):
    status, reply, _ = call(client, "POST", "/v1/models/classify:classify",
                            {"examples": [{"x": 0.25}, {"x": 0.5}]})
    assert status == 200
    assert reply == {"results": [[["high", 0.25], ["low", 0.75]], [["high", 0.5], ["low", 0.5]]]}
    status, reply, _ = call(client, "POST", "/v1/models/regress/versions/1:regress",
                            {"context": {"x": 1.5}, "examples": [{}, {"x": 2.0}]})
    assert status == 200 and reply == {"results": [3.0, 4.0]}


# Megabytes: the refusal must reach a client still busy sending.
OVERSIZED = json.dumps({"instances": ["word " * (8 * MAX_REQUEST_BYTES)]})


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1/models/nope:predict", {"instances": ["x"]}, 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/sentiment/versions/9:predict", {"instances": ["x"]}, 404,
     "Servable not found for request: Specific(sentiment, 9)"),
    ("POST", "/v1/models/sentiment/labels/beta:predict", {"instances": ["x"]}, 400,
     "Unrecognized servable version label: beta"),
    ("POST", "/v1/models/sentiment/versions/99999999999999999999:predict", {"inputs": ["x"]},
     400, "Failed to convert version: 99999999999999999999 to numeric."),
    ("GET", "/v1/models/sentiment/versions/" + "9" * 5000, None, 400,
     "Failed to convert version: 9999"),
    ("POST", "/v1/models/%C3%A9t%C3%A9:predict", {"instances": ["x"]}, 404,
     "Servable not found for request: Latest(été)"),
    ("POST", "/v1/models/sentiment:predict", {"instances": ["x"], "signature_name": "nope"},
     400, 'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/sentiment:predict", {"instances": [1]}, 400,
     "Type: Number is not of expected type: string"),
    ("POST", "/v1/models/sentiment:predict", {"instances": [["a", "b"], ["c"]]}, 400,
     "Expecting tensor size: 2 but got: 1"),
    ("POST", "/v1/models/sentiment:predict", {"inputs": [["a"]]}, 400,
     'Input "text" must have shape [?]; got [1, 1].'),
    ("POST", "/v1/models/sentiment:predict", '{"instances": [', 400,
     "JSON Parse error: Invalid value. at offset: 15"),
    ("POST", "/v1/models/sentiment:predict", b'{"instances": ["\xff"]}', 400,
     "JSON Parse error: Invalid encoding in string."),
    ("POST", "/v1/models/sentiment:predict", '{"inputs": ' + "[" * 5000 + "]" * 5000 + "}",
     400, "Nesting deeper than"),
    ("POST", "/v1/models/sentiment:predict", '{"inputs": [1e999]}', 400,
     "Number too big to be stored in double."),
    ("POST", "/v1/models/sentiment:predict", OVERSIZED, 429,
     f"is larger than the maximum of {MAX_REQUEST_BYTES} bytes"),
    ("POST", "/v1/models/sentiment:classify", {"examples": [{"x": 1.0}]}, 400,
     'Expected one input Tensor named "inputs"'),
    ("POST", "/v1/models/regress:regress", {"examples": []}, 400,
     "'examples' value is an empty array"),
    ("POST", "/v1/models/sentiment:explain", {}, 400,
     "Malformed request: POST /v1/models/sentiment:explain"),
    ("PUT", "/v1/models/sentiment", {}, 400, "Malformed request: PUT /v1/models/sentiment"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/sentiment/versions/7/metadata", None, 404,
     "Servable not found for request: Specific(sentiment, 7)"),
    ("GET", "/v2/models/sentiment", None, 404, "No handler for GET /v2/models/sentiment"),
    ("OPTIONS", "/v1/models/sentiment:predict", None, 400,
     "Origin header is missing in CORS preflight"),
    ("BREW", "/v1/models/sentiment", None, 400, "Malformed request: BREW /v1/models/sentiment"),
])
def test_every_error_is_json_and_the_server_keeps_serving(core, server, method, path, body,
                                                          status, message):
    with contextlib.closing(
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    ) as client:
        got, reply, response = call(client, method, path, body)
        assert response.getheader("Content-Type") == "application/json"
        assert got == status and set(reply) == {"error"}, reply
        assert message in reply["error"]
    with contextlib.closing(
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    ) as client:
        assert_predicts(client, core)


def test_head_is_answered_without_a_body(core, server):
    with contextlib.closing(
        http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    ) as client:
        client.request("HEAD", "/v1/models/sentiment:predict")
        response = client.getresponse()
        assert response.status == 400 and response.read() == b""
        assert int(response.getheader("Content-Length")) > 0  # what a GET-like answer holds
        assert_predicts(client, core)


def raw_exchange(port, data: bytes, *, then=b"", pause=0.0) -> bytes:
    """Sends `data` (and `then` after `pause` s) on a fresh socket; returns all it reads."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        if pause:
            time.sleep(pause)
        if then:
            sock.sendall(then)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def reply_of(raw: bytes):
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else None


def test_bodies_that_never_arrive_whole(core, server, client):
    post = b"POST /v1/models/sentiment:predict HTTP/1.1\r\nHost: x\r\n"
    started = time.monotonic()
    raw = raw_exchange(server.port, post + b"Content-Length: 100\r\n\r\n" + b'{"instances": [')
    status, reply = reply_of(raw)
    assert status == 400 and "Request body incomplete: 15 of 100 bytes" in reply["error"]
    assert time.monotonic() - started < READ_TIMEOUT + 3
    # No Content-Length: no body (TF Serving's reading), and the connection closes.
    status, reply = reply_of(raw_exchange(server.port, post + b"\r\n"))
    assert status == 400 and reply["error"] == "JSON Parse error: The document is empty"
    status, reply = reply_of(raw_exchange(server.port, post + b"Content-Length: -5\r\n\r\n"))
    assert status == 400 and "Invalid Content-Length header" in reply["error"]
    status, reply = reply_of(raw_exchange(server.port, b"\x16\x03\x01 nonsense\r\n\r\n"))
    assert status == 400 and set(reply) == {"error"}
    # A client that sends a line and nothing more is dropped after the read timeout.
    assert raw_exchange(server.port, b"GET /v1/models/sentiment HT") == b""
    assert_predicts(client, core)


def test_chunked_gzip_and_expect_continue(server, core):
    body = json.dumps({"inputs": TEXTS[:2]}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
    raw = raw_exchange(server.port,
                       b"POST /v1/models/sentiment:predict HTTP/1.1\r\nConnection: close\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n")
    status, reply = reply_of(raw)
    assert status == 200
    np.testing.assert_allclose(reply["outputs"]["probabilities"],
                               core_probabilities(core, TEXTS[:2]), rtol=1e-5)
    packed = gzip.compress(body)
    raw = raw_exchange(server.port,
                       b"POST /v1/models/sentiment:predict HTTP/1.1\r\nConnection: close\r\n"
                       b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
                       + packed)
    assert reply_of(raw)[0] == 200
    bomb = gzip.compress(b" " * (MAX_REQUEST_BYTES + 1))
    raw = raw_exchange(server.port,
                       b"POST /v1/models/sentiment:predict HTTP/1.1\r\n"
                       b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb)
    assert reply_of(raw)[0] == 429
    # Refused before the body is sent.
    raw = raw_exchange(server.port,
                       b"POST /v1/models/sentiment:predict HTTP/1.1\r\nExpect: 100-continue\r\n"
                       b"Content-Length: %d\r\n\r\n" % (MAX_REQUEST_BYTES + 1))
    assert reply_of(raw)[0] == 429


def test_metrics_page(server, client):
    call(client, "GET", "/v1/models/sentiment")
    status, page, response = call(client, "GET", METRICS_PATH)
    assert status == 200
    assert response.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    assert 'entrypoint="REST"' in page.decode()
    assert ":tensorflow:serving:request_count" in page.decode()


def test_stop_finishes_requests_in_flight_and_is_bounded(core):
    body = json.dumps({"instances": TEXTS[:1]}).encode()
    head = (b"POST /v1/models/sentiment:predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
            % len(body))
    with rest_server(core, read_timeout=10.0) as server:
        idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        call(idle, "GET", "/v1/models/sentiment")  # a kept-alive, idle connection
        in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        in_flight.sendall(head + body[:5])
        stuck = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        stuck.sendall(head + body[:5])  # never finishes its body
        time.sleep(0.2)
        stopped = threading.Event()
        started = time.monotonic()
        stopper = threading.Thread(target=lambda: (server.stop(timeout=1.0), stopped.set()))
        stopper.start()
        time.sleep(0.3)
        assert not stopped.is_set()
        in_flight.sendall(body[5:])
        reply = b""
        while chunk := in_flight.recv(65536):
            reply += chunk
        assert reply_of(reply)[0] == 200 and b"Connection: close" in reply
        stopper.join(TIMEOUT)
        assert stopped.is_set() and time.monotonic() - started < 4
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).sendall(head)
        for connection in (in_flight, stuck, idle):
            connection.close()
