"""TF Serving's REST API over a `ServingCore`: JSON in, the core's protos, JSON out.

A translation layer and nothing more, as TF Serving's own
(model_servers/http_rest_api_handler.cc, http_rest_api_util.cc,
http_server.cc, util/json_tensor.cc, checked against tensorflow/serving's
master, commit 9d981c5c): the URL names the model, version or label and the
API; the body becomes a PredictRequest (each input's dtype read from the
signature, fetched first with GetModelMetadata, as TF Serving's GetInfoMap
reads the SignatureDef), ClassificationRequest or RegressionRequest; the
core answers; the response is written as TF Serving writes it (rapidjson's
PrettyWriter layout, floats as `absl::StrCat` prints them, NaN and
Infinity bare, `*_bytes` string outputs as `{"b64": ...}`). Errors are
`{"error": message}` with TF Serving's HTTP status for the code.

Every request comes from an unknown client, so the JSON reader is bounded
(body size, nesting depth, number size, read time) and every failure is a
JSON error; the server keeps serving.

    GET  /v1/models/<name>[/versions/<v> | /labels/<label>]             model status
    GET  /v1/models/<name>[/versions/<v> | /labels/<label>]/metadata    signature defs
    POST /v1/models/<name>[/versions/<v> | /labels/<label>]:predict     (or :classify, :regress)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.server
import json
import logging
import math
import re
import socket
import threading
import time
import urllib.parse
import zlib

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from serving.core import SIGNATURE_DEF
from serving.errors import ServingError, invalid_argument
from serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from serving import DEFAULT_SIGNATURE
from serving.tensors import NUMPY_DTYPES, dtype_name, make_ndarray

log = logging.getLogger("serving")

JSON_CONTENT_TYPE = "application/json"

# rapidjson parses iteratively (no depth limit); Python's parser recurses, so
# nesting is bounded before parsing. A request needs about 36 levels at most:
# the document, "instances", one object per instance, a tensor of rank 32
# (serving.tensors.MAX_RANK) and a {"b64": ...} leaf.
MAX_JSON_DEPTH = 100
# Error messages quote JSON values cut to about this many bytes (json_tensor.cc).
MAX_DEBUG_STRING_BYTES = 256

_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT32 = (0, (1 << 32) - 1)
_UINT64 = (0, (1 << 64) - 1)


# -- bounded JSON parsing ----------------------------------------------------------------


class _NumberTooBig(ValueError):
    pass


def _parse_int(literal: str):
    """An integer literal as rapidjson stores it: beyond uint64, a double."""
    if len(literal) <= 20:
        value = int(literal)
        if _INT64[0] <= value <= _UINT64[1]:
            return value
    return _parse_float(literal)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise _NumberTooBig(literal)
    return value


def _first_key_wins(pairs) -> dict:
    """rapidjson's FindMember finds the first of duplicate keys; so does this."""
    obj = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, object_pairs_hook=_first_key_wins
)
_JSON_WHITESPACE = " \t\n\r"
# Python's json messages -> rapidjson's (GetParseError_En), where one maps to one.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid control character at": "Invalid encoding in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
}
_STRING_LITERAL = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _nesting_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in `body` (brackets inside strings skipped)."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # too few brackets to nest too deep
    brackets = np.frombuffer(
        _STRING_LITERAL.sub(b"", body).translate(None, _NOT_BRACKETS), dtype=np.uint8
    )
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1).astype(np.int32)
    depth, deepest = 0, 0
    for start in range(0, len(steps), 1 << 20):
        running = depth + np.cumsum(steps[start:start + (1 << 20)])
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
    return deepest


def _parse_error(message: str) -> ServingError:
    return invalid_argument(f"JSON Parse error: {message}")


