"""One loaded model version, as TF Serving holds a `SavedModelBundle`.

The `serve` MetaGraphDef is loaded into its own graph and TF1 session
(running the init ops); a SignatureDef runs by feeding and fetching the
tensor names it lists. The TF2 functions are never called, so a model that
works here works in `tensorflow_model_server`.
"""

from __future__ import annotations

import os
import threading

import grpc
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers TF Text's ops, which TF Serving links in)
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    regression_pb2,
)

from keras_bert_kit.export.warmup import MAX_WARMUP_RECORDS, WARMUP_FILE, read_warmup_requests

from serving import DEFAULT_SIGNATURE
from serving.errors import ServingError, from_tf_error, invalid_argument
from serving.tensors import (
    TensorDecodeError,
    dtype_name,
    make_ndarray,
    make_tensor_proto,
    tensor_shape,
)

# ModelVersionStatus.State names, as GetModelStatus reports them.
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"

def signature_name_of(model_spec) -> str:
    return model_spec.signature_name or DEFAULT_SIGNATURE

def _request_tensor(info, proto, alias: str) -> np.ndarray:
    """The value of input `alias`, once its declared dtype and shape fit the signature.

    Checked before any value is decoded; every problem is INVALID_ARGUMENT
    naming the input.
    """
    try:
        shape = tensor_shape(proto)
    except TensorDecodeError as error:
        raise invalid_argument(f"Input \"{alias}\": {error}.") from None
    dtype = proto.dtype
    if dtype != info.dtype:
        raise invalid_argument(
            f"Input \"{alias}\" must be {dtype_name(info.dtype)} (the signature's dtype); "
            f"got {dtype_name(dtype)}."
        )
    expected = [dim.size for dim in info.tensor_shape.dim]
    if not info.tensor_shape.unknown_rank and (len(expected) != len(shape) or any(
        size not in (-1, actual) for size, actual in zip(expected, shape)
    )):
        shown = ", ".join("?" if size == -1 else str(size) for size in expected)
        raise invalid_argument(
            f"Input \"{alias}\" must have shape [{shown}]; got {list(shape)}."
        )
    try:
        return make_ndarray(proto)
    except TensorDecodeError as error:
        raise invalid_argument(f"Input \"{alias}\": {error}.") from None

