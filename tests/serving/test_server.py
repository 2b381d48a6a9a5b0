"""The TF Serving-compatible server over gRPC: wire format, statuses, versions, shutdown."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from tests.serving.conftest import (
    LABELS,
    copy_version,
    prediction_stub,
    running_server,
    write_model_config,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXTS = ["a gripping, funny film", "dull", "Zoë visited 東京 — twice!"]
TIMEOUT = 20


def predict_request(name="sentiment", texts=TEXTS, **spec):
    """A PredictRequest built by hand from the protos, as any TF Serving client builds it."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    proto = request.inputs["text"]
    proto.dtype = tf.string.as_datatype_enum
    proto.tensor_shape.dim.add(size=len(texts))
    proto.string_val.extend(t.encode("utf-8") for t in texts)
    return request


def ids_request(input_ids):
    """A `predict_ids` request for one row of ids (one segment, no padding)."""
    input_ids = np.array(input_ids, "int32")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "sentiment"
    request.model_spec.signature_name = "predict_ids"
    request.inputs["input_ids"].CopyFrom(tf.make_tensor_proto(input_ids))
    request.inputs["segment_ids"].CopyFrom(tf.make_tensor_proto(np.zeros_like(input_ids)))
    request.inputs["padding_mask"].CopyFrom(tf.make_tensor_proto(np.ones_like(input_ids)))
    return request


def outputs_of(response):
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


@pytest.fixture
def sentiment_base(classifier_exports, tmp_path):
    base = tmp_path / "sentiment"
    base.mkdir()
    copy_version(classifier_exports, base, 1)
    return base


@pytest.fixture
def server(sentiment_base):
    with running_server(model_name="sentiment", model_base_path=str(sentiment_base)) as server:
        yield server


@pytest.fixture
def stubs(server):
    with prediction_stub(server) as stubs:
        yield stubs


def test_a_hand_built_request_through_the_raw_stub(stubs, server):
    predict, _ = stubs
    response = predict.Predict(predict_request(), timeout=TIMEOUT)
    assert response.model_spec.name == "sentiment"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    outputs = outputs_of(response)
    assert set(outputs) == {"label", "label_id", "logits", "probabilities"}
    assert outputs["probabilities"].shape == (3, 2)
    np.testing.assert_allclose(outputs["probabilities"].sum(-1), 1.0, rtol=1e-5)
    assert [label.decode() for label in outputs["label"]] == [
        LABELS[i] for i in outputs["label_id"]
    ]
    # The same answer as the session TF Serving would run (no batching, same graph).
    again = outputs_of(predict.Predict(predict_request(), timeout=TIMEOUT))
    np.testing.assert_array_equal(again["logits"], outputs["logits"])


def test_output_filter_and_ids_in(stubs):
    predict, _ = stubs
    request = predict_request()
    request.output_filter.append("probabilities")
    assert set(predict.Predict(request, timeout=TIMEOUT).outputs) == {"probabilities"}

    ids = ids_request([[101, 2023, 102]])
    outputs = outputs_of(predict.Predict(ids, timeout=TIMEOUT))
    assert outputs["probabilities"].shape == (1, 2)


def test_metadata_and_status_replies(stubs):
    predict, models = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "sentiment"
    request.metadata_field.append("signature_def")
    response = predict.GetModelMetadata(request, timeout=TIMEOUT)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", "predict_ids", "embed"} <= set(signatures.signature_def)
    text = signatures.signature_def["serving_default"].inputs["text"]
    assert text.dtype == tf.string.as_datatype_enum

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "sentiment"
    reply = models.GetModelStatus(status, timeout=TIMEOUT)
    assert [(s.version, s.state, s.status.error_code) for s in reply.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    ]


def _expect(call, request, code, fragment):
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    assert caught.value.code() == code, caught.value.details()
    assert fragment in caught.value.details()