def parse_json(body: bytes) -> dict:
    """The request document (a JSON object), as TF Serving's ParseJson reads it.

    Like rapidjson with kParseStopWhenDoneFlag, anything after the first
    value is ignored; NaN and Infinity are numbers. Unlike rapidjson (which
    does not validate encodings), a body that is not UTF-8 is refused:
    binary values travel as {"b64": ...}.
    """
    if not body:
        raise _parse_error("The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _parse_error(f"Invalid encoding in string. at offset: {error.start}") from None
    if _nesting_depth(body) > MAX_JSON_DEPTH:
        raise _parse_error(f"Nesting deeper than {MAX_JSON_DEPTH} levels.")
    start = len(text) - len(text.lstrip(_JSON_WHITESPACE))
    if start == len(text):
        raise _parse_error(f"The document is empty. at offset: {len(body)}")
    try:
        document, _ = _DECODER.raw_decode(text, start)
    except _NumberTooBig:
        raise _parse_error("Number too big to be stored in double.") from None
    except json.JSONDecodeError as error:
        message = _PARSE_ERRORS.get(error.msg, error.msg)
        offset = len(text[:error.pos].encode("utf-8", "surrogatepass"))
        raise _parse_error(f"{message} at offset: {offset}") from None
    if not isinstance(document, dict):
        raise _format_error(document, "Is not object")
    return document


# -- rapidjson's PrettyWriter ------------------------------------------------------------


class _Truncated(Exception):
    pass


class JsonWriter:
    """rapidjson's PrettyWriter (4-space indent), event by event, with its
    kFormatSingleLineArray switch, so replies are laid out as TF Serving's.

    With `limit`, writing stops (raising `_Truncated`) once the text reaches
    that many characters, as json_tensor.cc's JsonWriterWithLimit does.
    """

    def __init__(self, limit: int | None = None):
        self.parts: list[str] = []
        self.size = 0
        self.single_line_arrays = False
        self._levels: list[list] = []  # [in_array, value_count]
        self._limit = limit

    def text(self) -> str:
        return "".join(self.parts)

    def _put(self, text: str):
        self.parts.append(text)
        self.size += len(text)

    def _check(self):
        if self._limit is not None and self.size >= self._limit:
            raise _Truncated()

    def _prefix(self):
        self._check()
        if not self._levels:
            return
        level = self._levels[-1]
        if level[0]:
            if level[1] > 0:
                self._put(", " if self.single_line_arrays else ",")
            if not self.single_line_arrays:
                self._put("\n" + "    " * len(self._levels))
        else:
            if level[1] > 0:
                self._put(",\n" if level[1] % 2 == 0 else ": ")
            else:
                self._put("\n")
            if level[1] % 2 == 0:
                self._put("    " * len(self._levels))
        level[1] += 1

    def raw(self, text: str):
        self._prefix()
        self._put(text)

    def string(self, value: str):
        self.raw(json.dumps(value, ensure_ascii=False))

    key = string

    def start_object(self):
        self._prefix()
        self._levels.append([False, 0])
        self._put("{")

    def end_object(self):
        self._check()
        if self._levels.pop()[1]:
            self._put("\n" + "    " * len(self._levels))
        self._put("}")

    def start_array(self):
        self._prefix()
        self._levels.append([True, 0])
        self._put("[")

    def end_array(self):
        self._check()
        if self._levels.pop()[1] and not self.single_line_arrays:
            self._put("\n" + "    " * len(self._levels))
        self._put("]")


def _write_json_value(writer: JsonWriter, value):
    """A parsed JSON value, as rapidjson's Accept() replays it into a writer."""
    if isinstance(value, dict):
        writer.start_object()
        for key, item in value.items():
            writer.key(key)
            _write_json_value(writer, item)
        writer.end_object()
    elif isinstance(value, list):
        writer.start_array()
        for item in value:
            _write_json_value(writer, item)
        writer.end_array()
    elif isinstance(value, str):
        writer.string(value)
    elif value is None or isinstance(value, bool):
        writer.raw(json.dumps(value))
    elif isinstance(value, float) and not math.isfinite(value):
        writer.raw("NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity")
    else:
        writer.raw(repr(value))


def json_debug_string(value) -> str:
    """`value` on one line per array, cut near 256 bytes (for error messages)."""
    writer = JsonWriter(limit=MAX_DEBUG_STRING_BYTES)
    writer.single_line_arrays = True
    try:
        _write_json_value(writer, value)
    except _Truncated:
        pass
    return writer.text()


def json_type_name(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _format_error(value, *parts) -> ServingError:
    return invalid_argument(f"JSON Value: {json_debug_string(value)} " + "".join(parts))


def _type_error(value, dtype: int) -> ServingError:
    return invalid_argument(
        f"JSON Value: {json_debug_string(value)} Type: {json_type_name(value)} "
        f"is not of expected type: {dtype_name(dtype)}"
    )


def _status_text(error: ServingError) -> str:
    """`absl::Status::ToString()`, which TF Serving nests in some messages."""
    return f"{error.code.name}: {error.message}"


# -- JSON -> protos ------------------------------------------------------------------------


def _is_b64_object(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode_b64(value) -> bytes:
    if not _is_b64_object(value):
        raise invalid_argument(
            f"JSON Value: {json_debug_string(value)} not formatted correctly for base64 data"
        )
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \uD8xx escape
        raise _parse_error("The surrogate pair in string is invalid.") from None


def _is_int(value, bounds) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and bounds[0] <= value <= bounds[1])


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# dtype -> which JSON values it takes (json_tensor.cc, AddValueToTensor).
_ACCEPTS = {
    types_pb2.DT_FLOAT: _is_number,
    types_pb2.DT_DOUBLE: _is_number,
    types_pb2.DT_INT32: lambda v: _is_int(v, _INT32),
    types_pb2.DT_INT16: lambda v: _is_int(v, _INT32),
    types_pb2.DT_INT8: lambda v: _is_int(v, _INT32),
    types_pb2.DT_UINT8: lambda v: _is_int(v, _INT32),
    types_pb2.DT_INT64: lambda v: _is_int(v, _INT64),
    types_pb2.DT_UINT32: lambda v: _is_int(v, _UINT32),
    types_pb2.DT_UINT64: lambda v: _is_int(v, _UINT64),
    types_pb2.DT_BOOL: lambda v: isinstance(v, bool),
    types_pb2.DT_STRING: lambda v: isinstance(v, str),
}


def _dense_shape(value) -> list[int]:
    """A nested list's shape, read down its first elements (GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill_values(value, level: int, shape: list[int], dtype: int, values: list):
    """Appends the leaves of `value` to `values`, checking them against `shape` and `dtype`."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {json_debug_string(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}"
            )
        if isinstance(value, dict):
            if dtype != types_pb2.DT_STRING:
                raise _type_error(value, dtype)
            values.append(_decode_b64(value))
            return
        accepts = _ACCEPTS.get(dtype)
        if accepts is None:
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"Conversion of JSON Value: {json_debug_string(value)} to type: "
                f"{dtype_name(dtype)}",
            )
        if not accepts(value):
            raise _type_error(value, dtype)
        values.append(_utf8(value) if dtype == types_pb2.DT_STRING else value)
        return
    if level >= rank:
        raise invalid_argument(
            f"Encountered list at unexpected level: {level} expected < {rank}"
        )
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill_values(item, level + 1, shape, dtype, values)


