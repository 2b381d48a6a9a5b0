"""A TF Serving gRPC client for the project's exports.

`ServingClient` talks to `tensorflow_model_server` (or `serving.server`) over
tensorflow-serving-api's `PredictionService` and `ModelService` stubs. Its
methods map to the export's signatures (`predict` -> `serving_default`,
`predict_ids`, `embed`, `fill_mask`); which inputs a signature takes is read
from the server's metadata (cached per model version), so arguments that do
not fit get a ValueError before anything is sent. Answers come back as numpy
arrays, strings as `str`; every failed call raises `ServingClientError`
(the gRPC status code and TF Serving's message).

CLI: `python -m serving.client --server localhost:8500 --model_name sentiment
"a gripping, funny film"` prints each text's label and probabilities
(`--json` for machine output, `--metadata`, `--status`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import tensors
from serving.errors import status_code
from serving import DEFAULT_SIGNATURE

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

# The export's two-text signatures: which input takes the first text of an
# example and which the second (TF Serving's metadata carries no order).
TEXT_PAIR_INPUTS = (("text", "text_pair"), ("question", "context"))

class ServingClientError(Exception):
    """A call the server (or the channel) answered with a non-OK status.

    `code`: the `grpc.StatusCode`; `message`: TF Serving's message (or
    gRPC's, e.g. for an unreachable server or a passed deadline).
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    def __repr__(self):
        return f"ServingClientError({self.code.name}, {self.message!r})"


class Outputs(dict):
    """A signature's outputs by name (numpy arrays); `version`: the model version that answered."""

    def __init__(self, outputs, version):
        super().__init__(outputs)
        self.version = version


# -- tensors ------------------------------------------------------------------------------


def make_ndarray(proto: tensor_pb2.TensorProto, name="output", *, decode_strings=True,
                 max_bytes=DEFAULT_MAX_MESSAGE_SIZE) -> np.ndarray:
    """A response TensorProto as a numpy array (`serving.tensors.make_ndarray`'s rules).

    Strings come back as an object array of `str` (UTF-8, undecodable bytes
    replaced), or of `bytes` with `decode_strings=False`. The array takes at
    most `max_bytes`, so that a small proto cannot claim a huge shape. Raises
    `ServingClientError` (DATA_LOSS) for a malformed proto.
    """
    try:
        array = tensors.make_ndarray(proto, max_bytes)
    except tensors.TensorDecodeError as error:
        raise ServingClientError(
            grpc.StatusCode.DATA_LOSS, f"Cannot decode output {name!r} of the response: {error}."
        ) from None
    if decode_strings and array.dtype == object:
        decoded = np.empty(array.shape, dtype=object)
        decoded.reshape(-1)[:] = [value.decode("utf-8", errors="replace")
                                  for value in array.reshape(-1)]
        return decoded
    return array


# -- signatures -------------------------------------------------------------------------


def _tensor_info(info):
    shape = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
    return {"dtype": tensors.numpy_dtype_name(info.dtype), "shape": shape}


def _signature(signature_def):
    return {
        "method_name": signature_def.method_name,
        **{side: {name: _tensor_info(info) for name, info in sorted(infos.items())}
           for side, infos in (("inputs", signature_def.inputs),
                               ("outputs", signature_def.outputs))},
    }


def _text_column(texts, what):
    """`texts` as a 1-D object array of str, or ValueError naming `what`."""
    if isinstance(texts, (str, bytes)):
        raise ValueError(f"`{what}` must be a list of strings, not one string: "
                         f"pass [{texts!r}].")
    texts = list(texts)
    if not texts:
        raise ValueError(f"`{what}` is empty: give at least one text.")
    for text in texts:
        if not isinstance(text, str):
            raise ValueError(f"`{what}` must be strings; got {type(text).__name__} ({text!r}).")
    column = np.empty(len(texts), dtype=object)
    column[:] = texts
    return column


def _id_column(values, name):
    """`values` as an int32 `[batch, seq]` array, or ValueError naming `name`."""
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D [batch, sequence]; got shape {array.shape}.")
    if array.dtype.kind not in "iub":
        raise ValueError(f"`{name}` must hold integers; got dtype {array.dtype}.")
    info = np.iinfo(np.int32)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(f"`{name}` holds values outside int32.")
    return array.astype(np.int32)