def _serialized_examples(model_input) -> np.ndarray:
    """The tf.Examples of an `Input` proto, serialized (context merged into each)."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        examples = list(model_input.example_list.examples)
    elif kind == "example_list_with_context":
        context = model_input.example_list_with_context.context
        examples = []
        for example in model_input.example_list_with_context.examples:
            merged = type(example)()
            merged.CopyFrom(context)
            merged.MergeFrom(example)
            examples.append(merged)
    else:
        raise invalid_argument("Input is empty.")
    if not examples:
        raise invalid_argument("Input is empty.")
    return np.array([example.SerializeToString() for example in examples], dtype=object)

class ServableVersion:
    """A loaded version: its session, its signatures, and its in-flight requests.

    `acquire()`/`release()` bracket every request; `unload()` waits until
    none is in flight before closing the session, so retiring a version
    never fails a request already routed to it.
    """

    def __init__(self, name: str, version: int, path: str, batcher_factory=None):
        self.name = name
        self.version = version
        self.path = path
        self._batcher_factory = batcher_factory
        self._batchers = {}
        self._in_flight = 0
        self._idle = threading.Condition()
        self._closed = False
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        try:
            with self.graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(
                    self.session, [tf.saved_model.SERVING], path
                )
        except BaseException:
            self.session.close()
            raise
        self.signature_defs = dict(meta_graph.signature_def)

    # -- lifetime ---------------------------------------------------------------------

    def acquire(self):
        with self._idle:
            self._in_flight += 1

    def release(self):
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def unload(self):
        """Waits for the requests in flight, then frees the session."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0)
            self._closed = True
        for batcher in self._batchers.values():
            batcher.close()
        self.session.close()

    # -- signatures -------------------------------------------------------------------

    def signature(self, name: str):
        try:
            return self.signature_defs[name]
        except KeyError:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"Serving signature key \"{name}\" not found.",
            ) from None

    def _run(self, signature_name, signature, feeds: dict[str, np.ndarray]) -> dict:
        """Every output of `signature` on `feeds` ({input alias: array})."""
        batchable = self._batcher_factory is not None and all(
            value.ndim > 0 for value in feeds.values()
        )
        if batchable:
            with self._idle:
                batcher = self._batchers.get(signature_name)
                if batcher is None:
                    batcher = self._batchers[signature_name] = self._batcher_factory(
                        lambda inputs: self._session_run(signature, inputs),
                        f"{self.name}/{self.version}/{signature_name}",
                    )
            return batcher.submit(feeds)
        return self._session_run(signature, feeds)

    def _session_run(self, signature, feeds):
        feed_dict = {signature.inputs[alias].name: value for alias, value in feeds.items()}
        fetches = {alias: info.name for alias, info in signature.outputs.items()}
        try:
            return self.session.run(fetches, feed_dict=feed_dict)
        except tf.errors.OpError as error:
            raise from_tf_error(error) from None

    # -- the APIs ---------------------------------------------------------------------

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        signature_name = signature_name_of(request.model_spec)
        signature = self.signature(signature_name)
        expected, sent = set(signature.inputs), set(request.inputs)
        if sent != expected:
            if len(sent) == len(expected):
                unknown = sorted(sent - expected)[0]
                raise invalid_argument(
                    f"input tensor alias not found in signature: {unknown}. Inputs expected "
                    f"to be in the set {{{','.join(sorted(expected))}}}."
                )
            raise invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
            )
        aliases = list(request.output_filter)
        for alias in aliases:
            if alias not in signature.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {{{','.join(sorted(signature.outputs))}}}."
                )
        if len(set(aliases)) != len(aliases):
            duplicate = next(a for a in aliases if aliases.count(a) > 1)
            raise invalid_argument(f"duplicate output tensor alias: {duplicate}")
        feeds = {}
        for alias, proto in request.inputs.items():
            feeds[alias] = _request_tensor(signature.inputs[alias], proto, alias)
        outputs = self._run(signature_name, signature, feeds)
        response = predict_pb2.PredictResponse()
        self._fill_model_spec(response.model_spec, signature_name)
        for alias in aliases or signature.outputs:
            response.outputs[alias].CopyFrom(make_tensor_proto(outputs[alias], alias))
        return response

    def _examples_signature(self, request, outputs_wanted, api):
        signature_name = signature_name_of(request.model_spec)
        signature = self.signature_defs.get(signature_name)
        if signature is None:
            raise invalid_argument(f"No signature was found with the name: {signature_name}")
        if list(signature.inputs) != ["inputs"]:
            raise invalid_argument(
                f"Expected one input Tensor named \"inputs\" for {api}; signature "
                f"\"{signature_name}\" takes {sorted(signature.inputs)}."
            )
        if signature.inputs["inputs"].dtype != types_pb2.DT_STRING:
            raise invalid_argument(f"The {api} signature's \"inputs\" must be string.")
        if not set(outputs_wanted) & set(signature.outputs):
            raise invalid_argument(
                f"Expected {api} signature outputs to contain at least one of "
                + " or ".join(f"\"{name}\"" for name in outputs_wanted)
                + f". Signature \"{signature_name}\" has {sorted(signature.outputs)}."
            )
        examples = _serialized_examples(request.input)
        outputs = self._run(signature_name, signature, {"inputs": examples})
        for alias in set(outputs_wanted) & set(outputs):
            if np.shape(outputs[alias])[:1] != (len(examples),):
                raise invalid_argument(
                    f"Expected {alias} output batch size of {len(examples)}; got "
                    f"shape {list(np.shape(outputs[alias]))}."
                )
        return signature_name, outputs

    def classify(self, request) -> classification_pb2.ClassificationResponse:
        signature_name, outputs = self._examples_signature(
            request, ("classes", "scores"), "classification"
        )
        classes, scores = outputs.get("classes"), outputs.get("scores")
        response = classification_pb2.ClassificationResponse()
        self._fill_model_spec(response.model_spec, signature_name)
        rows = len(classes) if classes is not None else len(scores)
        for row in range(rows):
            classification = response.result.classifications.add()
            width = (classes if classes is not None else scores).reshape(rows, -1).shape[1]
            for column in range(width):
                item = classification.classes.add()
                if classes is not None:
                    item.label = classes.reshape(rows, -1)[row, column].decode(
                        "utf-8", "replace"
                    )
                if scores is not None:
                    item.score = float(scores.reshape(rows, -1)[row, column])
        return response

    def regress(self, request) -> regression_pb2.RegressionResponse:
        signature_name, outputs = self._examples_signature(request, ("outputs",), "regression")
        values = np.asarray(outputs["outputs"]).reshape(-1)
        response = regression_pb2.RegressionResponse()
        self._fill_model_spec(response.model_spec, signature_name)
        for value in values:
            response.result.regressions.add(value=float(value))
        return response

    def _fill_model_spec(self, model_spec, signature_name):
        model_spec.name = self.name
        model_spec.version.value = self.version
        model_spec.signature_name = signature_name

    # -- warmup -----------------------------------------------------------------------

    def warm_up(self):
        """Replays `assets.extra/tf_serving_warmup_requests`, as TF Serving does on load.

        A record that fails fails the load (TF Serving's behaviour), so a
        broken version never becomes AVAILABLE.
        """
        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.isfile(path):
            return 0
        replay = {
            "predict_log": self.predict,
            "classify_log": self.classify,
            "regress_log": self.regress,
        }
        logs = read_warmup_requests(self.path)
        if len(logs) > MAX_WARMUP_RECORDS:
            raise ValueError(f"{path} holds more than {MAX_WARMUP_RECORDS} warmup records.")
        for log in logs:
            kind = log.WhichOneof("log_type")
            if kind not in replay:
                raise ValueError(f"Unsupported log_type for warmup: {kind} in {path}.")
            replay[kind](getattr(log, kind).request)
        return len(logs)
