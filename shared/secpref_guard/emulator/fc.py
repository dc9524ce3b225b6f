"""Emulated Function Compute invoke API: the REST door the fan-out dispatches through.

Two paths, both POST, both answered the way the service answers them:
- FC 3.0 ``InvokeFunction``: ``/2023-03-30/functions/{functionName}/invocations`` (functions
  without services, what the fc3 component deploys);
- FC 2.0 ``InvokeFunction``: ``/2016-08-15/services/{serviceName}/functions/{functionName}/
  invocations`` (what fc2's ``Client.invoke_function`` builds).

Two signatures are verified, each independently of the SDK that makes it:
- ACS3-HMAC-SHA256 (signature v3), what the official FC 3.0 SDK (alibabacloud-fc20230330, on
  the Tea/Darabonba core) sends, accepted on the FC 3.0 path: ``Authorization:
  ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<a;b;...>,Signature=<hex>``, the
  signature an HMAC-SHA256 of ``ACS3-HMAC-SHA256\\n<hex SHA-256 of the canonical request>``,
  the canonical request being method, path as sent, sorted percent-encoded query, the signed
  headers (lower-case ``name:value`` lines), their names, and ``x-acs-content-sha256``, which
  must be the SHA-256 of the body. ``host``, ``x-acs-date``, ``x-acs-signature-nonce``,
  ``x-acs-content-sha256`` and every other ``x-acs-*`` header sent (``x-acs-security-token``
  for a temporary key) must be signed. A date more than 15 minutes from the emulator's clock
  and a nonce already used are rejected. The verifier is emulator/acs3.py, shared with the RPC
  door; this door answers its refusals with Function Compute's codes (``_ACS3_ERRORS``).
- Function Compute's FC 2.0 scheme, which the fc2 SDK implements (fc2/auth.py) and the FC
  documentation ("Signature authentication") specifies, on both paths: ``Authorization: FC
  <AccessKeyId>:<base64 HMAC-SHA256(secret, string to sign)>`` where the string to sign is
  ``METHOD\\nContent-MD5\\nContent-Type\\nDate\\n`` followed by every ``x-fc-*`` header
  (lower-case name, sorted, ``name:value\\n``) and the URL-decoded path without its query. A
  temporary key also sends ``x-fc-security-token``. The documentation's 15-minute limit on the
  ``Date`` applies, and an exact replay (same signature, same body) of an accepted request
  within that window is refused: the scheme has no nonce.

Errors carry the request id in ``x-fc-request-id`` and are JSON in each API's documented shape:
``{"Code", "Message", "RequestId"}`` on the FC 3.0 path (the 2023-03-30 Error structure),
``{"ErrorCode", "ErrorMessage", "RequestId"}`` on the FC 2.0 path.

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
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlsplit

from ..credentials import Credentials
from . import acs3
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
MAX_SKEW_SECONDS = acs3.MAX_SKEW_SECONDS  # "no more than 15 minutes from the server's time"
ACS3 = acs3.ALGORITHM

Handler = Callable[[bytes, Any], Any]
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your access key and signing method"
)
# Function Compute's status and code for each kind of ACS3 refusal
_ACS3_ERRORS: dict[str, tuple[int, str]] = {
    acs3.UNSUPPORTED_ALGORITHM: (403, "AccessDenied"),
    acs3.MALFORMED: (403, "AccessDenied"),
    acs3.MISSING_HEADER: (400, "MissingRequiredHeader"),
    acs3.UNSORTED: (400, "InvalidArgument"),
    acs3.UNSIGNED: (400, "InvalidArgument"),
    acs3.DATE_FORMAT_INVALID: (400, "InvalidArgument"),
    acs3.PAYLOAD_HASH: (400, "InvalidArgument"),
    acs3.UNKNOWN_KEY: (403, "InvalidAccessKeyID"),
    acs3.SIGNATURE: (403, "SignatureNotMatch"),
    acs3.EXPIRED: (403, "RequestTimeTooSkewed"),
    acs3.NONCE_USED: (403, "SignatureNonceUsed"),
    acs3.SECURITY_TOKEN_MISMATCH: (403, "InvalidSecurityToken"),
    acs3.KEY_ID: (403, "InvalidAccessKeyID"),
}


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
    clock: Callable[[], float] = time.time  # epoch seconds: signed dates are checked against it
    _pool: ThreadPoolExecutor | None = None
    _pending: list[Future[Any]] = field(default_factory=list)
    _nonces: dict[str, float] = field(default_factory=dict)  # ACS3 nonce -> when it was used
    _accepted: dict[tuple[str, str], float] = field(default_factory=dict)  # FC 2.0 replays

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
        parts = urlsplit(url)
        path = unquote(parts.path)
        if not path.startswith((f"/{FC3_VERSION}/", f"/{FC2_VERSION}/")):
            return None  # not Function Compute's: the RPC door's
        request_id = new_request_id()
        payload = body.encode() if isinstance(body, str) else (body or b"")
        try:
            status, reply_headers, reply = self._invoke(
                method, path, headers, payload, request_id, raw=(parts.path, parts.query)
            )
        except FcError as exc:
            if path.startswith(f"/{FC3_VERSION}/"):
                document = {"Code": exc.code, "Message": exc.message, "RequestId": request_id}
            else:
                document = {
                    "ErrorCode": exc.code,
                    "ErrorMessage": exc.message,
                    "RequestId": request_id,
                }
            return (
                exc.status,
                {"Content-Type": "application/json", "X-Fc-Request-Id": request_id},
                json.dumps(document).encode(),
            )
        return status, {"X-Fc-Request-Id": request_id, **reply_headers}, reply

    def _invoke(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        payload: bytes,
        request_id: str,
        raw: tuple[str, str] = ("", ""),
    ) -> tuple[int, dict[str, str], bytes]:
        match = _INVOKE_FC3.match(path) or _INVOKE_FC2.match(path)
        if method.upper() != "POST" or match is None:
            raise FcError(400, "PathNotSupported", f"'{path}' against '{method}' is not supported")
        lower = {name.lower(): value for name, value in headers.items()}
        service = match.groupdict().get("service")
        if lower.get("authorization", "").startswith(f"{ACS3} ") and service is None:
            key, replay_key = self._authenticate_acs3(
                method, raw[0] or path, raw[1], lower, payload
            )
        else:
            key, replay_key = self._authenticate(method, path, lower, payload)
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
        if replay_key is not None:
            self._accept_once(replay_key)
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

    # --- authentication ---------------------------------------------------------------------

    def _check_skew(self, when: datetime, header: str) -> None:
        skew = abs(self.clock() - when.timestamp())
        if skew > MAX_SKEW_SECONDS:
            raise FcError(
                403,
                "RequestTimeTooSkewed",
                f"the {header} header is {int(skew)} seconds from the server's time; at most "
                f"{MAX_SKEW_SECONDS} are allowed",
            )

    def _forget_old(self, seen: dict[Any, float]) -> None:
        """Entries older than the skew window: a request that old is refused for its date."""
        horizon = self.clock() - 2 * MAX_SKEW_SECONDS
        for key in [k for k, at in seen.items() if at < horizon]:
            del seen[key]

    def _use_once(self, seen: dict[Any, float], key: Any, error: FcError) -> None:
        """Record ``key`` as used now; raise ``error`` if it was used within the window."""
        with self.lock:
            self._forget_old(seen)
            if key in seen:
                raise error
            seen[key] = self.clock()

    def _accept_once(self, replay_key: tuple[str, str]) -> None:
        self._use_once(
            self._accepted,
            replay_key,
            FcError(
                403,
                "AccessDenied",
                "this signed request was already accepted (a replay): sign every request anew",
            ),
        )

    def _key(self, key_id: str) -> KeyPair:
        key = self.emulator.keys.get(key_id)
        if key is None:
            raise FcError(403, "InvalidAccessKeyID", f"invalid access key ID '{key_id}'")
        return key

    def _authenticate(
        self, method: str, path: str, lower: Mapping[str, str], payload: bytes
    ) -> tuple[KeyPair, tuple[str, str] | None]:
        """The FC 2.0 scheme; the replay key is accepted once the invocation is."""
        authorization = lower.get("authorization", "")
        if not authorization.startswith("FC ") or ":" not in authorization:
            raise FcError(
                403,
                "AccessDenied",
                "the Authorization header is missing or is not 'FC <AccessKeyId>:<signature>' "
                f"nor '{ACS3} Credential=...'",
            )
        key_id, _, signature = authorization[3:].partition(":")
        if not lower.get("date"):
            raise FcError(
                400, "MissingRequiredHeader", "required HTTP header Date was not specified"
            )
        try:
            when = parsedate_to_datetime(lower["date"])
        except (TypeError, ValueError):
            when = None
        if when is None or when.tzinfo is None:
            raise FcError(
                400,
                "InvalidArgument",
                "the Date header is not an RFC 1123 date (Mon, 02 Jan 2006 15:04:05 GMT)",
            )
        key = self._key(key_id)
        expected = expected_signature(key.secret, method, path, lower)
        if not hmac.compare_digest(expected, signature):
            raise FcError(403, "SignatureNotMatch", _SIGNATURE_MISMATCH)
        self._check_skew(when, "Date")
        token = lower.get("x-fc-security-token")
        if (key.security_token or None) != (token or None):
            raise FcError(
                403, "InvalidSecurityToken", "the security token does not match the access key"
            )
        return key, (signature, hashlib.sha256(payload).hexdigest())

    def _authenticate_acs3(
        self, method: str, raw_path: str, query: str, lower: Mapping[str, str], payload: bytes
    ) -> tuple[KeyPair, None]:
        """ACS3-HMAC-SHA256 (emulator/acs3.py), as the official FC 3.0 SDK signs; the nonce is
        spent here. Refusals carry Function Compute's codes."""

        def fresh(nonce: str) -> bool:
            with self.lock:
                self._forget_old(self._nonces)
                if nonce in self._nonces:
                    return False
                self._nonces[nonce] = self.clock()
                return True

        try:
            verified = acs3.verify(
                method,
                raw_path,
                query,
                lower,
                payload,
                keys=self.emulator.keys,
                now=self.clock(),
                use_nonce=fresh,
            )
        except acs3.Rejected as exc:
            status, code = _ACS3_ERRORS[exc.kind]
            message = _SIGNATURE_MISMATCH if exc.kind == acs3.SIGNATURE else exc.message
            raise FcError(status, code, message) from None
        return verified.key, None

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


def install(
    emulator: Emulator, *, max_workers: int = 8, clock: Callable[[], float] = time.time
) -> FcBackend:
    """Serve Function Compute's invoke API from ``emulator`` (both front doors)."""
    backend = FcBackend(emulator, max_workers=max_workers, clock=clock)
    emulator.routes.append(backend.route)
    return backend