def backoff_delays(retries, backoff, rng=random):
    """The pauses before each retry: `backoff * 2**n`, jittered to between half and all of it."""
    return [rng.uniform(0.5, 1.0) * backoff * 2 ** attempt for attempt in range(retries)]


# -- the client -------------------------------------------------------------------------


class ServingClient:
    """A TF Serving gRPC client for one model.

    Args:
        target: the server's "host:port".
        model_name: the served model's name.
        version: ask for this version (an int); `version_label` for a
            labelled one (e.g. "stable"); neither: the newest the server has.
        deadline: seconds a call may take, its retries included.
        retries: how many times a call is retried when the server answers
            UNAVAILABLE (and only then), after `backoff * 2**n` seconds with
            jitter (between half and all of it).
        credentials: `grpc.ChannelCredentials` for TLS; or PEM bytes in
            `root_certificates` (the CA to trust) and, for client
            authentication, `private_key` and `certificate_chain`.
        max_message_size: the largest message sent or received, in bytes.
        options: further gRPC channel options, `[(key, value), ...]`.

    A context manager; `close()` closes the channel. Thread-safe.
    """

    def __init__(self, target, model_name, *, version=None, version_label=None, deadline=10.0,
                 retries=3, backoff=0.1, credentials=None, root_certificates=None,
                 private_key=None, certificate_chain=None,
                 max_message_size=DEFAULT_MAX_MESSAGE_SIZE, options=()):
        if not isinstance(target, str) or not target:
            raise ValueError(f"`target` must be a 'host:port' string; got {target!r}.")
        if not isinstance(model_name, str) or not model_name:
            raise ValueError(f"`model_name` must be a non-empty string; got {model_name!r}.")
        if version is not None and version_label is not None:
            raise ValueError("Give `version` or `version_label`, not both.")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                    or version < 0):
            raise ValueError(f"`version` must be an int >= 0; got {version!r}.")
        if version_label is not None and (not isinstance(version_label, str) or not version_label):
            raise ValueError(f"`version_label` must be a non-empty string; got {version_label!r}.")
        _check_positive("deadline", deadline)
        _check_positive("backoff", backoff, allow_zero=True)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"`retries` must be an int >= 0; got {retries!r}.")
        if isinstance(max_message_size, bool) or not isinstance(max_message_size, int) \
                or max_message_size < 1:
            raise ValueError("`max_message_size` must be a positive int; got "
                             f"{max_message_size!r}.")
        if credentials is not None and any(
                pem is not None for pem in (root_certificates, private_key, certificate_chain)):
            raise ValueError("Give `credentials` or the PEM arguments (root_certificates, "
                             "private_key, certificate_chain), not both.")
        if (private_key is None) != (certificate_chain is None):
            raise ValueError("Client authentication needs both `private_key` and "
                             "`certificate_chain`.")
        if credentials is None and any(
                pem is not None for pem in (root_certificates, private_key, certificate_chain)):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates, private_key=private_key,
                certificate_chain=certificate_chain)

        self.target = target
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.deadline = float(deadline)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_message_size = max_message_size
        channel_options = [
            ("grpc.max_send_message_length", max_message_size),
            ("grpc.max_receive_message_length", max_message_size),
            *options,
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._lock = threading.Lock()
        self._signatures_by_version = {}
        self._served_version = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self._channel.close()

    def __repr__(self):
        spec = (f", version={self.version}" if self.version is not None
                else f", version_label={self.version_label!r}" if self.version_label else "")
        return f"ServingClient({self.target!r}, {self.model_name!r}{spec})"

    # -- calls ------------------------------------------------------------------------

    def _model_spec(self, spec, signature_name=None):
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label is not None:
            spec.version_label = self.version_label
        if signature_name is not None:
            spec.signature_name = signature_name

    def _call(self, method, request):
        """`method(request)` within the deadline, retrying UNAVAILABLE; ServingClientError else."""
        expiry = time.monotonic() + self.deadline
        delays = backoff_delays(self.retries, self.backoff)
        attempt = 0
        while True:
            try:
                return method(request, timeout=max(expiry - time.monotonic(), 0.0))
            except grpc.RpcError as error:
                code, message = _status_of(error)
                if code != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise ServingClientError(code, message) from None
                if time.monotonic() + delays[attempt] >= expiry:
                    raise ServingClientError(code, f"{message} (no time left to retry within "
                                             f"the {self.deadline:g} s deadline)") from None
                time.sleep(delays[attempt])
                attempt += 1

    def predict_raw(self, inputs, signature_name=DEFAULT_SIGNATURE, output_filter=None, *,
                    decode_strings=True):
        """One Predict call with `inputs` as given, unchecked: {output name: array}.

        `inputs`: {input name: array-like} (see `serving.tensors.make_tensor_proto`);
        `output_filter`: the output names to ask for (all by default). Returns
        `Outputs` (a dict) whose `.version` is the version that answered.
        """
        if not isinstance(inputs, dict) or not inputs:
            raise ValueError("`inputs` must be a non-empty dict {input name: array}.")
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature_name)
        for name, values in inputs.items():
            request.inputs[name].CopyFrom(tensors.make_tensor_proto(values, name))
        if output_filter is not None:
            if isinstance(output_filter, str):
                raise ValueError("`output_filter` must be a list of output names, not a string.")
            request.output_filter.extend(output_filter)
        response = self._call(self._predictions.Predict, request)
        version = response.model_spec.version.value if response.model_spec.HasField(
            "version") else None
        with self._lock:
            self._served_version = version
        return Outputs(
            {name: make_ndarray(tensor, name, decode_strings=decode_strings,
                                max_bytes=self.max_message_size)
             for name, tensor in response.outputs.items()},
            version,
        )

    def _get_metadata(self):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(request.model_spec)
        response = self._call(self._predictions.GetModelMetadata, request)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" in response.metadata:
            response.metadata["signature_def"].Unpack(signature_defs)
        signatures = {name: _signature(signature_def)
                      for name, signature_def in sorted(signature_defs.signature_def.items())}
        version = response.model_spec.version.value if response.model_spec.HasField(
            "version") else None
        return version, signatures

    def metadata(self):
        """The model's signatures: {"model_spec": {name, version}, "signature_def": {...}}.

        Each signature: {"method_name", "inputs", "outputs"}, inputs and
        outputs {name: {"dtype": "string"|"int32"|..., "shape": [-1, ...] or
        None for unknown rank}} (-1: any size).
        """
        version, signatures = self._get_metadata()
        with self._lock:
            self._signatures_by_version[version] = signatures
            self._served_version = version
        return {"model_spec": {"name": self.model_name, "version": version},
                "signature_def": signatures}

    def status(self):
        """The model's versions: [{"version", "state", "error_code", "error_message"}].

        `state`: "START", "LOADING", "AVAILABLE", "UNLOADING", "END" (or
        "UNKNOWN"); `error_code`: the gRPC code's name ("OK" when healthy).
        """
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec)
        response = self._call(self._models.GetModelStatus, request)
        return [
            {
                "version": status.version,
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(status.state),
                "error_code": status_code(status.status.error_code).name,
                "error_message": status.status.error_message,
            }
            for status in response.model_version_status
        ]

    def signature(self, signature_name):
        """A signature's inputs and outputs (see `metadata`), cached per model version.

        ValueError when the model has no such signature.
        """
        with self._lock:
            signatures = self._signatures_by_version.get(self._served_version)
        if signatures is None:
            signatures = self.metadata()["signature_def"]
        if signature_name not in signatures:
            raise ValueError(f"Model {self.model_name!r} has no signature {signature_name!r}; "
                             f"it has {sorted(signatures)}.")
        return signatures[signature_name]

    def _checked_predict(self, signature_name, columns, output_filter):
        """Predict `columns` after checking them against the signature's inputs and outputs."""
        signature = self.signature(signature_name)
        expected = signature["inputs"]
        if set(columns) != set(expected):
            raise ValueError(
                f"Signature {signature_name!r} takes inputs {sorted(expected)}; these "
                f"arguments give {sorted(columns)}.")
        batch_sizes = {len(column) for column in columns.values()}
        if len(batch_sizes) > 1:
            raise ValueError(f"The inputs of {signature_name!r} must hold as many rows each; "
                             f"got {({name: len(c) for name, c in columns.items()})}.")
        for name, column in columns.items():
            _check_fits(signature_name, name, column, expected[name])
        if output_filter is not None:
            unknown = sorted(set(output_filter) - set(signature["outputs"]))
            if unknown:
                raise ValueError(f"Signature {signature_name!r} has no outputs {unknown}; "
                                 f"it has {sorted(signature['outputs'])}.")
        return self.predict_raw(columns, signature_name, output_filter)

    # -- the export's signatures ------------------------------------------------------

    def predict(self, texts, pairs=None, *, signature_name=DEFAULT_SIGNATURE, output_filter=None):
        """Run a text-in signature (`serving_default`) on `texts`: {output name: array}.

        `texts`: strings, one per example. `pairs`: the second string of each
        example, for a signature with two text inputs: a pair classifier's
        `text_pair`, or the contexts of a QA model (then `texts` are the
        questions). A classifier answers `label` (str, when it has label
        names), `label_id`, `probabilities` and `logits`; a QA model
        `answer`, `start`, `end`, `score`.
        """
        texts = _text_column(texts, "texts")
        inputs = self.signature(signature_name)["inputs"]
        names = sorted(inputs)
        order = next((pair for pair in TEXT_PAIR_INPUTS if set(pair) == set(names)), None)
        if len(names) == 1 and pairs is None:
            columns = {names[0]: texts}
        elif order is not None and pairs is not None:
            columns = {order[0]: texts, order[1]: _text_column(pairs, "pairs")}
        elif order is not None:
            raise ValueError(f"Signature {signature_name!r} takes {list(order)}: give the "
                             f"{order[1]!r} of each example as `pairs`.")
        elif len(names) == 1:
            raise ValueError(f"Signature {signature_name!r} takes one text per example "
                             f"({names[0]!r}): `pairs` is for two-text signatures.")
        else:
            raise ValueError(f"Signature {signature_name!r} takes inputs {names}, not texts: "
                             "use predict_ids or predict_raw.")
        return self._checked_predict(signature_name, columns, output_filter)

    def predict_ids(self, input_ids, padding_mask, segment_ids=None, *,
                    signature_name="predict_ids", output_filter=None):
        """Run `predict_ids` on ids tokenized by the caller: int `[batch, seq]` arrays.

        `segment_ids` is needed for (and only for) models that take it (BERT;
        DistilBERT takes none). Answers as the text-in signature does.
        """
        columns = {"input_ids": _id_column(input_ids, "input_ids"),
                   "padding_mask": _id_column(padding_mask, "padding_mask")}
        if segment_ids is not None:
            columns["segment_ids"] = _id_column(segment_ids, "segment_ids")
        shapes = {name: column.shape for name, column in columns.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"The id arrays must have one shape; got {shapes}.")
        return self._checked_predict(signature_name, columns, output_filter)

    def embed(self, texts, *, output_filter=None):
        """Sentence embeddings: `pooled_output` and `mean_embedding`, float32 [batch, hidden]."""
        return self._checked_predict("embed", {"text": _text_column(texts, "texts")},
                                     output_filter)

    def fill_mask(self, texts, *, output_filter=None):
        """The top tokens at each "[MASK]" of `texts`.

        Returns `tokens` (str) and `token_ids`, `[batch, masks, top_k]`,
        `scores`, and `mask_positions`, `mask_count`; slots past a row's
        masks hold "" / -1 / 0.
        """
        return self._checked_predict("fill_mask", {"text": _text_column(texts, "texts")},
                                     output_filter)


