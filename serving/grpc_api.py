"""TF Serving's gRPC services over a `ServingCore`.

`tensorflow.serving.PredictionService` (Predict, Classify, Regress,
GetModelMetadata) and `tensorflow.serving.ModelService` (GetModelStatus),
the servicer bases generated from tensorflow-serving-api's protos, so the
wire format is TF Serving's own. Every `ServingError` becomes the RPC's
status code and message; nothing else escapes.
"""

from __future__ import annotations

import functools
import logging

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.errors import ServingError

log = logging.getLogger("serving")


def _answering(method):
    """Wraps a servicer method: ServingError -> its status; anything else -> INTERNAL."""

    @functools.wraps(method)
    def handler(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.code, error.message)
        except Exception as error:  # noqa: BLE001 (a request must never kill the server)
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")

    return handler


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core):
        self.core = core

    @_answering
    def Predict(self, request, context):  # noqa: N802 (gRPC method names)
        return self.core.predict(request, entrypoint="GRPC")

    @_answering
    def Classify(self, request, context):  # noqa: N802
        return self.core.classify(request, entrypoint="GRPC")

    @_answering
    def Regress(self, request, context):  # noqa: N802
        return self.core.regress(request, entrypoint="GRPC")

    @_answering
    def GetModelMetadata(self, request, context):  # noqa: N802
        return self.core.get_model_metadata(request, entrypoint="GRPC")

    @_answering
    def MultiInference(self, request, context):  # noqa: N802
        raise ServingError(
            grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not supported by this server."
        )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core):
        self.core = core

    @_answering
    def GetModelStatus(self, request, context):  # noqa: N802
        return self.core.get_model_status(request, entrypoint="GRPC")

    @_answering
    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        raise ServingError(
            grpc.StatusCode.UNIMPLEMENTED,
            "Reloading the model config over gRPC is not supported: edit the base "
            "directories (new versions are picked up by polling) or restart the server.",
        )


def add_services(server: grpc.Server, core):
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(core), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(core), server)
