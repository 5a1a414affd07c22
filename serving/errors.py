"""Errors a request can get, each with the gRPC status TF Serving answers it with (and its REST code)."""

from __future__ import annotations

import grpc

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}


class ServingError(Exception):
    """A request that cannot be answered; str() names the problem and the fix."""

    code = grpc.StatusCode.INTERNAL

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


class BadRequest(ServingError):
    """The request itself is wrong (INVALID_ARGUMENT)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServingError):
    """No such model, version or signature is served (NOT_FOUND)."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServingError):
    """The request is well formed but cannot run as the server is set up (FAILED_PRECONDITION)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ServingError):
    """The server is overloaded for now (UNAVAILABLE): the batching queue is full."""

    code = grpc.StatusCode.UNAVAILABLE
