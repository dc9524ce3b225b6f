"""Emulated Function Compute invoke API: the REST door the fan-out dispatches through.

Two paths, both POST, both answered the way the service answers them:
- FC 3.0 ``InvokeFunction``: ``/2023-03-30/functions/{functionName}/invocations`` (functions
  without services, what the fc3 component deploys);
- FC 2.0 ``InvokeFunction``: ``/2016-08-15/services/{serviceName}/functions/{functionName}/
  invocations`` (what fc2's ``Client.invoke_function`` builds).

Authentication is Function Compute's own scheme, which the fc2 SDK implements (fc2/auth.py) and
the FC documentation ("Signature authentication") specifies, checked here independently:
``Authorization: FC <AccessKeyId>:<base64 HMAC-SHA256(secret, string to sign)>`` where the
string to sign is ``METHOD\\nContent-MD5\\nContent-Type\\nDate\\n`` followed by every
``x-fc-*`` header (lower-case name, sorted, ``name:value\\n``) and the URL-decoded path without
its query. A temporary key also sends ``x-fc-security-token``. Errors are JSON
``{"ErrorCode", "ErrorMessage"}`` with the request id in ``x-fc-request-id``.

``x-fc-invocation-type: Async`` is accepted with 202 and an empty body up to the asynchronous
payload limit (128 KB; larger: 400 ``EntityTooLarge``); the function then runs on a thread pool,
as Function Compute would run it later, with a context shaped like the python3.10 runtime's.
A synchronous invocation runs the function at once and answers its result (limit 32 MB).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

from ..credentials import Credentials
from .exceptions import EmulatedError
from .models import Call, KeyPair, new_request_id
from .responses import Emulator, Reply

FC3_VERSION = "2023-03-30"
FC2_VERSION = "2016-08-15"
ASYNC_PAYLOAD_LIMIT = 128 * 1024  # bytes: "the maximum payload for an asynchronous invocation"
SYNC_PAYLOAD_LIMIT = 32 * 1024 * 1024
_INVOKE_FC3 = re.compile(r"^/2023-03-30/functions/(?P<function>[^/]+)/invocations$")
_INVOKE_FC2 = re.compile(
    r"^/2016-08-15/services/(?P<service>[^/]+)/functions/(?P<function>[^/]+)/invocations$"
)

Handler = Callable[[bytes, Any], Any]


class FcError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def string_to_sign(method: str, path: str, headers: Mapping[str, str]) -> str:
    """The FC signature's string to sign, from the request as the server received it."""
    lower = {name.lower(): value for name, value in headers.items()}
    fc_headers = "".join(
        f"{name}:{lower[name]}\n" for name in sorted(n for n in lower if n.startswith("x-fc-"))
    )
    parts = [
        method.upper(),
        lower.get("content-md5", ""),
        lower.get("content-type", ""),
        lower.get("date", ""),
    ]
    return "\n".join(parts) + "\n" + fc_headers + path