def _value_field(dtype: int) -> str:
    return "string_val" if dtype == types_pb2.DT_STRING else NUMPY_DTYPES[dtype][1]


def _tensor_proto(dtype: int, shape: list[int], values: list) -> tensor_pb2.TensorProto:
    """A TensorProto with `values` in its typed field, as TF Serving fills it."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    if values:
        getattr(proto, _value_field(dtype)).extend(
            [float(v) for v in values] if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE)
            else values
        )
    return proto


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(size) for size in shape) + "]"


def _instances_tensors(instances: list, input_dtypes: dict[str, int]) -> dict:
    """The "instances" list (row format) as one batched tensor per input."""
    names = sorted(input_dtypes)
    first = instances[0]
    if not isinstance(first, dict) and len(names) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )

    def is_element_object(value):
        return isinstance(value, dict) and not _is_b64_object(value)

    objects = is_element_object(first)
    values = {}
    shapes = {}
    sizes = {}

    def add_item(item, name):
        if name not in input_dtypes:
            raise invalid_argument(f"JSON object: does not have named input: {name}")
        shape = _dense_shape(item)
        item_values = []
        _fill_values(item, 0, shape, input_dtypes[name], item_values)
        if name not in sizes:
            sizes[name], shapes[name] = len(item_values), shape
        elif sizes[name] != len(item_values):
            raise invalid_argument(
                f"Expecting tensor size: {sizes[name]} but got: {len(item_values)}"
            )
        elif shapes[name] != shape:
            raise invalid_argument(
                f"Expecting shape {_shape_text(shapes[name])} but got: {_shape_text(shape)}"
            )
        values.setdefault(name, []).extend(item_values)

    for count, element in enumerate(instances):
        if objects:
            if not is_element_object(element):
                raise invalid_argument(
                    f"Expecting object but got list at item {count} of input list"
                )
            for name, item in element.items():
                try:
                    add_item(item, name)
                except ServingError as error:
                    raise invalid_argument(
                        f"Failed to process element: {count} key: {name} of 'instances' "
                        f"list. Error: {_status_text(error)}"
                    ) from None
            if set(element) != set(names):
                raise invalid_argument(
                    f"Failed to process element: {count} of 'instances' list. JSON object: "
                    f"{json_debug_string(element)} keys must be equal to: {','.join(names)}"
                )
        else:
            if is_element_object(element):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {count} of input list"
                )
            try:
                add_item(element, names[0])
            except ServingError as error:
                raise invalid_argument(
                    f"Failed to process element: {count} of 'instances' list. "
                    f"Error: {_status_text(error)}"
                ) from None
    return {
        name: _tensor_proto(input_dtypes[name], [len(instances), *shapes[name]], values[name])
        for name in values
    }


def _inputs_tensors(inputs, input_dtypes: dict[str, int]) -> dict:
    """The "inputs" value (columnar format) as one tensor per input."""
    names = sorted(input_dtypes)
    if not isinstance(inputs, dict) or _is_b64_object(inputs):
        if len(names) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        items = {names[0]: inputs}
    else:
        items = {}
        for name in names:
            if name not in inputs:
                raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
            items[name] = inputs[name]
    tensors = {}
    for name, item in items.items():
        shape = _dense_shape(item)
        values = []
        _fill_values(item, 0, shape, input_dtypes[name], values)
        tensors[name] = _tensor_proto(input_dtypes[name], shape, values)
    return tensors


ROW, COLUMNAR = "row", "columnar"


def _fill_signature_name(document: dict, request):
    if "signature_name" in document:
        if not isinstance(document["signature_name"], str):
            raise _format_error(
                document,
                "not formatted correctly. 'signature_name' key must be a string value.",
            )
        request.model_spec.signature_name = document["signature_name"]


def fill_predict_request(document: dict, input_dtypes, request: predict_pb2.PredictRequest):
    """Fills `request.inputs` from a parsed predict body; returns ROW or COLUMNAR.

    `input_dtypes(signature_name)` gives {input alias: dtype enum} for the
    signature the request names (FillPredictRequestFromJson's get_tensorinfo_map).
    """
    _fill_signature_name(document, request)
    signature_name = request.model_spec.signature_name
    dtypes = input_dtypes(signature_name)
    if not dtypes:
        raise invalid_argument(
            f"Failed to get input map for signature: {signature_name or 'DEFAULT'}"
        )
    if "instances" in document:
        if "inputs" in document:
            raise _format_error(
                document, "Not formatted correctly expecting only one of 'inputs' or "
                "'instances' keys to exist "
            )
        instances = document["instances"]
        if not isinstance(instances, list):
            raise _format_error(document, "Expecting 'instances' to be an list/array")
        if not instances:
            raise _format_error(document, "No values in 'instances' array")
        tensors, request_format = _instances_tensors(instances, dtypes), ROW
    elif "inputs" in document:
        tensors, request_format = _inputs_tensors(document["inputs"], dtypes), COLUMNAR
    else:
        raise invalid_argument("Missing 'inputs' or 'instances' key")
    for name, tensor in tensors.items():
        request.inputs[name].CopyFrom(tensor)
    return request_format


_FEATURE_KIND_NAMES = {
    "bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN",
}


def _add_feature_value(value, name: str, feature, kinds: list):
    """One JSON value into `feature` (AddValueToFeature); `kinds` holds the kind chosen."""
    if value is None or isinstance(value, list) or (
        isinstance(value, dict) and not _is_b64_object(value)
    ):
        raise invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {json_type_name(value)}"
        )
    if isinstance(value, bool):
        kind, item = "int64_list", int(value)
    elif isinstance(value, dict):
        kind, item = "bytes_list", None
    elif isinstance(value, str):
        kind, item = "bytes_list", _utf8(value)
    elif isinstance(value, float):
        kind, item = "float_list", value
    else:
        if value > _INT64[1]:
            raise invalid_argument(
                f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
        kind, item = "int64_list", value
    if kinds and kinds[0] != kind:
        raise invalid_argument(
            f"Unexpected element type in feature: {name} expecting type: "
            f"{_FEATURE_KIND_NAMES[kinds[0]]}"
        )
    if item is None:
        item = _decode_b64(value)
    kinds[:1] = [kind]
    getattr(feature, kind).value.append(item)


def _fill_example(value, example):
    """A JSON object of features into a tf.Example (MakeExampleFromJsonObject)."""
    if not isinstance(value, dict):
        raise invalid_argument(
            f"Example must be JSON object but got JSON {json_type_name(value)}"
        )
    for name, content in value.items():
        feature = example.features.feature[name]
        kinds: list = []
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature, kinds)


def fill_examples_request(document: dict, request):
    """A classify/regress body ({"examples": [...], "context": {...}}) into `request`."""
    _fill_signature_name(document, request)
    model_input = request.input
    has_context = "context" in document
    if has_context:
        _fill_example(document["context"], model_input.example_list_with_context.context)
    if "examples" not in document:
        raise _format_error(
            document, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise _format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(document, "'examples' value is an empty array")
    target = (model_input.example_list_with_context.examples if has_context
              else model_input.example_list.examples)
    for value in examples:
        _fill_example(value, target.add())


# -- protos -> JSON ------------------------------------------------------------------------


def format_decimal(value: float, single_precision: bool) -> str:
    """A float as TF Serving's WriteDecimal prints it: "%g", or full precision
    if that does not round-trip; ".0" on whole numbers; NaN, Infinity bare."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = "%g" % value
    parsed = float(text)
    if single_precision:
        round_trips = np.float32(parsed) == np.float32(value)
    else:
        round_trips = parsed == value
    if not round_trips:
        text = "%.*g" % (9 if single_precision else 17, value)
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _scalar_writer(dtype: int, as_bytes: bool):
    """How one element of a `dtype` tensor is written (AddSingleValueAndAdvance)."""
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        single = dtype == types_pb2.DT_FLOAT
        return lambda writer, value: writer.raw(format_decimal(value, single))
    if dtype == types_pb2.DT_BOOL:
        return lambda writer, value: writer.raw("true" if value else "false")
    if dtype == types_pb2.DT_STRING:
        if as_bytes:
            def write_b64(writer, value):
                writer.start_object()
                writer.key("b64")
                writer.string(base64.b64encode(value).decode("ascii"))
                writer.end_object()
            return write_b64
        # rapidjson writes the bytes as they are; invalid UTF-8 becomes U+FFFD
        # here so that the reply stays JSON (binary outputs belong in *_bytes).
        return lambda writer, value: writer.string(value.decode("utf-8", "replace"))
    if dtype in _ACCEPTS:  # the integer types
        return lambda writer, value: writer.raw(str(int(value)))
    raise invalid_argument(f"Failed to write JSON value for tensor type: {dtype_name(dtype)}")


def _write_tensor(writer: JsonWriter, value, write_scalar):
    """A tensor's values (a nested list from `tolist()`) as nested arrays (AddTensorValues)."""
    if not isinstance(value, list):
        write_scalar(writer, value)
        return
    writer.start_array()
    for item in value:
        _write_tensor(writer, item, write_scalar)
    writer.end_array()


def _output_arrays(outputs) -> list[tuple[str, object, object]]:
    """(alias, values as nested lists, scalar writer) per output, in alias order."""
    arrays = []
    for name in sorted(outputs):
        proto = outputs[name]
        array = make_ndarray(proto)
        as_bytes = proto.dtype == types_pb2.DT_STRING and name.endswith("_bytes")
        arrays.append((name, array, _scalar_writer(proto.dtype, as_bytes)))
    return arrays


def predict_response_json(outputs, request_format: str) -> str:
    """A PredictResponse's outputs as {"predictions": ...} (ROW) or {"outputs": ...}."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    arrays = _output_arrays(outputs)
    writer = JsonWriter()
    writer.start_object()
    many = len(arrays) > 1
    if request_format == ROW:
        batch_size = None
        for name, array, _ in arrays:
            if array.ndim == 0:
                raise invalid_argument(f"Tensor name: {name} has no shape information ")
            if batch_size is not None and array.shape[0] != batch_size:
                raise invalid_argument(
                    f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} "
                    f"expecting: {batch_size}"
                )
            batch_size = array.shape[0]
        rows = [(name, array.tolist(), write) for name, array, write in arrays]
        writer.key("predictions")
        writer.start_array()
        for item in range(batch_size):
            if many:
                writer.start_object()
            writer.single_line_arrays = True
            for name, values, write in rows:
                if many:
                    writer.key(name)
                _write_tensor(writer, values[item], write)
            writer.single_line_arrays = False
            if many:
                writer.end_object()
        writer.end_array()
    else:
        writer.key("outputs")
        if many:
            writer.start_object()
        for name, array, write in arrays:
            if many:
                writer.key(name)
            _write_tensor(writer, array.tolist(), write)
        if many:
            writer.end_object()
    writer.end_object()
    return writer.text()


def classification_json(result) -> str:
    """A ClassificationResult as {"results": [[[label, score], ...], ...]}."""
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    writer = JsonWriter()
    writer.start_object()
    writer.key("results")
    writer.start_array()
    for classification in result.classifications:
        writer.single_line_arrays = True
        writer.start_array()
        for item in classification.classes:
            writer.start_array()
            writer.string(item.label)
            writer.raw(format_decimal(item.score, True))
            writer.end_array()
        writer.end_array()
        writer.single_line_arrays = False
    writer.end_array()
    writer.end_object()
    return writer.text()


def regression_json(result) -> str:
    """A RegressionResult as {"results": [value, ...]}."""
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    writer = JsonWriter()
    writer.start_object()
    writer.key("results")
    writer.single_line_arrays = True
    writer.start_array()
    for regression in result.regressions:
        writer.raw(format_decimal(regression.value, True))
    writer.end_array()
    writer.end_object()
    return writer.text()


def error_json(message: str) -> str:
    writer = JsonWriter()
    writer.start_object()
    writer.key("error")
    writer.string(message)
    writer.end_object()
    return writer.text()


def _message_json(message, preserve_names: bool) -> str:
    """protobuf's MessageToJsonString with add_whitespace and every field printed."""
    return json_format.MessageToJson(
        message, preserving_proto_field_name=preserve_names, indent=1,
        always_print_fields_with_no_presence=True, ensure_ascii=False,
    ) + "\n"


def status_json(response: get_model_status_pb2.GetModelStatusResponse) -> str:
    return _message_json(response, preserve_names=False)


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> str:
    """As TF Serving's ToJsonString: model_spec and the unpacked SignatureDefMap, joined."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    if SIGNATURE_DEF not in response.metadata:
        raise ServingError(
            grpc.StatusCode.INTERNAL,
            "Failed to find 'signature_def' key in the GetModelMetadataResponse metadata map.",
        )
    if not response.metadata[SIGNATURE_DEF].Unpack(signature_map):
        raise ServingError(
            grpc.StatusCode.INTERNAL, "Failed to unpack 'Any' object to 'SignatureDefMap'."
        )
    return (
        "{\n\"model_spec\":" + _message_json(response.model_spec, True) + ",\n"
        + "\"metadata\": {\"signature_def\": " + _message_json(signature_map, True) + "}\n}\n"
    )


# -- the API: (method, path, body) -> (status, body) --------------------------------------

_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?",
    re.IGNORECASE,
)
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)


def _model_spec(spec, name: str, version: str | None, label: str | None):
    """FillModelSpecWithNameVersionAndLabel, after ParseModelInfo's decoding."""
    spec.name = urllib.parse.unquote(name)
    if version:
        if len(version) > 19 or int(version) > _INT64[1]:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    if label:
        spec.version_label = urllib.parse.unquote(label)


def _internal_error(error: Exception) -> ServingError:
    return ServingError(
        grpc.StatusCode.INTERNAL, f"Internal error: {type(error).__name__}: {error}"
    )


class RestApi:
    """TF Serving's HttpRestApiHandler over `core`: no sockets, just requests.

    `handle(method, path, body)` returns (HTTP status, JSON text) for a path
    under /v1/; the core records metrics with entrypoint "REST".
    """

    ENTRYPOINT = "REST"

    def __init__(self, core):
        self.core = core

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str]:
        try:
            return 200, self._process(method, path, body)
        except ServingError as error:
            return error.http_status, error_json(error.message)
        except Exception as error:  # the client gets a status, never a traceback
            log.exception("REST %s %s failed", method, path)
            error = _internal_error(error)
            return error.http_status, error_json(error.message)

    def _process(self, method: str, path: str, body: bytes) -> str:
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICTION_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, api = match.groups()
            process = {
                "predict": self._predict, "classify": self._classify, "regress": self._regress,
            }.get(api)
            if process is None:  # matched case-insensitively, dispatched exactly
                raise malformed
            return process(name, version, label, body)
        if method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label, subresource = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            if subresource == "metadata":
                return self._metadata(name, version, label)
            return self._status(name, version, label)
        raise malformed

    def _signature_inputs(self, model_spec, signature_name: str) -> dict[str, int]:
        """{alias: dtype} of a signature's inputs (TF Serving's GetInfoMap)."""
        signatures = self.core.signature_defs(model_spec)
        name = signature_name or DEFAULT_SIGNATURE
        if name not in signatures:
            raise invalid_argument(
                f"Serving signature name: \"{name}\" not found in signature def"
            )
        inputs = signatures[name].inputs
        return {alias: info.dtype for alias, info in inputs.items()}

    def _predict(self, name, version, label, body) -> str:
        request = predict_pb2.PredictRequest()
        _model_spec(request.model_spec, name, version, label)
        request_format = fill_predict_request(
            parse_json(body),
            lambda signature: self._signature_inputs(request.model_spec, signature),
            request,
        )
        response = self.core.predict(request, entrypoint=self.ENTRYPOINT)
        return predict_response_json(response.outputs, request_format)

    def _classify(self, name, version, label, body) -> str:
        request = classification_pb2.ClassificationRequest()
        _model_spec(request.model_spec, name, version, label)
        fill_examples_request(parse_json(body), request)
        response = self.core.classify(request, entrypoint=self.ENTRYPOINT)
        return classification_json(response.result)

    def _regress(self, name, version, label, body) -> str:
        request = regression_pb2.RegressionRequest()
        _model_spec(request.model_spec, name, version, label)
        fill_examples_request(parse_json(body), request)
        response = self.core.regress(request, entrypoint=self.ENTRYPOINT)
        return regression_json(response.result)

    def _status(self, name, version, label) -> str:
        request = get_model_status_pb2.GetModelStatusRequest()
        _model_spec(request.model_spec, name, version, label)
        return status_json(self.core.get_model_status(request, entrypoint=self.ENTRYPOINT))

    def _metadata(self, name, version, label) -> str:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[SIGNATURE_DEF])
        _model_spec(request.model_spec, name, version, label)
        return metadata_json(self.core.get_model_metadata(request, entrypoint=self.ENTRYPOINT))


