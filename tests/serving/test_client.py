"""serving.client: tensors on the wire, argument checks, retries, deadline, TLS and the CLI.

The unit tests run the client against a scripted in-process gRPC server
(`FakeServer`, on a free loopback port); the integration tests against
`serving.server.ModelServer` on the tiny exports of tests/serving/conftest.py.
"""

import concurrent.futures
import datetime
import ipaddress
import json
import os
import random
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

import keras_bert_kit as kbk
from serving import client as serving_client
from serving.client import ServingClient, ServingClientError, make_ndarray
from serving.tensors import make_tensor_proto
from tests.serving.conftest import LABELS, copy_version, running_server, write_model_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CALL_TIMEOUT = 10.0

TEXT = ({"text": ("string", [-1])},
        {"label": ("string", [-1]), "probabilities": ("float32", [-1, 2])})
PAIR = ({"text": ("string", [-1]), "text_pair": ("string", [-1])},
        {"label": ("string", [-1])})
QA = ({"question": ("string", [-1]), "context": ("string", [-1])},
      {"answer": ("string", [-1])})
IDS = ({"input_ids": ("int32", [-1, -1]), "segment_ids": ("int32", [-1, -1]),
        "padding_mask": ("int32", [-1, -1])},
       {"label": ("string", [-1])})


def _tensor_info(dtype, shape):
    data_type = tf.as_dtype(dtype).as_datatype_enum
    info = meta_graph_pb2.TensorInfo(name=f"x:{dtype}", dtype=data_type)
    for size in shape:
        info.tensor_shape.dim.add(size=size)
    return info


