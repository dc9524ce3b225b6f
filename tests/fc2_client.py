"""A hand-signed FC 2.0-scheme client (``Authorization: FC <id>:<signature>``) for the tests of
the emulator's FC door: the guard itself invokes the worker with the official FC 3.0 SDK
(worker_invoke.py), so this is only a second, independent party that speaks the older scheme."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from email.utils import formatdate
from urllib.parse import quote, urlsplit

import requests

from secpref_guard.client import ApiError, CallLog, RetryPolicy, with_retries
from secpref_guard.credentials import Credentials

FC_API_VERSION = "2023-03-30"


def fc_authorization(
    credentials: Credentials, method: str, path: str, headers: Mapping[str, str]
) -> str:
    """``FC <AccessKeyId>:<signature>``: HMAC-SHA256 with the secret over ``METHOD``,
    ``Content-MD5``, ``Content-Type``, ``Date`` (one per line), then every ``x-fc-`` header as
    ``name:value`` lines sorted by lower-case name, then the unescaped path."""
    lower = {name.lower(): value for name, value in headers.items()}
    fc_lines = "".join(
        f"{name}:{lower[name]}\n" for name in sorted(n for n in lower if n.startswith("x-fc-"))
    )
    text = "\n".join(
        [
            method.upper(),
            lower.get("content-md5", ""),
            lower.get("content-type", ""),
            lower.get("date", ""),
        ]
    )
    text += "\n" + fc_lines + path
    digest = hmac.new(credentials.access_key_secret.encode(), text.encode(), hashlib.sha256)
    return f"FC {credentials.access_key_id}:{base64.b64encode(digest.digest()).decode()}"


class FunctionInvoker:
    """Asynchronous invocations of a Function Compute 3.0 function, retried like RpcClient's
    calls (throttling, 5xx, connection errors) and failing with ApiError."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 10,
        session: requests.Session | None = None,
    ) -> None:
        if "://" not in endpoint:
            raise ValueError(f"endpoint needs a scheme (https://...), got {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc
        self.credentials = credentials
        self.retry = retry or RetryPolicy()
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or requests.Session()
        self.log = CallLog()

    def invoke_async(
        self, function_name: str, payload: bytes, *, qualifier: str | None = None
    ) -> str | None:
        """Queue one invocation; the request id Function Compute gave it."""
        return with_retries(
            self.retry,
            "InvokeFunction",
            lambda left: self._invoke_once(function_name, payload, qualifier),
        )

    def _invoke_once(self, function_name: str, payload: bytes, qualifier: str | None) -> str | None:
        path = f"/{FC_API_VERSION}/functions/{function_name}/invocations"
        headers = {
            "host": self.host,
            "date": formatdate(usegmt=True),
            "content-type": "application/json",
            "x-fc-invocation-type": "Async",
            "user-agent": "secpref-guard",
        }
        if self.credentials.security_token:
            headers["x-fc-security-token"] = self.credentials.security_token
        headers["authorization"] = fc_authorization(self.credentials, "POST", path, headers)
        url = self.endpoint + quote(path, safe="/")
        params = {"qualifier": qualifier} if qualifier else None
        self.log.count_call()
        try:
            response = self.session.post(
                url, data=payload, headers=headers, params=params, timeout=self.timeout
            )
        except requests.Timeout as exc:
            raise ApiError("InvokeFunction", "SDK.TimeoutError", type(exc).__name__) from None
        except requests.RequestException as exc:
            raise ApiError("InvokeFunction", "SDK.HttpError", str(exc)) from None
        request_id = response.headers.get("x-fc-request-id")
        if request_id:
            self.log.request_ids.append(request_id)  # list.append is atomic
        if response.status_code < 400:
            return request_id
        code, message = "UnknownError", response.text[:300]
        try:
            document = response.json()
        except ValueError:
            document = None
        if isinstance(document, dict):
            code = str(
                document.get("ErrorCode")
                or document.get("errorCode")
                or document.get("Code")
                or code
            )
            message = str(
                document.get("ErrorMessage")
                or document.get("errorMessage")
                or document.get("Message")
                or message
            )
            request_id = request_id or document.get("RequestId")
        raise ApiError("InvokeFunction", code, message, response.status_code, request_id)
