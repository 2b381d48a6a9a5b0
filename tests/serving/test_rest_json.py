"""TF Serving's REST JSON <-> protos (serving.rest), without a server: json_tensor.cc's rules."""

import json
import math

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from serving import rest
from serving.errors import ServingError
from serving.tensors import make_tensor_proto

FLOAT, INT32, INT64, STRING, BOOL = (
    types_pb2.DT_FLOAT, types_pb2.DT_INT32, types_pb2.DT_INT64, types_pb2.DT_STRING,
    types_pb2.DT_BOOL,
)


def predict_inputs(body, dtypes, signatures=None):
    """(format, {alias: ndarray}, request) for a predict body against `dtypes`."""
    request = predict_pb2.PredictRequest()
    asked = []

    def input_dtypes(signature):
        asked.append(signature)
        return dtypes

    request_format = rest.fill_predict_request(rest.parse_json(body.encode()), input_dtypes,
                                               request)
    if signatures is not None:
        assert asked == signatures
    arrays = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    return request_format, arrays, request


def error_of(call, *args):
    with pytest.raises(ServingError) as caught:
        call(*args)
    return caught.value


def predict_error(body, dtypes):
    return error_of(predict_inputs, body, dtypes)


def test_row_format_batches_the_instances():
    request_format, arrays, request = predict_inputs(
        '{"instances": [[1, 2.5], [3, 4]], "signature_name": "sig"}', {"x": FLOAT}, ["sig"]
    )
    assert request_format == rest.ROW
    assert request.model_spec.signature_name == "sig"
    assert request.inputs["x"].dtype == FLOAT
    np.testing.assert_array_equal(arrays["x"], np.array([[1, 2.5], [3, 4]], "float32"))


def test_row_format_named_inputs_b64_and_every_json_type():
    body = json.dumps({"instances": [
        {"text": "héllo", "ids": [1, 2], "flag": True, "blob": {"b64": "AAE="}},
        {"text": {"b64": "/w=="}, "ids": [3, 4], "flag": False, "blob": "x"},
    ]})
    _, arrays, _ = predict_inputs(
        body, {"text": STRING, "ids": INT64, "flag": BOOL, "blob": STRING}
    )
    assert arrays["text"].tolist() == ["héllo".encode(), b"\xff"]
    assert arrays["blob"].tolist() == [b"\x00\x01", b"x"]
    np.testing.assert_array_equal(arrays["ids"], [[1, 2], [3, 4]])
    assert arrays["ids"].dtype == np.int64
    assert arrays["flag"].tolist() == [True, False]


def test_a_single_string_input_takes_plain_and_b64_instances():
    _, arrays, _ = predict_inputs('{"instances": ["a", {"b64": "Yg=="}]}', {"text": STRING})
    assert arrays["text"].tolist() == [b"a", b"b"]


def test_columnar_format():
    request_format, arrays, _ = predict_inputs(
        '{"inputs": {"a": [[1], [2]], "b": 7, "ignored": 1}}', {"a": INT32, "b": INT32}
    )
    assert request_format == rest.COLUMNAR
    assert arrays["a"].shape == (2, 1) and arrays["b"].shape == ()
    assert int(arrays["b"]) == 7
    _, arrays, _ = predict_inputs('{"inputs": [NaN, Infinity, -Infinity]}', {"x": FLOAT})
    assert math.isnan(arrays["x"][0]) and arrays["x"][1] == np.inf and arrays["x"][2] == -np.inf