class FakeServer(prediction_service_pb2_grpc.PredictionServiceServicer,
                 model_service_pb2_grpc.ModelServiceServicer):
    """A model server that answers from `signatures` and fails as `failures` says.

    `failures`: (code, message) pairs, one taken per Predict call before
    answering; `delay`: seconds each Predict waits. Predict answers each
    string input upper-cased under output "label", with `probabilities`
    [0.25, 0.75] per row, in TF Serving's typed fields.
    """

    def __init__(self, signatures, version=1):
        self.signatures = signatures
        self.version = version
        self.failures = []
        self.delay = 0.0
        self.requests = []
        self.metadata_calls = 0
        self.lock = threading.Lock()

    def Predict(self, request, context):
        with self.lock:
            self.requests.append(request)
            failure = self.failures.pop(0) if self.failures else None
        if failure:
            context.abort(*failure)
        time.sleep(self.delay)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = request.model_spec.signature_name
        first = next((request.inputs[name] for name in ("text", "question", "input_ids")
                      if name in request.inputs))
        rows = first.tensor_shape.dim[0].size
        if first.dtype == types_pb2.DT_STRING:
            labels = [text.upper() for text in first.string_val]
        else:
            labels = [b"ids"] * rows
        label = response.outputs["label"]
        label.dtype = types_pb2.DT_STRING
        label.tensor_shape.dim.add(size=rows)
        label.string_val.extend(labels)
        probabilities = response.outputs["probabilities"]
        probabilities.dtype = types_pb2.DT_FLOAT
        probabilities.tensor_shape.dim.add(size=rows)
        probabilities.tensor_shape.dim.add(size=2)
        probabilities.float_val.extend([0.25, 0.75] * rows)
        return response

    def GetModelMetadata(self, request, context):
        with self.lock:
            self.metadata_calls += 1
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        for name, (inputs, outputs) in self.signatures.items():
            signature_def = signature_defs.signature_def[name]
            signature_def.method_name = "tensorflow/serving/predict"
            for key, spec in inputs.items():
                signature_def.inputs[key].CopyFrom(_tensor_info(*spec))
            for key, spec in outputs.items():
                signature_def.outputs[key].CopyFrom(_tensor_info(*spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = self.version
        response.metadata["signature_def"].Pack(signature_defs)
        return response

    def GetModelStatus(self, request, context):
        response = get_model_status_pb2.GetModelStatusResponse()
        available = response.model_version_status.add(version=self.version)
        available.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        failed = response.model_version_status.add(version=self.version + 1)
        failed.state = get_model_status_pb2.ModelVersionStatus.END
        failed.status.error_code = grpc.StatusCode.NOT_FOUND.value[0]
        failed.status.error_message = "no such file"
        return response

    def predict_calls(self):
        with self.lock:
            return len(self.requests)


def start_fake_server(fake, server_credentials=None):
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(fake, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(fake, server)
    if server_credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", server_credentials)
    server.start()
    return server, port


@pytest.fixture
def fake():
    fake = FakeServer({"serving_default": TEXT, "pairs": PAIR, "qa": QA, "predict_ids": IDS})
    server, port = start_fake_server(fake)
    fake.target = f"127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.stop(grace=None).wait(CALL_TIMEOUT)


def self_signed_certificate(host="localhost"):
    """A PEM key and self-signed certificate for `host` and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


# -- tensors -----------------------------------------------------------------------------

NUMERIC_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                  "uint64", "float16", "float32", "float64"]


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_numeric_arrays_travel_in_tensor_content_as_tensorflow_reads_them(dtype):
    values = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    proto = make_tensor_proto(values, "x")
    assert proto.tensor_content and not proto.float_val and not proto.int_val
    np.testing.assert_array_equal(tf.make_ndarray(proto), values)
    decoded = make_ndarray(proto)
    assert decoded.dtype == values.dtype and decoded.shape == values.shape
    np.testing.assert_array_equal(decoded, values)


# The typed field TF Serving fills for each dtype (TensorProto's comments).
TYPED_FIELDS = {"bool": "bool_val", "int8": "int_val", "int16": "int_val", "int32": "int_val",
                "int64": "int64_val", "uint8": "int_val", "uint16": "int_val",
                "uint32": "uint32_val", "uint64": "uint64_val", "float16": "half_val",
                "float32": "float_val", "float64": "double_val"}


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_typed_value_fields_decode_as_tensorflow_reads_them(dtype):
    values = (np.arange(6).reshape(3, 2) % 5).astype(dtype)
    proto = make_tensor_proto(values, "x")
    proto.ClearField("tensor_content")
    wire = values.view(np.uint16) if dtype == "float16" else values
    getattr(proto, TYPED_FIELDS[dtype]).extend(wire.reshape(-1).tolist())
    decoded = make_ndarray(proto)
    assert decoded.dtype == values.dtype
    np.testing.assert_array_equal(decoded, values)
    np.testing.assert_array_equal(decoded, tf.make_ndarray(proto))


def test_one_typed_value_fills_the_shape_as_in_tensorflow():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.5])
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=3)
    np.testing.assert_array_equal(make_ndarray(proto), np.full((2, 3), 1.5, np.float32))
    np.testing.assert_array_equal(make_ndarray(proto), tf.make_ndarray(proto))


def test_strings_travel_in_string_val_and_come_back_as_str():
    proto = make_tensor_proto(["a gripping, funny film", "été", b"raw"], "text")
    assert proto.dtype == types_pb2.DT_STRING and not proto.tensor_content
    assert list(proto.string_val) == ["a gripping, funny film".encode(), "été".encode(), b"raw"]
    decoded = make_ndarray(proto)
    assert decoded.dtype == object
    assert decoded.tolist() == ["a gripping, funny film", "été", "raw"]
    assert all(type(item) is str for item in decoded)
    assert make_ndarray(proto, decode_strings=False).tolist() == [
        "a gripping, funny film".encode(), "été".encode(), b"raw"]
    assert [s.decode() for s in tf.make_ndarray(proto)] == decoded.tolist()


def test_make_tensor_proto_rejects_what_it_cannot_send():
    with pytest.raises(ValueError, match="'text' mixes strings with int"):
        make_tensor_proto(np.array(["a", 3], dtype=object), "text")
    with pytest.raises(ValueError, match="'z' has dtype complex64"):
        make_tensor_proto(np.zeros(2, np.complex64), "z")


def _proto(dtype, dims, **fields):
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    return proto


# The decoding rules are serving.tensors' (tests/serving/test_tensors.py); here, that the
# client answers each problem as DATA_LOSS naming the output.
@pytest.mark.parametrize("proto, problem", [
    (_proto(types_pb2.DT_FLOAT, [3], tensor_content=b"\0" * 8), "holds 8 bytes"),
    (_proto(types_pb2.DT_STRING, [2], string_val=[b"a", b"b", b"c"]), "3 strings"),
    (_proto(types_pb2.DT_INT32, [-1]), "negative dimension"),
    (_proto(types_pb2.DT_FLOAT, [10**6, 10**6], float_val=[0.0]), "takes more than"),
    (_proto(types_pb2.DT_STRING, [10**9], string_val=[b""]), "takes more than"),
    (_proto(types_pb2.DT_COMPLEX64, [1], scomplex_val=[1.0, 2.0]), "unsupported dtype"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                            tensor_shape=tensor_shape_pb2.TensorShapeProto(unknown_rank=True)),
     "fully known"),
])
def test_malformed_response_tensors_raise_data_loss_within_bounds(proto, problem):
    with pytest.raises(ServingClientError, match=problem) as raised:
        make_ndarray(proto, "out", max_bytes=1024 * 1024)
    assert raised.value.code == grpc.StatusCode.DATA_LOSS and "'out'" in raised.value.message


# -- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(model_name=""), "`model_name` must be a non-empty string"),
    (dict(version=1, version_label="stable"), "not both"),
    (dict(version=-1), "`version` must be an int >= 0"),
    (dict(version="2"), "`version` must be an int >= 0"),
    (dict(version_label=""), "`version_label` must be a non-empty string"),
    (dict(deadline=0), "`deadline` must be a finite number of seconds > 0"),
    (dict(deadline=float("inf")), "`deadline`"),
    (dict(retries=-1), "`retries` must be an int >= 0"),
    (dict(backoff=-0.1), "`backoff` must be a finite number of seconds >= 0"),
    (dict(max_message_size=0), "`max_message_size` must be a positive int"),
    (dict(private_key=b"key"), "needs both `private_key` and `certificate_chain`"),
    (dict(credentials=grpc.ssl_channel_credentials(), root_certificates=b"pem"), "not both"),
])
def test_constructor_checks_its_arguments(kwargs, message):
    kwargs = {"model_name": "m", **kwargs}
    with pytest.raises(ValueError, match=message):
        ServingClient("127.0.0.1:1", **kwargs)


def test_arguments_that_do_not_fit_the_signature_are_refused_before_sending(fake):
    with ServingClient(fake.target, "m", deadline=CALL_TIMEOUT) as client:
        with pytest.raises(ValueError, match=r"a list of strings, not one string: pass \['hi'\]"):
            client.predict("hi")
        with pytest.raises(ValueError, match="`texts` is empty"):
            client.predict([])
        with pytest.raises(ValueError, match=r"`texts` must be strings; got int \(3\)"):
            client.predict(["a", 3])
        with pytest.raises(ValueError, match="`pairs` is for two-text signatures"):
            client.predict(["a"], ["b"])
        with pytest.raises(ValueError, match=r"takes \['text', 'text_pair'\]: give the "
                                             r"'text_pair' of each example as `pairs`"):
            client.predict(["a"], signature_name="pairs")
        with pytest.raises(ValueError, match="must hold as many rows each"):
            client.predict(["a", "b"], ["c"], signature_name="pairs")
        with pytest.raises(ValueError, match=r"takes inputs \['input_ids', 'padding_mask', "
                                             r"'segment_ids'\], not texts"):
            client.predict(["a"], signature_name="predict_ids")
        with pytest.raises(ValueError, match="has no signature 'embed'; it has"):
            client.embed(["a"])
        with pytest.raises(ValueError, match=r"has no outputs \['logits'\]"):
            client.predict(["a"], output_filter=["logits"])
        ids = np.ones((2, 4), np.int64)
        with pytest.raises(ValueError, match=r"takes inputs \['input_ids', 'padding_mask', "
                                             r"'segment_ids'\]; these arguments give "
                                             r"\['input_ids', 'padding_mask'\]"):
            client.predict_ids(ids, ids)
        with pytest.raises(ValueError, match="must hold integers; got dtype float32"):
            client.predict_ids(ids, ids, np.ones((2, 4), np.float32))
        with pytest.raises(ValueError, match=r"must be 2-D \[batch, sequence\]; got shape \(4,\)"):
            client.predict_ids(ids, ids, np.ones(4, np.int32))
        with pytest.raises(ValueError, match="must have one shape"):
            client.predict_ids(ids, ids[:, :3], ids)
        with pytest.raises(ValueError, match="outside int32"):
            client.predict_ids(ids * 2**40, ids, ids)
    assert fake.predict_calls() == 0


def test_predict_maps_texts_and_pairs_to_the_signature_inputs(fake):
    with ServingClient(fake.target, "m", deadline=CALL_TIMEOUT) as client:
        outputs = client.predict(["a gripping, funny film", "dull"])
        assert outputs["label"].tolist() == ["A GRIPPING, FUNNY FILM", "DULL"]
        assert type(outputs["label"][0]) is str and outputs.version == 1
        np.testing.assert_array_equal(outputs["probabilities"],
                                      np.array([[0.25, 0.75]] * 2, np.float32))
        assert client.predict(["how?"], ["so."], signature_name="qa")["label"].tolist() == [
            "HOW?"]
        ids = np.array([[2, 5, 3]])
        assert client.predict_ids(ids, np.ones_like(ids), np.zeros_like(ids))[
            "label"].tolist() == ["ids"]
    qa_request, ids_request = fake.requests[1], fake.requests[2]
    assert qa_request.model_spec.signature_name == "qa"
    assert make_ndarray(qa_request.inputs["question"]).tolist() == ["how?"]
    assert make_ndarray(qa_request.inputs["context"]).tolist() == ["so."]
    assert ids_request.inputs["input_ids"].dtype == types_pb2.DT_INT32
    assert ids_request.inputs["input_ids"].tensor_content
    # One metadata call for the version, however many predictions.
    assert fake.metadata_calls == 1


def test_model_spec_carries_the_version_or_label(fake):
    with ServingClient(fake.target, "m", version=7, deadline=CALL_TIMEOUT) as client:
        client.predict_raw({"text": ["a"]})
    with ServingClient(fake.target, "m", version_label="canary", deadline=CALL_TIMEOUT) as client:
        client.predict_raw({"text": ["a"]}, "qa", output_filter=["label"])
    pinned, labelled = fake.requests
    assert pinned.model_spec.name == "m" and pinned.model_spec.version.value == 7
    assert pinned.model_spec.signature_name == "serving_default"
    assert labelled.model_spec.version_label == "canary"
    assert not labelled.model_spec.HasField("version")
    assert list(labelled.output_filter) == ["label"]


def test_a_new_served_version_refreshes_the_signature_cache(fake):
    with ServingClient(fake.target, "m", deadline=CALL_TIMEOUT) as client:
        client.predict(["a"])
        fake.version = 2
        assert client.predict(["a"]).version == 2
        assert fake.metadata_calls == 1
        client.predict(["a"])
        assert fake.metadata_calls == 2


def test_metadata_and_status_as_plain_values(fake):
    with ServingClient(fake.target, "m", deadline=CALL_TIMEOUT) as client:
        metadata = client.metadata()
        statuses = client.status()
    assert metadata["model_spec"] == {"name": "m", "version": 1}
    assert metadata["signature_def"]["serving_default"] == {
        "method_name": "tensorflow/serving/predict",
        "inputs": {"text": {"dtype": "string", "shape": [-1]}},
        "outputs": {"label": {"dtype": "string", "shape": [-1]},
                    "probabilities": {"dtype": "float32", "shape": [-1, 2]}},
    }
    assert metadata["signature_def"]["predict_ids"]["inputs"]["input_ids"] == {
        "dtype": "int32", "shape": [-1, -1]}
    assert statuses == [
        {"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""},
        {"version": 2, "state": "END", "error_code": "NOT_FOUND",
         "error_message": "no such file"},
    ]
    json.dumps(metadata), json.dumps(statuses)


# -- errors, retries and the deadline -----------------------------------------------------


def test_unavailable_is_retried_with_backoff_until_it_succeeds(fake):
    fake.failures = [(grpc.StatusCode.UNAVAILABLE, "warming up")] * 2
    with ServingClient(fake.target, "m", retries=3, backoff=0.05,
                       deadline=CALL_TIMEOUT) as client:
        start = time.monotonic()
        outputs = client.predict_raw({"text": ["ok"]})
        elapsed = time.monotonic() - start
    assert outputs["label"].tolist() == ["OK"]
    assert fake.predict_calls() == 3
    # Pauses of between half and all of 0.05 s, then 0.1 s.
    assert elapsed >= 0.025 + 0.05


def test_retries_give_up_with_the_servers_status(fake):
    fake.failures = [(grpc.StatusCode.UNAVAILABLE, "still loading")] * 5
    with ServingClient(fake.target, "m", retries=2, backoff=0.0,
                       deadline=CALL_TIMEOUT) as client:
        with pytest.raises(ServingClientError) as raised:
            client.predict_raw({"text": ["x"]})
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.message == "still loading"
    assert fake.predict_calls() == 3


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL])
def test_other_errors_are_not_retried_and_carry_code_and_message(fake, code):
    fake.failures = [(code, "Servable not found for request: Latest(m)")]
    with ServingClient(fake.target, "m", retries=3, backoff=0.0,
                       deadline=CALL_TIMEOUT) as client:
        with pytest.raises(ServingClientError) as raised:
            client.predict_raw({"text": ["x"]})
        assert client.predict_raw({"text": ["x"]})["label"].tolist() == ["X"]
    assert raised.value.code == code
    assert raised.value.message == "Servable not found for request: Latest(m)"
    assert str(raised.value) == f"{code.name}: Servable not found for request: Latest(m)"
    assert fake.predict_calls() == 2


def test_deadline_bounds_a_slow_call(fake):
    fake.delay = 2.0
    with ServingClient(fake.target, "m", deadline=0.2) as client:
        start = time.monotonic()
        with pytest.raises(ServingClientError) as raised:
            client.predict_raw({"text": ["x"]})
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 1.5


def test_deadline_bounds_the_retries_too():
    # Nothing listens on a port just released: every attempt is UNAVAILABLE.
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.stop(None)
    with ServingClient(f"127.0.0.1:{port}", "m", deadline=0.5, retries=50,
                       backoff=0.05) as client:
        start = time.monotonic()
        with pytest.raises(ServingClientError) as raised:
            client.status()
    assert raised.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert time.monotonic() - start < 1.5


def test_max_message_size_bounds_requests_and_answers(fake):
    with ServingClient(fake.target, "m", max_message_size=200, retries=0,
                       deadline=CALL_TIMEOUT) as client:
        with pytest.raises(ServingClientError) as sent:
            client.predict_raw({"text": ["x" * 300]})
        with pytest.raises(ServingClientError) as received:
            client.predict_raw({"text": ["y"] * 20})
        assert client.predict_raw({"text": ["z"]})["label"].tolist() == ["Z"]
    assert sent.value.code == received.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fake.predict_calls() == 2  # the oversized request never left


def test_backoff_delays_double_with_jitter():
    delays = serving_client.backoff_delays(5, 0.1, random.Random(0))
    assert len(delays) == 5
    for attempt, delay in enumerate(delays):
        assert 0.05 * 2 ** attempt <= delay <= 0.1 * 2 ** attempt
    assert len(set(delays)) == 5
    assert serving_client.backoff_delays(0, 0.1) == []


# -- TLS ----------------------------------------------------------------------------------


def test_tls_round_trip_and_an_untrusted_server_refused(tmp_path):
    key_pem, cert_pem = self_signed_certificate()
    fake = FakeServer({"serving_default": TEXT})
    server, port = start_fake_server(fake, grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    try:
        with ServingClient(f"localhost:{port}", "m", root_certificates=cert_pem,
                           deadline=CALL_TIMEOUT) as client:
            assert client.predict(["secure"])["label"].tolist() == ["SECURE"]
        _, other_cert = self_signed_certificate()
        with ServingClient(f"localhost:{port}", "m", root_certificates=other_cert, retries=0,
                           deadline=CALL_TIMEOUT) as client:
            with pytest.raises(ServingClientError) as raised:
                client.predict(["secure"])
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=None).wait(CALL_TIMEOUT)


# -- CLI ------------------------------------------------------------------------------------


def test_cli_prints_label_and_probabilities(fake, capsys):
    assert serving_client.main(["--server", fake.target, "--model_name", "m",
                                "a gripping, funny film", "dull"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "A GRIPPING, FUNNY FILM\t[0.2500 0.7500]\ta gripping, funny film",
        "DULL\t[0.2500 0.7500]\tdull",
    ]
    assert serving_client.main(["--server", fake.target, "--model_name", "m", "--json",
                                "--signature_name", "qa", "--pair", "ctx", "why?"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "model_spec": {"name": "m", "version": 1, "signature_name": "qa"},
        "predictions": [{"text": "why?", "label": "WHY?", "probabilities": [0.25, 0.75]}],
    }
    assert serving_client.main(["--server", fake.target, "--model_name", "m", "--status"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "version 1\tAVAILABLE", "version 2\tEND\tNOT_FOUND: no such file"]


def test_cli_reports_errors_without_a_traceback(fake, capsys):
    arguments = ["--server", fake.target, "--model_name", "x"]
    fake.failures = [(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(x)")]
    assert serving_client.main([*arguments, "a"]) == 1
    assert capsys.readouterr().err == (
        "error: NOT_FOUND: Servable not found for request: Latest(x)\n")
    assert serving_client.main([*arguments, "--signature_name", "nope", "a"]) == 1
    assert capsys.readouterr().err == (
        "error: Model 'x' has no signature 'nope'; it has ['pairs', 'predict_ids', 'qa', "
        "'serving_default'].\n")
    assert serving_client.main([*arguments, "--ssl_root_certs", "/nonexistent.pem",
                                "--status"]) == 1
    assert "No such file or directory" in capsys.readouterr().err


# -- against serving.server.ModelServer on the tiny exports ---------------------------------

TEXTS = ["a gripping, funny film", "dull", "Zoë visited 東京 — twice!"]


@pytest.fixture(scope="module")
def model_server(classifier_exports, pretrainer_export, tmp_path_factory):
    """"sentiment" (versions 1 and 2, labels stable and canary) and "mlm" (a pretrainer)."""
    root = tmp_path_factory.mktemp("client_models")
    sentiment = root / "sentiment"
    sentiment.mkdir()
    for version in (1, 2):
        copy_version(classifier_exports, sentiment, version)
    config = write_model_config(root / "models.config", [
        ("sentiment", sentiment,
         "model_version_policy { all {} } "
         'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'),
        ("mlm", pretrainer_export, ""),
    ])
    with running_server(model_config_file=config) as server:
        server.target = f"127.0.0.1:{server.grpc_port}"
        yield server


@pytest.fixture
def sentiment(model_server):
    with ServingClient(model_server.target, "sentiment", deadline=CALL_TIMEOUT) as client:
        yield client


def test_predict_answers_labels_and_probabilities(sentiment):
    outputs = sentiment.predict(TEXTS)
    assert outputs.version == 2
    probabilities = outputs["probabilities"]
    assert probabilities.shape == (3, 2) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert outputs["label"].tolist() == [LABELS[i] for i in probabilities.argmax(axis=1)]
    assert all(type(label) is str for label in outputs["label"])
    np.testing.assert_array_equal(outputs["label_id"], probabilities.argmax(axis=1))
    only = sentiment.predict(TEXTS, output_filter=["label"])
    assert list(only) == ["label"] and only["label"].tolist() == outputs["label"].tolist()


def test_predict_ids_embed_and_fill_mask(sentiment, model_server, uncased_tokenizer):
    features = kbk.BertPreprocessor(uncased_tokenizer, sequence_length=32)(tf.constant(TEXTS))
    from_ids = sentiment.predict_ids(features["input_ids"].numpy(),
                                     features["padding_mask"].numpy(),
                                     features["segment_ids"].numpy())
    np.testing.assert_allclose(from_ids["probabilities"],
                               sentiment.predict(TEXTS)["probabilities"], atol=1e-5)

    embeddings = sentiment.embed(TEXTS)
    assert set(embeddings) == {"pooled_output", "mean_embedding"}
    assert embeddings["mean_embedding"].shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings["mean_embedding"], axis=1), 1.0,
                               rtol=1e-5)

    with ServingClient(model_server.target, "mlm", deadline=CALL_TIMEOUT) as mlm:
        filled = mlm.fill_mask(["the [MASK] sat on the [MASK] .", "no mask here"])
    assert filled["mask_count"].tolist() == [2, 0]
    assert filled["tokens"].shape == (2, 2, 3) and filled["scores"].dtype == np.float32
    assert all(type(token) is str and token for token in filled["tokens"][0].reshape(-1))
    assert filled["tokens"][1].tolist() == [[""] * 3] * 2
    assert filled["tokens"][0].tolist() == [
        [uncased_tokenizer.id_to_token(int(i)) for i in row] for row in filled["token_ids"][0]]


def test_metadata_and_status_of_a_real_export(sentiment):
    metadata = sentiment.metadata()
    assert metadata["model_spec"] == {"name": "sentiment", "version": 2}
    signatures = metadata["signature_def"]
    assert {"serving_default", "predict_ids", "embed"} <= set(signatures)
    assert signatures["serving_default"]["inputs"] == {"text": {"dtype": "string", "shape": [-1]}}
    assert signatures["serving_default"]["outputs"]["probabilities"] == {
        "dtype": "float32", "shape": [-1, 2]}
    assert signatures["predict_ids"]["inputs"] == {
        name: {"dtype": "int32", "shape": [-1, -1]}
        for name in ("input_ids", "segment_ids", "padding_mask")}
    assert sentiment.status() == [
        {"version": version, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}
        for version in (2, 1)]


def test_version_and_version_label_select_the_model(model_server):
    answers = {}
    for selection, version in ((dict(version=1), 1), (dict(version_label="stable"), 1),
                               (dict(version_label="canary"), 2), (dict(version=2), 2)):
        with ServingClient(model_server.target, "sentiment", deadline=CALL_TIMEOUT,
                           **selection) as client:
            outputs = client.predict(TEXTS)
            assert outputs.version == version
            assert client.metadata()["model_spec"]["version"] == version
            answers.setdefault(version, outputs["logits"])
            np.testing.assert_allclose(outputs["logits"], answers[version], atol=1e-6)
    assert not np.allclose(answers[1], answers[2])


@pytest.mark.parametrize("name, selection, inputs, signature, code, fragment", [
    ("nope", {}, {"text": ["a"]}, "serving_default", grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    ("sentiment", dict(version=9), {"text": ["a"]}, "serving_default",
     grpc.StatusCode.NOT_FOUND, "Specific(sentiment, 9)"),
    ("sentiment", dict(version_label="beta"), {"text": ["a"]}, "serving_default",
     grpc.StatusCode.INVALID_ARGUMENT, "beta"),
    ("sentiment", {}, {"text": ["a"]}, "x", grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "x" not found.'),
    ("sentiment", {}, {"txt": ["a"]}, "serving_default", grpc.StatusCode.INVALID_ARGUMENT,
     "txt"),
    ("sentiment", {}, {"text": np.zeros(2, np.float32)}, "serving_default",
     grpc.StatusCode.INVALID_ARGUMENT, "text"),
])
def test_the_servers_error_codes_and_messages_come_through(model_server, sentiment, name,
                                                          selection, inputs, signature, code,
                                                          fragment):
    with ServingClient(model_server.target, name, deadline=CALL_TIMEOUT, **selection) as client:
        with pytest.raises(ServingClientError) as raised:
            client.predict_raw(inputs, signature)
    assert raised.value.code == code
    assert fragment in raised.value.message
    assert sentiment.predict(["still serving"])["label"].shape == (1,)


def test_a_deadline_too_short_for_the_server(model_server):
    with ServingClient(model_server.target, "sentiment") as client:
        client.status()  # connected: the deadline below is the call's, not the connection's
        client.deadline = 1e-4
        with pytest.raises(ServingClientError) as raised:
            client.predict_raw({"text": TEXTS})
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def _run_cli(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "serving.client", *arguments], cwd=ROOT, capture_output=True,
        text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT},
    )


def test_cli_against_the_server(model_server, sentiment, capsys):
    expected = sentiment.predict(TEXTS[:2])
    plain = _run_cli("--server", model_server.target, "--model_name", "sentiment", *TEXTS[:2])
    assert plain.returncode == 0, plain.stderr
    for line, text, label, probabilities in zip(plain.stdout.splitlines(), TEXTS,
                                                expected["label"], expected["probabilities"]):
        assert line == f"{label}\t[{' '.join(f'{p:.4f}' for p in probabilities)}]\t{text}"

    answer = _run_cli("--server", model_server.target, "--model_name", "sentiment",
                      "--version_label", "stable", "--json", TEXTS[0])
    assert answer.returncode == 0, answer.stderr
    result = json.loads(answer.stdout)
    assert result["model_spec"] == {"name": "sentiment", "version": 1,
                                    "signature_name": "serving_default"}
    [prediction] = result["predictions"]
    with ServingClient(model_server.target, "sentiment", version=1,
                       deadline=CALL_TIMEOUT) as stable:
        np.testing.assert_allclose(prediction["probabilities"],
                                   stable.predict(TEXTS[:1])["probabilities"][0], rtol=1e-6)
    assert prediction["text"] == TEXTS[0] and prediction["label"] in LABELS

    assert serving_client.main(["--server", model_server.target, "--model_name", "nope",
                                "--status"]) == 1
    assert capsys.readouterr().err == (
        "error: NOT_FOUND: Could not find any versions of model nope\n")


def test_tls_round_trip_with_the_model_server(classifier_exports, tmp_path, capsys):
    key_pem, cert_pem = self_signed_certificate()
    (tmp_path / "server.key").write_bytes(key_pem)
    (tmp_path / "server.crt").write_bytes(cert_pem)
    base = tmp_path / "sentiment"
    base.mkdir()
    copy_version(classifier_exports, base, 1)
    with running_server(model_name="sentiment", model_base_path=str(base),
                        ssl_cert_file=str(tmp_path / "server.crt"),
                        ssl_key_file=str(tmp_path / "server.key")) as server:
        target = f"localhost:{server.grpc_port}"
        with ServingClient(target, "sentiment", root_certificates=cert_pem,
                           deadline=CALL_TIMEOUT) as client:
            assert client.predict(TEXTS)["label"].shape == (3,)
        with ServingClient(target, "sentiment", retries=0, deadline=CALL_TIMEOUT) as plaintext:
            with pytest.raises(ServingClientError) as raised:
                plaintext.status()
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE
        assert serving_client.main(["--server", target, "--model_name", "sentiment", "--status",
                                    "--ssl_root_certs", str(tmp_path / "server.crt")]) == 0
        assert capsys.readouterr().out == "version 1\tAVAILABLE\n"