def _check_positive(name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be a finite number of seconds {bound}; got {value!r}.")


def _check_fits(signature_name, name, column, info):
    """ValueError unless `column` has the dtype and shape the signature's input `name` takes."""
    is_string = column.dtype == object
    if (info["dtype"] == "string") != is_string:
        given = "strings" if is_string else str(column.dtype)
        raise ValueError(f"Input {name!r} of {signature_name!r} takes {info['dtype']}; got "
                         f"{given}.")
    if info["dtype"] != "string" and np.dtype(column.dtype).name != info["dtype"]:
        raise ValueError(f"Input {name!r} of {signature_name!r} takes {info['dtype']}; got "
                         f"{column.dtype}.")
    shape = info["shape"]
    if shape is None:
        return
    if len(shape) != column.ndim or any(
            size != -1 and size != given for size, given in zip(shape, column.shape)):
        raise ValueError(f"Input {name!r} of {signature_name!r} takes shape {shape} (-1: any); "
                         f"got {list(column.shape)}.")


def _status_of(error):
    """The status code and details of a failed call (UNKNOWN for an error without them)."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    details = error.details() if callable(getattr(error, "details", None)) else None
    return code or grpc.StatusCode.UNKNOWN, details or str(error)


# -- CLI --------------------------------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Ask a TF Serving model server (tensorflow_model_server or serving.server) "
                    "over gRPC: predictions for texts, or the model's metadata or status.")
    parser.add_argument("texts", nargs="*", help="texts to predict, one per argument")
    parser.add_argument("--server", default="localhost:8500", help="host:port (localhost:8500)")
    parser.add_argument("--model_name", required=True)
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--version", type=int, help="a model version (default: the newest)")
    choice.add_argument("--version_label", help="a version label, e.g. stable")
    parser.add_argument("--signature_name", default=DEFAULT_SIGNATURE)
    parser.add_argument("--pair", action="append", default=None, metavar="TEXT",
                        help="the second text of each example (a text pair's second text, or "
                             "a QA context), once per text, in order")
    parser.add_argument("--deadline", type=float, default=10.0, help="seconds per call (10)")
    parser.add_argument("--retries", type=int, default=3,
                        help="retries when the server is UNAVAILABLE (3)")
    parser.add_argument("--max_message_size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE)
    parser.add_argument("--json", action="store_true", help="print JSON")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--metadata", action="store_true", help="print the model's signatures")
    mode.add_argument("--status", action="store_true", help="print the model's versions")
    parser.add_argument("--ssl_root_certs", metavar="PEM", help="CA certificates to trust (TLS)")
    parser.add_argument("--ssl_client_key", metavar="PEM", help="client key (mutual TLS)")
    parser.add_argument("--ssl_client_cert", metavar="PEM", help="client certificate (mutual TLS)")
    return parser


def _read_pem(path):
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


def _plain(value):
    """numpy values as JSON's (lists, numbers, str)."""
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _rows(outputs, count):
    """Per-example dicts of the outputs (their first axis is the batch)."""
    return [{name: _plain(array[index]) for name, array in sorted(outputs.items())
             if array.ndim and array.shape[0] == count} for index in range(count)]


def _format_row(text, row):
    if "probabilities" in row:
        label = row.get("label", row.get("label_id", ""))
        probabilities = " ".join(f"{p:.4f}" for p in row["probabilities"])
        return f"{label}\t[{probabilities}]\t{text}"
    fields = "  ".join(f"{name}={value}" for name, value in row.items())
    return f"{text}\t{fields}"


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not (args.metadata or args.status) and not args.texts:
        parser.error("give texts to predict, or --metadata or --status")
    if args.pair is not None and len(args.pair) != len(args.texts):
        parser.error(f"give one --pair per text: {len(args.texts)} texts, "
                     f"{len(args.pair)} --pair")
    try:
        with ServingClient(
            args.server, args.model_name, version=args.version, version_label=args.version_label,
            deadline=args.deadline, retries=args.retries,
            max_message_size=args.max_message_size,
            root_certificates=_read_pem(args.ssl_root_certs),
            private_key=_read_pem(args.ssl_client_key),
            certificate_chain=_read_pem(args.ssl_client_cert),
        ) as client:
            if args.metadata:
                print(json.dumps(client.metadata(), indent=None if args.json else 2))
                return 0
            if args.status:
                statuses = client.status()
                if args.json:
                    print(json.dumps(statuses))
                for status in [] if args.json else statuses:
                    error = "" if status["error_code"] == "OK" else \
                        f"\t{status['error_code']}: {status['error_message']}"
                    print(f"version {status['version']}\t{status['state']}{error}")
                return 0
            outputs = client.predict(args.texts, args.pair, signature_name=args.signature_name)
            rows = _rows(outputs, len(args.texts))
            if args.json:
                print(json.dumps({
                    "model_spec": {"name": args.model_name, "version": outputs.version,
                                   "signature_name": args.signature_name},
                    "predictions": [{"text": text, **row} for text, row in zip(args.texts, rows)],
                }))
            else:
                for text, row in zip(args.texts, rows):
                    print(_format_row(text, row))
            return 0
    except ServingClientError as error:
        print(f"error: {error.code.name}: {error.message}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
