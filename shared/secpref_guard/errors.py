"""The one base of the guard's errors: each describes itself with a code and a dict form.

Every failure the guard reports (an API error, a write that did not stick, a member account it
could not get into, a bad configuration or event) is a ``GuardError``: its ``code`` names the
cause in the remote service's words where there is one, its message is one line for a person,
and ``as_dict()`` is what reports, logs and notifications carry. Nothing else turns exceptions
into dictionaries.
"""

from __future__ import annotations

from typing import Any


class GuardError(Exception):
    """A failure with a stable code; subclasses add their own fields to ``as_dict``."""

    code: str = "GuardError"

    def as_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "code": self.code, "message": str(self)}


class UnexpectedError(GuardError):
    """A failure the guard has no name for (a bug): wrapped so reports stay uniform."""

    code = "InternalError"

    def __init__(self, cause: BaseException) -> None:
        self.cause_type = type(cause).__name__
        super().__init__(f"{self.cause_type}: {cause}")

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "cause": self.cause_type}


def describe(exc: BaseException) -> GuardError:
    """``exc`` as a GuardError (itself, or wrapped)."""
    return exc if isinstance(exc, GuardError) else UnexpectedError(exc)


def log_fields(error: GuardError) -> dict[str, Any]:
    """``error.as_dict()`` for a log line, whose ``request_id`` is the invocation's and whose
    ``message`` is the line's own: the error's become ``api_request_id`` and ``api_message``."""
    fields = error.as_dict()
    fields["error_type"] = fields.pop("type", type(error).__name__)
    if "request_id" in fields:
        fields["api_request_id"] = fields.pop("request_id")
    if "message" in fields:
        fields["api_message"] = fields.pop("message")
    return fields
