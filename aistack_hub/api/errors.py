"""The error map: every refusal is a 4xx JSON answer ``{"error", "message"}``, never a 500.

Domain errors of the service layer (``aistack_hub.services.errors``) map by kind; ``APIError`` is for the
refusals of the HTTP layer itself (authentication, the body's framing).
"""
from __future__ import annotations

from tornado.web import HTTPError

from aistack_hub.services.errors import (Conflict, DomainError, Forbidden, Invalid, NotFound, RangeNotSatisfiable,
                                         TooLarge, TooMany, Unavailable)

STATUS = {Invalid: 400, Forbidden: 403, NotFound: 404, Conflict: 409, TooLarge: 413, RangeNotSatisfiable: 416,
          TooMany: 429, Unavailable: 503}

# the ``error`` of answers tornado itself makes (a 405, a 404 of a route)
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
              416: "range_not_satisfiable", 429: "too_many_requests"}


class APIError(HTTPError):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, log_message=message)
        self.code = code
        self.message = message


def status_of(exc: DomainError) -> int:
    for klass in type(exc).__mro__:
        if klass in STATUS:
            return STATUS[klass]
    return 400


def answer(exc: BaseException | None, status: int, reason: str) -> tuple[int, dict]:
    """(status, body) of the error answer for ``exc`` (raised by a handler) or a bare ``status``."""
    if isinstance(exc, DomainError):
        return status_of(exc), {"error": exc.code, "message": exc.message}
    if isinstance(exc, APIError):
        return exc.status_code, {"error": exc.code, "message": exc.message}
    code = HTTP_CODES.get(status, "error" if status < 500 else "internal_error")
    message = (exc.log_message if isinstance(exc, HTTPError) else None) or reason
    if status >= 500 and not isinstance(exc, HTTPError):
        message = "internal error (see the service log)"
    return status, {"error": code, "message": message}