# -- the HTTP server -----------------------------------------------------------------------


class _BodyError(Exception):
    """A body that cannot be read: answered with `error`; the connection then closes."""

    def __init__(self, error: ServingError):
        super().__init__(error.message)
        self.error = error


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "keras-bert-kit-serving"

    def version_string(self):
        return self.server_version

    def setup(self):
        # Bounds every read and write: an idle keep-alive connection, a slow or
        # lying client (a Content-Length larger than what arrives) or one that
        # never reads its reply frees its thread after `read_timeout` seconds.
        self.timeout = self.server.read_timeout
        super().setup()
        self.server.connection_opened(self)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.connection_closed(self)

    def handle(self):
        try:
            super().handle()
        except OSError as error:  # the client went away, or timed out
            log.debug("REST connection from %s ended: %s", self.client_address, error)

    def log_message(self, format, *args):
        log.debug("REST %s " + format, self.address_string(), *args)

    # Every method TF Serving's handler sees answers alike: GET and POST route,
    # the others are "Malformed request", OPTIONS is the CORS preflight.
    def do_GET(self):
        self._respond()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, headers too large,
        unknown method) as JSON, like every other error."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # garbage, most likely: answer with a status line
            self.request_version = "HTTP/1.0"
        text = message or explain or self.responses.get(code, ("Error",))[0]
        if code == 501:  # no such HTTP method: TF Serving's libevent answers 400
            code, text = 400, f"Malformed request: {self.command} {self.path}"
        self._send(code, error_json(text), JSON_CONTENT_TYPE)

    def handle_expect_100(self):
        # An oversized body is refused before the client sends it.
        try:
            length = self._content_length()
        except _BodyError as error:
            self._send_error(error.error)
            return False
        if length is not None and length > self.server.max_request_bytes:
            self._send_error(self._too_large(length))
            return False
        return super().handle_expect_100()

    def _respond(self):
        server = self.server
        server.request_started(self)
        try:
            try:
                body = self._read_body()
            except _BodyError as error:
                self._send_error(error.error)
                return
            # http.server decodes the request line as Latin-1; URLs are UTF-8.
            path = urllib.parse.urlsplit(self.path).path.encode("latin-1").decode(
                "utf-8", "replace"
            )
            if server.metrics is not None and path == server.metrics_path:
                self._send(200, server.metrics.render(), METRICS_CONTENT_TYPE)
            elif self.command == "OPTIONS":
                self._preflight()
            elif _API_PATH.fullmatch(path):
                status, text = server.api.handle(self.command, path, body)
                self._send(status, text, JSON_CONTENT_TYPE)
            else:
                self._send_error(ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"No handler for {self.command} {path}: TF Serving's REST API is under /v1/",
                ), close=False)
        except OSError:
            raise
        except Exception as error:  # a status for the client, never a traceback
            log.exception("REST %s %s failed", self.command, self.path)
            self._send_error(_internal_error(error))
        finally:
            if server.request_finished(self):
                self.close_connection = True

    def _preflight(self):
        if re.search(r"https?://", self.headers.get("Origin", "")):
            self._send(200, "", JSON_CONTENT_TYPE)
        else:
            self._send_error(ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, "Origin header is missing in CORS preflight"
            ), close=False)

    def _send_error(self, error: ServingError, close: bool = True):
        if close:
            self.close_connection = True
        self._send(error.http_status, error_json(error.message), JSON_CONTENT_TYPE)

    def _send(self, status: int, text: str, content_type: str):
        data = text.encode("utf-8", "replace")
        if self.server.stopping():
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    # -- the body, bounded in size and time -----------------------------------------------

    def _too_large(self, length) -> ServingError:
        # TF Serving's HTTP server reads bodies of any size; this one refuses
        # what --max_request_bytes refuses over gRPC, with gRPC's code for it
        # (RESOURCE_EXHAUSTED, HTTP 429).
        return ServingError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"Request body of {length} bytes is larger than the maximum of "
            f"{self.server.max_request_bytes} bytes (max_request_bytes).",
        )

    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            raise _BodyError(invalid_argument(f"Invalid Content-Length header: {value!r}"))
        return int(value)

    def _read_body(self) -> bytes:
        deadline = time.monotonic() + self.server.read_timeout
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = None if chunked else self._content_length()
        if chunked:
            body = self._read_chunked(deadline)
        elif length is None:
            # No Content-Length: no body, as for TF Serving's HTTP server; any
            # bytes the client sends anyway must not be read as the next request.
            self.close_connection = True
            return b""
        elif length > self.server.max_request_bytes:
            # Read and dropped (within the time bound), so that the client,
            # still sending, is not reset before it reads the refusal.
            with contextlib.suppress(_BodyError):
                self._read_exactly(length, deadline, keep=False)
            raise _BodyError(self._too_large(length))
        else:
            body = self._read_exactly(length, deadline)
        if "gzip" in self.headers.get("Content-Encoding", "").lower():
            body = self._gunzip(body)
        return body

    def _read_exactly(self, length: int, deadline: float, keep: bool = True) -> bytes:
        parts, received = [], 0
        while received < length:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError()
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(length - received, 1 << 16))
            except (TimeoutError, OSError):
                chunk = None
            finally:
                self.connection.settimeout(self.server.read_timeout)
            if not chunk:
                raise _BodyError(invalid_argument(
                    f"Request body incomplete: {received} of {length} bytes arrived "
                    f"(Content-Length) within {self.server.read_timeout:g} s."
                ))
            if keep:
                parts.append(chunk)
            received += len(chunk)
        return b"".join(parts)

    def _read_line(self, deadline: float) -> bytes:
        self.connection.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            line = self.rfile.readline(1024)
        except (TimeoutError, OSError):
            line = b""
        finally:
            self.connection.settimeout(self.server.read_timeout)
        if not line.endswith(b"\n"):
            raise _BodyError(invalid_argument("Request body incomplete: a chunk was cut short."))
        return line

    def _read_chunked(self, deadline: float) -> bytes:
        parts, received = [], 0
        while True:
            size_text = self._read_line(deadline).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BodyError(
                    invalid_argument(f"Invalid chunk size {size_text[:32]!r} in chunked body.")
                ) from None
            if size == 0:
                while self._read_line(deadline).strip():  # trailers, up to the blank line
                    pass
                return b"".join(parts)
            received += size
            if received > self.server.max_request_bytes:
                raise _BodyError(self._too_large(f"more than {received - size}"))
            parts.append(self._read_exactly(size, deadline))
            self._read_line(deadline)

    def _gunzip(self, body: bytes) -> bytes:
        limit = self.server.max_request_bytes
        decompressor = zlib.decompressobj(wbits=31)
        try:
            data = decompressor.decompress(body, limit + 1)
        except zlib.error:
            raise _BodyError(invalid_argument("Failed to uncompress the gzipped body")) from None
        if len(data) > limit:
            raise _BodyError(self._too_large(f"more than {limit} (uncompressed)"))
        return data