def expected_signature(secret: str, method: str, path: str, headers: Mapping[str, str]) -> str:
    digest = hmac.new(
        secret.encode(), string_to_sign(method, path, headers).encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Function:
    account: str
    name: str
    service: str | None = None  # FC 2.0 functions live in a service; FC 3.0 ones do not
    handler: Handler | None = None
    credentials: Credentials | None = None  # the function's role, as its context carries them


@dataclass
class Invocation:
    function: str
    service: str | None
    account: str
    principal: str
    invocation_type: str  # Sync or Async
    payload: bytes
    request_id: str
    api: str  # "2023-03-30" or "2016-08-15"
    status: str = "accepted"  # accepted -> succeeded | failed (Async), or done at once (Sync)
    result: Any = None
    error: str | None = None


@dataclass
class FcBackend:
    """Functions per account, every invocation received, and a pool that runs async ones."""

    emulator: Emulator
    max_workers: int = 8  # async invocations run at most this many at a time
    region: str = "cn-hangzhou"
    functions: dict[tuple[str, str | None, str], Function] = field(default_factory=dict)
    invocations: list[Invocation] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor | None = None
    _pending: list[Future[Any]] = field(default_factory=list)

    # --- state ------------------------------------------------------------------------------

    def add_function(
        self,
        account: str,
        name: str,
        handler: Handler | None = None,
        *,
        service: str | None = None,
        credentials: Credentials | None = None,
    ) -> Function:
        function = Function(account, name, service, handler, credentials)
        with self.lock:
            self.functions[(account, service, name)] = function
        return function

    def invocations_of(self, function: str) -> list[Invocation]:
        with self.lock:
            return [i for i in self.invocations if i.function == function]

    def drain(self, timeout: float = 60.0) -> list[Invocation]:
        """Wait until every accepted async invocation has run; return all invocations."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                pending = [f for f in self._pending if not f.done()]
            if not pending:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(pending)} async invocations still running")
            wait(pending, timeout=remaining)
        with self.lock:
            return list(self.invocations)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # --- the REST route ---------------------------------------------------------------------

    def route(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | str | None
    ) -> Reply | None:
        path = unquote(urlsplit(url).path)
        if not path.startswith((f"/{FC3_VERSION}/", f"/{FC2_VERSION}/")):
            return None  # not Function Compute's: the RPC door's
        request_id = new_request_id()
        payload = body.encode() if isinstance(body, str) else (body or b"")
        try:
            status, reply_headers, reply = self._invoke(method, path, headers, payload, request_id)
        except FcError as exc:
            document = {"ErrorCode": exc.code, "ErrorMessage": exc.message, "RequestId": request_id}
            return (
                exc.status,
                {"Content-Type": "application/json", "X-Fc-Request-Id": request_id},
                json.dumps(document).encode(),
            )
        return status, {"X-Fc-Request-Id": request_id, **reply_headers}, reply

    def _invoke(
        self, method: str, path: str, headers: Mapping[str, str], payload: bytes, request_id: str
    ) -> tuple[int, dict[str, str], bytes]:
        match = _INVOKE_FC3.match(path) or _INVOKE_FC2.match(path)
        if method.upper() != "POST" or match is None:
            raise FcError(400, "PathNotSupported", f"'{path}' against '{method}' is not supported")
        lower = {name.lower(): value for name, value in headers.items()}
        key = self._authenticate(method, path, lower)
        invocation_type = lower.get("x-fc-invocation-type", "Sync")
        if invocation_type not in ("Sync", "Async"):
            raise FcError(
                400,
                "InvalidArgument",
                f"invalid x-fc-invocation-type {invocation_type!r}: Sync or Async",
            )
        limit = ASYNC_PAYLOAD_LIMIT if invocation_type == "Async" else SYNC_PAYLOAD_LIMIT
        if len(payload) > limit:
            raise FcError(
                400, "EntityTooLarge", f"payload size exceeds maximum allowed size ({limit} bytes)"
            )
        service = match.groupdict().get("service")
        name = match.group("function")
        api = FC3_VERSION if service is None else FC2_VERSION
        self.emulator.ims.calls.append(
            Call(
                "InvokeFunction",
                key.account,
                {
                    "FunctionName": name,
                    "InvocationType": invocation_type,
                    **({"ServiceName": service} if service else {}),
                },
                key.principal,
            )
        )
        try:  # faults are injected on the IMS backend, by action name
            self.emulator.ims._raise_fault("InvokeFunction", key.account)
        except EmulatedError as exc:
            raise FcError(exc.status, exc.code, exc.message) from None
        with self.lock:
            function = self.functions.get((key.account, service, name))
        if function is None:
            if service is not None and not any(
                k[0] == key.account and k[1] == service for k in self.functions
            ):
                raise FcError(404, "ServiceNotFound", f"service '{service}' does not exist")
            raise FcError(404, "FunctionNotFound", f"function '{name}' does not exist.")
        invocation = Invocation(
            name, service, key.account, key.principal, invocation_type, payload, request_id, api
        )
        with self.lock:
            self.invocations.append(invocation)
        if invocation_type == "Async":
            with self.lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="fc-async")
                self._pending.append(self._pool.submit(self._run, function, invocation))
            return 202, {}, b""
        self._run(function, invocation)
        if invocation.status == "failed":
            error = {"errorMessage": invocation.error, "errorType": "UnhandledInvocationError"}
            return 200, {"X-Fc-Error-Type": "UnhandledInvocationError"}, json.dumps(error).encode()
        result = invocation.result
        if isinstance(result, str):
            result = result.encode()
        return 200, {}, result if isinstance(result, bytes) else json.dumps(result).encode()

    def _authenticate(self, method: str, path: str, lower: Mapping[str, str]) -> KeyPair:
        authorization = lower.get("authorization", "")
        if not authorization.startswith("FC ") or ":" not in authorization:
            raise FcError(
                403,
                "AccessDenied",
                "the Authorization header is missing or is not 'FC <AccessKeyId>:<signature>'",
            )
        key_id, _, signature = authorization[3:].partition(":")
        if not lower.get("date"):
            raise FcError(
                400, "MissingRequiredHeader", "required HTTP header Date was not specified"
            )
        try:
            parsedate_to_datetime(lower["date"])
        except (TypeError, ValueError):
            raise FcError(
                400,
                "InvalidArgument",
                "the Date header is not an RFC 1123 date (Mon, 02 Jan 2006 15:04:05 GMT)",
            ) from None
        key = self.emulator.keys.get(key_id)
        if key is None:
            raise FcError(403, "InvalidAccessKeyID", f"invalid access key ID '{key_id}'")
        expected = expected_signature(key.secret, method, path, lower)
        if not hmac.compare_digest(expected, signature):
            raise FcError(
                403,
                "SignatureNotMatch",
                "The request signature we calculated does "
                "not match the signature you provided. Check your access key and "
                "signing method",
            )
        token = lower.get("x-fc-security-token")
        if (key.security_token or None) != (token or None):
            raise FcError(
                403, "InvalidSecurityToken", "the security token does not match the access key"
            )
        return key

    def _run(self, function: Function, invocation: Invocation) -> None:
        if function.handler is None:
            invocation.status = "succeeded"
            return
        creds = function.credentials
        context = SimpleNamespace(
            request_id=invocation.request_id,
            account_id=function.account,
            region=self.region,
            function=SimpleNamespace(name=function.name, handler="index.handler"),
            service=SimpleNamespace(name=function.service) if function.service else None,
            credentials=SimpleNamespace(
                access_key_id=creds.access_key_id,
                access_key_secret=creds.access_key_secret,
                security_token=creds.security_token,
            )
            if creds
            else None,
        )
        try:
            invocation.result = function.handler(invocation.payload, context)
            invocation.status = "succeeded"
        except Exception as exc:  # the function failed: recorded, as FC records it
            invocation.status = "failed"
            invocation.error = f"{type(exc).__name__}: {exc}"


def install(emulator: Emulator, *, max_workers: int = 8) -> FcBackend:
    """Serve Function Compute's invoke API from ``emulator`` (both front doors)."""
    backend = FcBackend(emulator, max_workers=max_workers)
    emulator.routes.append(backend.route)
    return backend