def _bad_predict_requests():
    def with_input(name, proto):
        request = predict_request()
        request.inputs[name].CopyFrom(proto)
        return request

    extra = predict_request()
    extra.inputs["text_pair"].CopyFrom(tf.make_tensor_proto(["x"] * 3))
    missing = predict_request()
    del missing.inputs["text"]
    lying = predict_request()
    lying.inputs["text"].tensor_shape.dim[0].size = 2**40
    short_content = with_input("text", tf.make_tensor_proto(np.array([1.0, 2.0], "float32")))
    short_content.inputs["text"].dtype = tf.string.as_datatype_enum
    bad_filter = predict_request()
    bad_filter.output_filter.append("nope")
    return [
        (predict_request(name="nope"), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Latest(nope)"),
        (predict_request(version=9), grpc.StatusCode.NOT_FOUND,
         "Servable not found for request: Specific(sentiment, 9)"),
        (predict_request(name=""), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name"),
        (predict_request(version_label="stable"), grpc.StatusCode.INVALID_ARGUMENT,
         "Unrecognized servable version label: stable"),
        (predict_request(signature_name="x"), grpc.StatusCode.FAILED_PRECONDITION,
         'Serving signature key "x" not found.'),
        (extra, grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {text_pair}"),
        (missing, grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {text}"),
        (with_input("text", tf.make_tensor_proto(np.array([1, 2], "int32"))),
         grpc.StatusCode.INVALID_ARGUMENT, "must be string"),
        (with_input("text", tf.make_tensor_proto([["a", "b"]])),
         grpc.StatusCode.INVALID_ARGUMENT, "must have shape [?]"),
        (lying, grpc.StatusCode.INVALID_ARGUMENT, "takes more than"),
        (short_content, grpc.StatusCode.INVALID_ARGUMENT, "Input \"text\""),
        (bad_filter, grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found"),
    ]


def test_every_error_code_then_a_good_request(stubs):
    predict, models = stubs
    for request, code, fragment in _bad_predict_requests():
        _expect(predict.Predict, request, code, fragment)
        assert predict.Predict(predict_request(), timeout=TIMEOUT).outputs["label"]

    ids = ids_request([[101, 99999, 102]])
    # Out-of-range ids are caught in the graph, as TF Serving's session would.
    _expect(predict.Predict, ids, grpc.StatusCode.INVALID_ARGUMENT, "input_ids")

    metadata = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata.model_spec.name = "sentiment"
    _expect(predict.GetModelMetadata, metadata, grpc.StatusCode.INVALID_ARGUMENT,
            "at least one metadata_field")
    metadata.metadata_field.append("stats")
    _expect(predict.GetModelMetadata, metadata, grpc.StatusCode.INVALID_ARGUMENT,
            "Metadata field stats is not supported")

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "nope"
    _expect(models.GetModelStatus, status, grpc.StatusCode.NOT_FOUND,
            "Could not find any versions of model nope")
    status.model_spec.name = "sentiment"
    status.model_spec.version.value = 5
    _expect(models.GetModelStatus, status, grpc.StatusCode.NOT_FOUND,
            "Could not find version 5 of model sentiment")

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "sentiment"
    classify.input.example_list.examples.add()
    _expect(predict.Classify, classify, grpc.StatusCode.INVALID_ARGUMENT, "inputs")
    assert predict.Predict(predict_request(), timeout=TIMEOUT).outputs["label"]


def test_an_oversized_request_is_resource_exhausted(sentiment_base):
    with running_server(model_name="sentiment", model_base_path=str(sentiment_base),
                        max_request_bytes=4096) as server, prediction_stub(server) as stubs:
        predict, _ = stubs
        _expect(predict.Predict, predict_request(texts=["word " * 2000]),
                grpc.StatusCode.RESOURCE_EXHAUSTED, "")
        assert predict.Predict(predict_request(), timeout=TIMEOUT).outputs["label"]


@pytest.fixture(scope="module")
def example_models(tmp_path_factory):
    """TF1-style SavedModels whose signatures use the classify and regress method names."""
    base = tmp_path_factory.mktemp("examples")
    for name in ("classify", "regress"):
        graph = tf.Graph()
        with graph.as_default():
            serialized = tf.compat.v1.placeholder(tf.string, [None], name="inputs")
            features = tf.io.parse_example(
                serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)}
            )
            x = features["x"]
            builder = tf.compat.v1.saved_model.Builder(str(base / name / "1"))
            if name == "classify":
                scores = tf.concat([x, 1.0 - x], axis=1)
                classes = tf.tile(tf.constant([["high", "low"]]), [tf.shape(x)[0], 1])
                signature = tf.compat.v1.saved_model.classification_signature_def(
                    serialized, classes, scores
                )
            else:
                signature = tf.compat.v1.saved_model.regression_signature_def(
                    serialized, 2.0 * x
                )
            with tf.compat.v1.Session(graph=graph) as session:
                builder.add_meta_graph_and_variables(
                    session, ["serve"], signature_def_map={"serving_default": signature}
                )
            builder.save()
    return base


def _examples(values):
    model_input = classification_pb2.ClassificationRequest().input
    for value in values:
        model_input.example_list.examples.add().features.feature["x"].float_list.value.append(
            value
        )
    return model_input


def test_classify_and_regress_signatures(example_models, tmp_path):
    config = write_model_config(tmp_path / "models.config", [
        (name, example_models / name, "") for name in ("classify", "regress")
    ])
    with running_server(model_config_file=config) as server, \
            prediction_stub(server) as (predict, _):
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name = "classify"
        classify.input.CopyFrom(_examples([0.25, 0.5]))
        result = predict.Classify(classify, timeout=TIMEOUT).result
        assert [[(c.label, round(c.score, 4)) for c in row.classes]
                for row in result.classifications] == [
            [("high", 0.25), ("low", 0.75)], [("high", 0.5), ("low", 0.5)]
        ]
        regress = regression_pb2.RegressionRequest()
        regress.model_spec.name = "regress"
        regress.input.CopyFrom(_examples([1.5]))
        assert [r.value for r in predict.Regress(regress, timeout=TIMEOUT).result.regressions] \
            == [3.0]
        # Classify on a regression signature: TF Serving's structural check.
        classify.model_spec.name = "regress"
        _expect(predict.Classify, classify, grpc.StatusCode.INVALID_ARGUMENT, "classes")
        empty = regression_pb2.RegressionRequest()
        empty.model_spec.name = "regress"
        _expect(predict.Regress, empty, grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")


def test_two_models_a_version_label_and_a_specific_policy(classifier_exports, pretrainer_export,
                                                         tmp_path):
    sentiment = tmp_path / "sentiment"
    sentiment.mkdir()
    for version in (1, 2):
        copy_version(classifier_exports, sentiment, version)
    copy_version(classifier_exports, sentiment, 2, as_version=3)  # not in the policy
    config = write_model_config(tmp_path / "models.config", [
        ("sentiment", sentiment,
         "model_version_policy { specific { versions: 1 versions: 2 } } "
         'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'),
        ("mlm", pretrainer_export, ""),
    ])
    with running_server(model_config_file=config) as server, \
            prediction_stub(server) as (predict, models):
        answers = {}
        for label, version in (("stable", 1), ("canary", 2)):
            response = predict.Predict(predict_request(version_label=label), timeout=TIMEOUT)
            assert response.model_spec.version.value == version
            answers[label] = outputs_of(response)["logits"]
        assert not np.allclose(answers["stable"], answers["canary"])
        latest = predict.Predict(predict_request(), timeout=TIMEOUT)
        assert latest.model_spec.version.value == 2  # 3 is present but not asked for
        _expect(predict.Predict, predict_request(version=3), grpc.StatusCode.NOT_FOUND,
                "Specific(sentiment, 3)")

        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "sentiment"
        versions = [s.version for s in models.GetModelStatus(status, timeout=TIMEOUT)
                    .model_version_status]
        assert versions == [2, 1]

        mask = predict_pb2.PredictRequest()
        mask.model_spec.name = "mlm"
        mask.model_spec.signature_name = "fill_mask"
        mask.inputs["text"].CopyFrom(tf.make_tensor_proto(["the [MASK] sat on the mat ."]))
        tokens = outputs_of(predict.Predict(mask, timeout=TIMEOUT))["tokens"]
        assert tokens.shape[-1] == 3


def test_a_new_version_takes_over_without_a_failed_request(classifier_exports, sentiment_base):
    with running_server(model_name="sentiment", model_base_path=str(sentiment_base)) as server, \
            prediction_stub(server) as (predict, models):
        seen, errors, stop = [], [], threading.Event()

        def send():
            while not stop.is_set():
                try:
                    response = predict.Predict(predict_request(), timeout=TIMEOUT)
                    seen.append(response.model_spec.version.value)
                except grpc.RpcError as error:
                    errors.append(error)

        threads = [threading.Thread(target=send) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                time.sleep(0.05)
            copy_version(classifier_exports, sentiment_base, 2)
            deadline = time.monotonic() + 60
            while (not seen or seen[-1] != 2) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(TIMEOUT)
        assert not errors, errors[0]
        assert seen[0] == 1 and seen[-1] == 2
        # Once version 2 answered, version 1 answers no more.
        assert 1 not in seen[seen.index(2) + 3 * len(threads):]
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "sentiment"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = {s.version: s.state for s in models.GetModelStatus(
                status, timeout=TIMEOUT).model_version_status}
            if states.get(1) == get_model_status_pb2.ModelVersionStatus.END:
                break
            time.sleep(0.05)
        assert states == {1: get_model_status_pb2.ModelVersionStatus.END,
                          2: get_model_status_pb2.ModelVersionStatus.AVAILABLE}


def test_batching_returns_each_caller_its_own_rows(sentiment_base, tmp_path):
    parameters = tmp_path / "batching.config"
    parameters.write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 50000 }\n"
        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n"
    )
    texts = [f"review number {i} was {'great' if i % 2 else 'awful'}" for i in range(12)]
    with running_server(model_name="sentiment", model_base_path=str(sentiment_base)) as plain, \
            prediction_stub(plain) as (predict, _):
        alone = [outputs_of(predict.Predict(predict_request(texts=[t]), timeout=TIMEOUT))
                 for t in texts]
    with running_server(model_name="sentiment", model_base_path=str(sentiment_base),
                        enable_batching=True,
                        batching_parameters_file=str(parameters)) as server, \
            prediction_stub(server) as (predict, _):
        results = [None] * len(texts)

        def ask(i):
            results[i] = outputs_of(predict.Predict(predict_request(texts=[texts[i]]),
                                                    timeout=TIMEOUT))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
    for mine, reference in zip(results, alone):
        assert mine["label"].tolist() == reference["label"].tolist()
        np.testing.assert_allclose(mine["probabilities"], reference["probabilities"], atol=1e-5)


def test_sigterm_answers_every_request_in_flight(sentiment_base, tmp_path):
    parameters = tmp_path / "batching.config"
    # A long batching timeout holds requests in the queue when SIGTERM arrives.
    parameters.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 1500000 }\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--port", "0", "--model_name", "sentiment",
         "--model_base_path", str(sentiment_base), "--enable_batching",
         "--batching_parameters_file", str(parameters)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT},
    )
    try:
        port = _announced_port(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        futures = [stub.Predict.future(predict_request(texts=[t]), timeout=TIMEOUT)
                   for t in TEXTS * 2]
        time.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        versions = [future.result(timeout=TIMEOUT).model_spec.version.value for future in futures]
        assert versions == [1] * len(futures)
        assert server.wait(timeout=TIMEOUT) == 0
        channel.close()
    finally:
        server.kill()
        server.communicate(timeout=TIMEOUT)


def _announced_port(process):
    """The gRPC port a `python -m serving.server --port 0` child prints once it serves."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("serving: gRPC on "):
            return int(line.split()[3].rstrip(",").rsplit(":", 1)[1])
        if not line and process.poll() is not None:
            raise AssertionError(process.stderr.read()[-3000:])
    raise AssertionError("the server did not start within 90 s")


def test_a_broken_new_version_keeps_the_old_one_serving(sentiment_base):
    with running_server(model_name="sentiment", model_base_path=str(sentiment_base)) as server, \
            prediction_stub(server) as (predict, models):
        staging = sentiment_base / ".2"
        staging.mkdir()
        (staging / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff\xff not a SavedModel")
        os.rename(staging, sentiment_base / "2")
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "sentiment"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            reply = {s.version: s for s in models.GetModelStatus(status, timeout=TIMEOUT)
                     .model_version_status}
            if 2 in reply and reply[2].state == get_model_status_pb2.ModelVersionStatus.END:
                break
            time.sleep(0.05)
        assert reply[2].status.error_code != 0 and "SavedModel" in reply[2].status.error_message
        assert reply[1].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        assert predict.Predict(predict_request(), timeout=TIMEOUT).model_spec.version.value == 1


def test_warmup_runs_before_a_version_serves(classifier_exports, sentiment_base):
    """A version whose warmup record fails never becomes AVAILABLE (TF Serving fails the load)."""
    from keras_bert_kit.export.warmup import write_warmup_requests

    staging = copy_version(classifier_exports, sentiment_base, 2, as_version=".2")
    write_warmup_requests(str(staging), [("no_such_signature", {"text": np.array([b"x"])})])
    os.rename(staging, sentiment_base / "2")
    with running_server(model_name="sentiment", model_base_path=str(sentiment_base)) as server, \
            prediction_stub(server) as (predict, models):
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "sentiment"
        (reply,) = models.GetModelStatus(status, timeout=TIMEOUT).model_version_status
        assert (reply.version, reply.state) == (2, get_model_status_pb2.ModelVersionStatus.END)
        assert reply.status.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert 'signature key "no_such_signature"' in reply.status.error_message


def test_unparsable_bytes_are_internal_and_logged_in_one_line(server, caplog):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        send = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                   request_serializer=None, response_deserializer=None)
        with caplog.at_level("ERROR", logger="grpc._common"):
            with pytest.raises(grpc.RpcError) as caught:
                send(b"\xff\xff\xff garbage", timeout=TIMEOUT)
        # What C++ gRPC (so tensorflow_model_server) answers too.
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        records = [r for r in caplog.records if "deserializing" in r.getMessage()]
        assert records and all(r.exc_info is None for r in records)
    finally:
        channel.close()
    with prediction_stub(server) as (predict, _):
        assert predict.Predict(predict_request(), timeout=TIMEOUT).outputs["label"]


def test_prometheus_metrics_per_model_version_signature_and_entrypoint(sentiment_base, tmp_path):
    import urllib.request

    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }')
    with running_server(model_name="sentiment", model_base_path=str(sentiment_base),
                        rest_api_port=0, monitoring_config_file=str(monitoring)) as server, \
            prediction_stub(server) as (predict, _):
        predict.Predict(predict_request(), timeout=TIMEOUT)
        with pytest.raises(grpc.RpcError):
            predict.Predict(predict_request(signature_name="x"), timeout=TIMEOUT)
        body = json.dumps({"instances": ["dull"]}).encode()
        urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/sentiment:predict",
                               body, timeout=TIMEOUT).read()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics", timeout=TIMEOUT
        ) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = reply.read().decode()
    counts = [line for line in text.splitlines()
              if line.startswith(":tensorflow:serving:request_count{")]
    for status, entrypoint in (("OK", "GRPC"), ("FAILED_PRECONDITION", "GRPC"), ("OK", "REST")):
        assert any(f'status="{status}"' in line and f'entrypoint="{entrypoint}"' in line
                   and 'model_name="sentiment"' in line and line.endswith(" 1")
                   for line in counts), (status, entrypoint, counts)
    assert ":tensorflow:serving:request_latency_bucket{" in text
