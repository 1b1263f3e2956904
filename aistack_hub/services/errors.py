"""Domain errors of the service layer. Each is one kind of refusal; ``aistack_hub.api.errors`` maps the
kinds to HTTP statuses, and ``code`` is the machine-readable ``error`` of the answer."""
from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, code: str | None = None):
        # both in args: the errors cross the process boundary of the notebook workers (pickled)
        super().__init__(message, code)
        self.message = message
        if code:
            self.code = code

    def __str__(self) -> str:
        return self.message


# The kinds (aistack_hub.api.errors maps each to a status):
#   Invalid      malformed, or names what does not exist (an unknown profile, tenant, parameter)
#   Forbidden    the caller may not do this, or a quota says no
#   NotFound     no such thing (or not one the caller may see)
#   Conflict     the thing's state forbids it now (already final; no capacity; never fits)
#   TooLarge     over a size limit
#   Unavailable  a part the service needs is gone for the moment (a notebook worker died): try again
#   TooMany      the caller holds too many of something at once (log streams): close one, or wait
class Invalid(DomainError): code = "bad_request"  # noqa: E701
class Forbidden(DomainError): code = "forbidden"  # noqa: E701
class NotFound(DomainError): code = "not_found"  # noqa: E701
class Conflict(DomainError): code = "conflict"  # noqa: E701
class TooLarge(DomainError): code = "too_large"  # noqa: E701
class Unavailable(DomainError): code = "unavailable"  # noqa: E701
class TooMany(DomainError): code = "too_many_requests"  # noqa: E701


class RangeNotSatisfiable(DomainError):
    """A byte range outside what there is (HTTP 416; ``size``: what there is)."""

    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int = 0):
        super().__init__(message)
        self.args = (message, size)
        self.size = size


# The scheduling core's verdict reasons (Scheduler.check) as domain errors.
_VERDICTS = {"over_quota": Forbidden, "forbidden": Forbidden, "server_limit": Forbidden, "queue_full": Forbidden,
             "never_fits": Conflict, "unknown_tenant": Invalid, "invalid": Invalid, "duplicate": Conflict}


def refused(verdict) -> DomainError:
    """The error for a refusing ``Verdict`` of the scheduling core."""
    return _VERDICTS.get(verdict.reason, Forbidden)(verdict.message or verdict.reason, verdict.reason)