@pytest.mark.parametrize("body, dtypes, message", [
    ('{"instances": [[1, 2], [3]]}', {"x": INT32},
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
     "Expecting tensor size: 2 but got: 1"),
    ('{"instances": [[[1, 2]], [1, 2]]}', {"x": INT32},
     "Expecting shape [1,2] but got: [2]"),
    ('{"inputs": [[1, 2], [3]]}', {"x": INT32},
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ('{"inputs": [[1, 2], 3]}', {"x": INT32},
     "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ('{"inputs": [1, [2]]}', {"x": INT32}, "Encountered list at unexpected level: 1 expected < 1"),
    ('{"inputs": ["a"]}', {"x": FLOAT},
     'JSON Value: "a" Type: String is not of expected type: float'),
    ('{"inputs": [2147483648]}', {"x": INT32},
     "JSON Value: 2147483648 Type: Number is not of expected type: int32"),
    ('{"inputs": [1.5]}', {"x": INT64}, "Type: Number is not of expected type: int64"),
    ('{"inputs": [1]}', {"x": BOOL}, "Type: Number is not of expected type: bool"),
    ('{"inputs": [true]}', {"x": FLOAT}, "JSON Value: true Type: True is not of expected type"),
    ('{"inputs": [{"b64": "AA=="}]}', {"x": FLOAT}, "Type: Object is not of expected type"),
    ('{"inputs": [{"b64": "A"}]}', {"x": STRING}, "Unable to base64 decode"),
    ('{"inputs": [{"b64": "AA==", "x": 1}]}', {"x": STRING},
     "not formatted correctly for base64 data"),
    ('{"inputs": ["\\ud800"]}', {"x": STRING}, "The surrogate pair in string is invalid."),
    ('{"inputs": [1]}', {"a": INT32, "b": INT32},
     "inputs is a plain value/list, but expecting an object"),
    ('{"inputs": {"a": [1]}}', {"a": INT32, "b": INT32},
     "Missing named input: b in 'inputs' object."),
    ('{"instances": [1]}', {"a": INT32, "b": INT32},
     "instances is a plain list, but expecting list of objects"),
    ('{"instances": [{"a": 1}, [1]]}', {"a": INT32}, "Expecting object but got list at item 1"),
    ('{"instances": [[1], {"a": 1}]}', {"a": INT32},
     "Expecting value/list but got object at item 1 of input list"),
    ('{"instances": [{"a": 1, "c": 2}]}', {"a": INT32},
     "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON object: does not have named input: c"),
    ('{"instances": [{"a": 1}]}', {"a": INT32, "b": INT32},
     "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"a\": 1\n} "
     "keys must be equal to: a,b"),
    ('{"instances": []}', {"a": INT32}, "No values in 'instances' array"),
    ('{"instances": {}}', {"a": INT32}, "Expecting 'instances' to be an list/array"),
    ('{"instances": [1], "inputs": [1]}', {"a": INT32},
     "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
    ('{"signature_name": 1, "inputs": [1]}', {"a": INT32},
     "'signature_name' key must be a string value."),
    ('{"x": 1}', {"a": INT32}, "Missing 'inputs' or 'instances' key"),
    ('{"inputs": 1}', {}, "Failed to get input map for signature: DEFAULT"),
])
def test_malformed_tensors_are_invalid_argument(body, dtypes, message):
    error = predict_error(body, dtypes)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.message


def test_a_dtype_json_cannot_carry_is_unimplemented():
    error = predict_error('{"inputs": [1.0]}', {"x": types_pb2.DT_HALF})
    assert error.code == grpc.StatusCode.UNIMPLEMENTED
    assert error.message == "Conversion of JSON Value: 1.0 to type: half"


@pytest.mark.parametrize("body, message", [
    (b"", "JSON Parse error: The document is empty"),
    (b" \n", "JSON Parse error: The document is empty. at offset: 2"),
    (b'{"a": }', "JSON Parse error: Invalid value. at offset: 6"),
    (b'{"a": "\xc3\xa9', "JSON Parse error: Missing a closing quotation mark in string."),
    (b'{"a": "\xff"}', "JSON Parse error: Invalid encoding in string. at offset: 7"),
    (b'{"a": 1e400}', "JSON Parse error: Number too big to be stored in double."),
    (b'{"a": ' + b"9" * 5000 + b"}", "JSON Parse error: Number too big to be stored in double."),
    (b"[" * 100_000, f"Nesting deeper than {rest.MAX_JSON_DEPTH} levels."),
    (b'{"a": ' + b'{"b": ' * 200 + b"1" + b"}" * 201, "Nesting deeper than"),
    (b"[1, 2]", "JSON Value: [1, 2] Is not object"),
])
def test_unparsable_bodies_are_invalid_argument(body, message):
    error = error_of(rest.parse_json, body)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.message


def test_parsing_follows_rapidjson():
    # Stops after the first value; first of duplicate keys; brackets in strings don't nest.
    assert rest.parse_json(b' {"a": 1, "a": 2} trailing') == {"a": 1}
    deep_string = b'{"s": "' + b"[" * 500 + b'", "n": [' + b"[1]," * 300 + b"[2]]}"
    assert rest.parse_json(deep_string)["s"] == "[" * 500
    # Integers past uint64 are doubles (as rapidjson stores them).
    assert rest.parse_json(b'{"a": 18446744073709551616}')["a"] == 2.0 ** 64
    assert rest.parse_json(b'{"a": 18446744073709551615}')["a"] == 2 ** 64 - 1


def test_debug_strings_are_cut_near_256_bytes():
    text = rest.json_debug_string({"a": list(range(1000))})
    assert text.startswith('{\n    "a": [0, 1, 2, ') and 256 <= len(text) < 270


@pytest.mark.parametrize("value, single, text", [
    (0.2, True, "0.2"),
    (1.0, True, "1.0"),
    (9e6, True, "9e+06"),
    (3e-5, True, "3e-05"),
    (-0.0, True, "-0.0"),
    (1 / 3, True, "0.333333343"),
    (1 / 3, False, "0.33333333333333331"),
    (123456.0, False, "123456.0"),
    (float("nan"), True, "NaN"),
    (float("-inf"), False, "-Infinity"),
])
def test_decimals_print_as_tf_serving_prints_them(value, single, text):
    if single:
        value = float(np.float32(value))
    assert rest.format_decimal(value, single) == text


def _outputs(**arrays):
    return {name: make_tensor_proto(array) for name, array in arrays.items()}


def test_row_and_columnar_replies_are_laid_out_as_tf_serving_writes_them():
    outputs = _outputs(scores=np.array([[0.25, 0.75], [1.0, 0.0]], "float32"))
    assert rest.predict_response_json(outputs, rest.ROW) == (
        '{\n    "predictions": [[0.25, 0.75], [1.0, 0.0]\n    ]\n}'
    )
    assert rest.predict_response_json(outputs, rest.COLUMNAR) == (
        '{\n    "outputs": [\n        [\n            0.25,\n            0.75\n        ],\n'
        '        [\n            1.0,\n            0.0\n        ]\n    ]\n}'
    )
    outputs = _outputs(
        id=np.array([3, 4], "int64"), label=np.array([b"a", "é".encode()], object),
        raw_bytes=np.array([b"\x00\xff", b""], object), ok=np.array([True, False]),
    )
    rows = json.loads(rest.predict_response_json(outputs, rest.ROW))["predictions"]
    assert rows == [
        {"id": 3, "label": "a", "ok": True, "raw_bytes": {"b64": "AP8="}},
        {"id": 4, "label": "é", "ok": False, "raw_bytes": {"b64": ""}},
    ]
    columns = json.loads(rest.predict_response_json(outputs, rest.COLUMNAR))["outputs"]
    assert columns["raw_bytes"] == [{"b64": "AP8="}, {"b64": ""}]
    assert columns["id"] == [3, 4]


def test_replies_that_cannot_be_rows_are_errors():
    error = error_of(rest.predict_response_json, _outputs(x=np.float32(1)), rest.ROW)
    assert error.message == "Tensor name: x has no shape information "
    error = error_of(rest.predict_response_json,
                     _outputs(a=np.zeros(2, "int32"), b=np.zeros(3, "int32")), rest.ROW)
    assert error.message == "Tensor name: b has inconsistent batch size: 3 expecting: 2"
    assert json.loads(rest.predict_response_json(_outputs(x=np.float32(1.5)), rest.COLUMNAR)) \
        == {"outputs": 1.5}
    error = error_of(rest.predict_response_json, _outputs(x=np.zeros(1, "float16")), rest.ROW)
    assert error.message == "Failed to write JSON value for tensor type: half"


def test_examples_become_tf_examples():
    request = classification_pb2.ClassificationRequest()
    rest.fill_examples_request(rest.parse_json(json.dumps({
        "signature_name": "classify",
        "context": {"lang": "en"},
        "examples": [{"x": [1, 2], "y": 0.5, "b": {"b64": "AAE="}, "t": True, "e": []}],
    }).encode()), request)
    assert request.model_spec.signature_name == "classify"
    model_input = request.input.example_list_with_context
    assert model_input.context.features.feature["lang"].bytes_list.value == [b"en"]
    feature = model_input.examples[0].features.feature
    assert list(feature["x"].int64_list.value) == [1, 2]
    assert list(feature["y"].float_list.value) == [0.5]
    assert list(feature["b"].bytes_list.value) == [b"\x00\x01"]
    assert list(feature["t"].int64_list.value) == [1]
    assert feature["e"].WhichOneof("kind") is None
    request = regression_pb2.RegressionRequest()
    rest.fill_examples_request(rest.parse_json(b'{"examples": [{"x": 1}]}'), request)
    assert len(request.input.example_list.examples) == 1


@pytest.mark.parametrize("body, message", [
    ('{"examples": [{"x": null}]}', "Feature: x has element with unexpected JSON type: Null"),
    ('{"examples": [{"x": [[1]]}]}', "Feature: x has element with unexpected JSON type: Array"),
    ('{"examples": [{"x": {"a": 1}}]}', "Feature: x has element with unexpected JSON type: Object"),
    ('{"examples": [{"x": [1, "a"]}]}', "Unexpected element type in feature: x expecting type: "
     "int64"),
    ('{"examples": [{"x": [0.5, 1]}]}', "Unexpected element type in feature: x expecting type: "
     "float"),
    ('{"examples": [{"x": 18446744073709551615}]}',
     "Feature: x has uint64_t element. Only int64_t is supported."),
    ('{"examples": [1]}', "Example must be JSON object but got JSON Number"),
    ('{"context": [], "examples": [{}]}', "Example must be JSON object but got JSON Array"),
    ('{"x": 1}', "When method is classify, key 'examples' is expected and was not found"),
    ('{"examples": {}}', "Expecting 'examples' value to be an list/array"),
    ('{"examples": []}', "'examples' value is an empty array"),
])
def test_malformed_examples_are_invalid_argument(body, message):
    request = classification_pb2.ClassificationRequest()
    error = error_of(rest.fill_examples_request, rest.parse_json(body.encode()), request)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.message


def test_classify_and_regress_results():
    result = classification_pb2.ClassificationResult()
    row = result.classifications.add()
    row.classes.add(label="high", score=0.25)
    row.classes.add(label="low", score=0.75)
    assert rest.classification_json(result) == (
        '{\n    "results": [[["high", 0.25], ["low", 0.75]]\n    ]\n}'
    )
    regression = regression_pb2.RegressionResult()
    regression.regressions.add(value=3.0)
    regression.regressions.add(value=0.1)
    assert rest.regression_json(regression) == '{\n    "results": [3.0, 0.1]\n}'
    assert "empty" in error_of(rest.regression_json, regression_pb2.RegressionResult()).message


def test_status_and_metadata_as_tf_serving_prints_them():
    status = get_model_status_pb2.GetModelStatusResponse()
    entry = status.model_version_status.add(version=2)
    entry.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    entry.status.error_code = 0
    assert json.loads(rest.status_json(status)) == {"model_version_status": [{
        "version": "2", "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }]}
    metadata = get_model_metadata_pb2.GetModelMetadataResponse()
    metadata.model_spec.name = "m"
    metadata.model_spec.version.value = 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    signature = signatures.signature_def["serving_default"]
    signature.method_name = "tensorflow/serving/predict"
    signature.inputs["text"].name = "text:0"
    signature.inputs["text"].dtype = STRING
    signature.inputs["text"].tensor_shape.dim.add(size=-1)
    packed = any_pb2.Any()
    packed.Pack(signatures)
    metadata.metadata["signature_def"].CopyFrom(packed)
    text = rest.metadata_json(metadata)
    assert text.startswith('{\n"model_spec":{\n "name": "m",')
    parsed = json.loads(text)
    assert parsed["model_spec"]["version"] == "2"
    text_input = parsed["metadata"]["signature_def"]["signature_def"]["serving_default"][
        "inputs"]["text"]
    assert text_input == {"name": "text:0", "dtype": "DT_STRING",
                          "tensor_shape": {"dim": [{"size": "-1", "name": ""}],
                                           "unknown_rank": False}}
    metadata.ClearField("metadata")
    assert error_of(rest.metadata_json, metadata).code == grpc.StatusCode.INTERNAL


class BrokenCore:
    """A core whose every call fails unexpectedly (a bug, not a ServingError)."""

    def get_model_status(self, request, *, entrypoint=None):
        raise RuntimeError(f"no status for {request.model_spec.name} via {entrypoint}")


def test_an_unexpected_failure_is_a_json_internal_error():
    status, text = rest.RestApi(BrokenCore()).handle("GET", "/v1/models/m/versions/3", b"")
    assert status == 500
    assert json.loads(text) == {"error": "Internal error: RuntimeError: no status for m via REST"}
    status, text = rest.RestApi(BrokenCore()).handle("DELETE", "/v1/models/m", b"")
    assert status == 400 and json.loads(text) == {"error": "Malformed request: DELETE /v1/models/m"}
