"""Asynchronous invocations of the worker function through the official FC 3.0 SDK.

The worker is an FC 3.0 function (the fc3 component deploys it; it has no service), invoked
with ``InvokeFunction`` of API 2023-03-30, ``POST /2023-03-30/functions/{name}/invocations``
with ``x-fc-invocation-type: Async``. The official SDK for that API, alibabacloud-fc20230330,
signs with ACS3-HMAC-SHA256 (signature v3, the Tea/Darabonba core). No Function Compute
document says that the FC 3.0 API accepts FC 2.0's ``FC <id>:<signature>`` scheme (the
"Signature authentication" page describes it for API version 2016-08-15), so the request is
made by the SDK and not signed here.

What this module adds to the SDK, as client.py does for the RPC SDK:
- retries: the SDK's own are off (no retry options, one attempt per call); throttling, 5xx
  and connection failures are retried by ``client.with_retries`` (backoff with jitter, bounded
  by the policy and by the invocation's ``deadline``), each try's timeouts cut to the time
  left;
- errors: every failure is a ``client.ApiError`` with Function Compute's code, HTTP status and
  request id; the SDK's exception is not chained (its text can carry the signed request);
- secrets: the SDK's loggers (which print the signed headers, STS token included, under
  ``DEBUG=sdk``) are silenced, and messages pass through the project's redaction.

The SDK (and aiohttp, which its core imports) is imported only when an invoker is built, i.e.
only when a run fans out.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from .client import MIN_ATTEMPT_SECONDS, ApiError, CallLog, RetryPolicy, with_retries
from .credentials import Credentials
from .logs import redact

ACTION = "InvokeFunction"
SDK_LOGGERS = ("darabonba-core", "alibabacloud-tea", "credentials")


def silence_sdk_loggers() -> None:
    """The Tea/Darabonba core logs every signed header at DEBUG (``DEBUG=sdk``): none of it may
    reach the guard's output."""
    for name in SDK_LOGGERS:
        sdk_logger = logging.getLogger(name)
        for handler in list(sdk_logger.handlers):
            sdk_logger.removeHandler(handler)
        sdk_logger.setLevel(logging.CRITICAL + 1)
        sdk_logger.propagate = False


class WorkerInvoker:
    """``invoke_async`` of one FC 3.0 endpoint (``https://<account>.<region>.fc.aliyuncs.com``,
    or ``http://127.0.0.1:<port>`` for the emulator), signed with ``credentials``."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        retry: RetryPolicy | None = None,
        deadline: float | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        """``deadline``: a point on ``retry.clock`` after which no try starts (the invocation's
        deadline, shared with the run's other API calls); None: only the policy's bound."""
        parts = urlsplit(endpoint)
        if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
            raise ValueError(f"endpoint needs a scheme and a host (https://...), got {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.deadline = deadline
        self.timeouts = (float(connect_timeout), float(read_timeout))
        self.log = CallLog()  # Credentials registered their secret and token for masking

        from alibabacloud_fc20230330.client import Client
        from alibabacloud_tea_openapi.utils_models import Config

        silence_sdk_loggers()
        config = Config(
            access_key_id=credentials.access_key_id,
            access_key_secret=credentials.access_key_secret,
            security_token=credentials.security_token or None,
            endpoint=parts.netloc.lower(),  # host[:port]: the SDK adds the scheme itself
            protocol=parts.scheme.upper(),
            connect_timeout=int(connect_timeout * 1000),
            read_timeout=int(read_timeout * 1000),
            user_agent="secpref-guard",
        )
        config.retry_options = None  # the SDK's own retries: off (one attempt per call)
        self._client = Client(config)
        silence_sdk_loggers()

    def invoke_async(
        self, function_name: str, payload: bytes, *, qualifier: str | None = None
    ) -> str | None:
        """Queue one invocation; the request id Function Compute gave it."""
        return with_retries(
            self.retry,
            ACTION,
            lambda left: self._invoke_once(function_name, payload, qualifier, left),
            deadline=self.deadline,
        )

    def _invoke_once(
        self, function_name: str, payload: bytes, qualifier: str | None, seconds_left: float
    ) -> str | None:
        from alibabacloud_fc20230330 import models
        from darabonba.runtime import RuntimeOptions

        connect = min(self.timeouts[0], seconds_left / 2)
        read = min(self.timeouts[1], max(seconds_left - connect, MIN_ATTEMPT_SECONDS / 2))
        runtime = RuntimeOptions(
            autoretry=False,
            max_attempts=1,
            connect_timeout=max(1, int(connect * 1000)),
            read_timeout=max(1, int(read * 1000)),
        )
        request = models.InvokeFunctionRequest(body=bytes(payload), qualifier=qualifier)
        headers = models.InvokeFunctionHeaders(x_fc_invocation_type="Async")
        self.log.count_call()
        try:
            response = self._client.invoke_function_with_options(
                function_name, request, headers, runtime
            )
        except Exception as exc:  # the SDK raises its own types for everything
            raise _api_error(exc) from None
        request_id = _header(response.headers, "x-fc-request-id")
        if request_id:
            self.log.request_ids.append(request_id)
        return request_id


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value)
    return None


def _api_error(exc: Exception) -> ApiError:
    """The SDK's exception as an ApiError: Function Compute's code, message, status and request
    id for a reply; ``SDK.HttpError`` / ``SDK.TimeoutError`` for a request that got none."""
    data = getattr(exc, "data", None)
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "code", None)
    if isinstance(status, int) and code is not None:
        document = data if isinstance(data, dict) else {}
        message = document.get("Message") or document.get("message") or ""
        request_id = document.get("RequestId") or document.get("requestId")
        code_text = str(code) if str(code) not in ("", "None") else f"HTTP {status}"
        return ApiError(
            ACTION,
            code_text,
            redact(str(message)),
            status,
            str(request_id) if request_id else None,
        )
    cause = getattr(exc, "inner_exception", None) or exc
    text = f"{getattr(cause, 'message', '')} {cause}".lower()
    if "parse the value as json" in text:
        # An error reply that is not JSON (a proxy's 502 page): the SDK keeps no status. The
        # RPC SDK's name for it, which the retry policy treats as transient; no body quoted.
        return ApiError(
            ACTION, "SDK.UnknownServerError", "Function Compute answered with a non-JSON error"
        )
    if "timed out" in text or "timeout" in text:
        return ApiError(ACTION, "SDK.TimeoutError", "Function Compute did not answer in time")
    if type(cause).__name__ in ("RetryError", "UnretryableException") or isinstance(cause, OSError):
        return ApiError(ACTION, "SDK.HttpError", "could not reach Function Compute")
    return ApiError(ACTION, "SDK.ClientError", f"the FC SDK failed: {type(cause).__name__}")