class _HttpServer(http.server.ThreadingHTTPServer):
    """One thread per connection, tracked so that `close` can wait for them with a bound.

    (ThreadingHTTPServer's own block_on_close joins its threads without a
    time limit, so a stuck client could hold a shutdown forever.)
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, address, api, *, max_request_bytes, read_timeout, metrics, metrics_path):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.api = api
        self.max_request_bytes = max_request_bytes
        self.read_timeout = read_timeout
        self.metrics = metrics
        self.metrics_path = metrics_path
        self._state_lock = threading.Lock()
        self._connections: dict[_Handler, bool] = {}  # handler -> busy
        self._connection_threads: set[threading.Thread] = set()
        self._stopping = False
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address),
            name="rest-connection", daemon=True,
        )
        with self._state_lock:
            self._connection_threads.add(thread)
        thread.start()

    def _serve_connection(self, request, client_address):
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._state_lock:
                self._connection_threads.discard(threading.current_thread())

    def handle_error(self, request, client_address):
        log.debug("REST connection from %s failed", client_address, exc_info=True)

    def connection_opened(self, handler):
        with self._state_lock:
            self._connections[handler] = False
            stopping = self._stopping
        if stopping:
            _shutdown(handler.connection, socket.SHUT_RD)

    def connection_closed(self, handler):
        with self._state_lock:
            self._connections.pop(handler, None)

    def request_started(self, handler):
        with self._state_lock:
            self._connections[handler] = True

    def stopping(self) -> bool:
        with self._state_lock:
            return self._stopping

    def request_finished(self, handler) -> bool:
        """Marks `handler` idle; True when the server is stopping (close the connection)."""
        with self._state_lock:
            self._connections[handler] = False
            return self._stopping

    def close(self, timeout: float):
        """Stops accepting, lets requests in flight finish (up to `timeout` s), closes all."""
        self.shutdown()
        self.server_close()
        with self._state_lock:
            self._stopping = True
            idle = [handler for handler, busy in self._connections.items() if not busy]
        for handler in idle:  # wakes a keep-alive connection waiting for its next request
            _shutdown(handler.connection, socket.SHUT_RD)
        deadline = time.monotonic() + timeout
        for thread in self._snapshot():
            thread.join(max(deadline - time.monotonic(), 0))
        with self._state_lock:
            stuck = list(self._connections)
        for handler in stuck:
            _shutdown(handler.connection, socket.SHUT_RDWR)
        deadline = time.monotonic() + 1.0
        for thread in self._snapshot():
            thread.join(max(deadline - time.monotonic(), 0))

    def _snapshot(self):
        with self._state_lock:
            return list(self._connection_threads)


def _shutdown(connection, how):
    try:
        connection.shutdown(how)
    except OSError:
        pass  # already closed by the client


class RestServer:
    """TF Serving's REST API for `core` on `host:port` (port 0: a free one, see `.port`).

    Bodies over `max_request_bytes` are refused (RESOURCE_EXHAUSTED, 429);
    every read and write on a connection is bounded by `read_timeout`
    seconds. With `metrics` and `metrics_path`, GET `metrics_path` returns
    `metrics.render()` (Prometheus' text format).
    """

    def __init__(self, core, host: str, port: int, *, max_request_bytes: int,
                 metrics=None, metrics_path: str | None = None, read_timeout: float = 30.0):
        if max_request_bytes <= 0:
            raise ValueError(f"max_request_bytes must be positive; got {max_request_bytes}.")
        if read_timeout <= 0:
            raise ValueError(f"read_timeout must be positive; got {read_timeout}.")
        if (metrics is None) != (metrics_path is None):
            raise ValueError("Give both metrics and metrics_path, or neither.")
        self.api = RestApi(core)
        self._address = (host, port)
        self._options = dict(
            max_request_bytes=max_request_bytes, read_timeout=read_timeout,
            metrics=metrics, metrics_path=metrics_path,
        )
        self._server = None
        self._thread = None
        self.port = None

    def start(self):
        """Binds the port and serves in a background thread."""
        self._server = _HttpServer(self._address, self.api, **self._options)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name="rest-server", daemon=True,
        )
        self._thread.start()
        log.info("Exporting HTTP/REST API at:%s:%d ...", self._address[0], self.port)
        return self

    def stop(self, timeout: float = 30.0):
        """Stops accepting; requests in flight get up to `timeout` s to finish."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close(timeout)
        self._thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
