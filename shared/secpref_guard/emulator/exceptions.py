"""The emulated services' errors: one class per API error code, with the real HTTP status."""

from __future__ import annotations


class EmulatedError(Exception):
    """Rendered as the real JSON error shape: Code, Message, RequestId, HostId, Recommend."""

    code = "InternalError"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class MissingParameter(EmulatedError):
    code, status = "MissingParameter", 400


class InvalidParameter(EmulatedError):
    """``InvalidParameter.<Name>``, or with a ``suffix`` ``InvalidParameter.<Name>.<Suffix>``
    (the RAM API's ``.Range`` / ``.Format``), whose ``problem`` is then the whole message."""

    status = 400

    def __init__(self, name: str, problem: str, *, suffix: str | None = None):
        if suffix:
            super().__init__(problem, code=f"InvalidParameter.{name}.{suffix}")
        else:
            super().__init__(
                f"The parameter {name} is invalid: {problem}", code=f"InvalidParameter.{name}"
            )


class InvalidAccessKeyIdNotFound(EmulatedError):
    code, status = "InvalidAccessKeyId.NotFound", 404


class SignatureDoesNotMatch(EmulatedError):
    code, status = "SignatureDoesNotMatch", 400

    def __init__(self, string_to_sign: str):
        # The real service appends its string to sign after a colon; the SDK relies on it.
        super().__init__(
            "Specified signature is not matched with our calculation. "
            f"server string to sign is:{string_to_sign}"
        )


class IncompleteSignature(EmulatedError):
    """A signature that cannot be checked as sent (a malformed ACS3 Authorization header, a
    common header left out of SignedHeaders)."""

    code, status = "IncompleteSignature", 400

    def __init__(self, problem: str):
        super().__init__(f"The request signature does not conform to Aliyun standards: {problem}")


class SignatureNonceUsed(EmulatedError):
    code, status = "SignatureNonceUsed", 400


class InvalidSecurityToken(EmulatedError):
    code, status = "InvalidSecurityToken.MismatchWithAccessKey", 400


class InvalidVersion(EmulatedError):
    code, status = "InvalidVersion", 400


class InvalidActionNotFound(EmulatedError):
    code, status = "InvalidAction.NotFound", 404


class NoPermission(EmulatedError):
    code, status = "NoPermission", 403


class InvalidTimeStampFormat(EmulatedError):
    code, status = "InvalidTimeStamp.Format", 400

    def __init__(self) -> None:
        super().__init__("Specified time stamp or date value is not well formatted.")


class InvalidTimeStampExpired(EmulatedError):
    code, status = "InvalidTimeStamp.Expired", 400

    def __init__(self) -> None:
        super().__init__("Specified time stamp or date value is expired.")


class InvalidSignatureMethod(EmulatedError):
    code, status = "InvalidSignatureMethod", 400

    def __init__(self, what: str) -> None:
        super().__init__(f"Specified signature method is not supported: {what}")
