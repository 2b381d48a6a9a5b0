"""`ServingError`: a gRPC status code and TF Serving's message, and how REST reports it."""

from __future__ import annotations

import grpc
import tensorflow as tf

# TF Serving cuts longer messages (grpc_status_util.cc).
MESSAGE_LIMIT = 1024

# TF Serving's HTTP status for each canonical code (http_server.cc, ToHTTPStatusCode).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request the server answers with a non-OK status.

    `code` is a `grpc.StatusCode`; `message` is the text TF Serving sends
    (cut to 1,024 characters as TF Serving does).
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        if len(message) > MESSAGE_LIMIT:
            message = message[:MESSAGE_LIMIT] + "...TRUNCATED"
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status(self.code)

    def __repr__(self):
        return f"ServingError({self.code.name}, {self.message!r})"


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status TF Serving's REST API answers for `code`."""
    return HTTP_STATUS.get(code, 500)


def status_code(number: int) -> grpc.StatusCode:
    """The `grpc.StatusCode` with canonical number `number` (UNKNOWN for others)."""
    return _CODE_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def from_tf_error(error: tf.errors.OpError) -> ServingError:
    """A session's `OpError` as the status TF Serving passes on (same code, same message)."""
    return ServingError(status_code(error.error_code), error.message)


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)
