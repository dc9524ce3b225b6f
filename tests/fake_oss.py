"""A local fake of the OSS object API, served through `responses` on oss2's real HTTP path.

oss2 sends through the ordinary ``requests`` library, which `responses` patches: everything
above the socket (V4 signing, URL building, error parsing into oss2's exceptions, the CRC-64
check of uploads) runs for real. What it serves, as the OSS API reference describes it:

- GetObject: the content with ETag, Last-Modified, ``x-oss-object-type``,
  ``x-oss-hash-crc64ecma`` and, for an appendable object, ``x-oss-next-append-position``;
  404 NoSuchKey (with the XML error body) for a missing object;
- PutObject: a Normal object; ``x-oss-forbid-overwrite: true`` makes it 409 FileAlreadyExists
  when the name exists. Headers the API does not document (If-Match among them) are ignored,
  as any header the service does not know;
- AppendObject (``POST ?append&position=N``): creates the object at position 0, appends when
  N equals the length, else 409 PositionNotEqualToLength with ``x-oss-next-append-position``;
  409 ObjectNotAppendable on a Normal object. Each request is atomic (one lock).

Every request must carry an OSS V4 signature (``Authorization: OSS4-HMAC-SHA256
Credential=<AccessKeyId>/<date>/<region>/oss/aliyun_v4_request, Signature=<hex>``) made with a
known key pair, and the STS token of that pair when it has one; otherwise 403 with the real
error codes. Faults are injected per operation: an error reply (``fail``), a connection that
never reaches the store (``disconnect``), or one whose reply is lost after the store applied
it (``lose_response``). ``calls`` records every request that reached the fake.

The division of labour is moto's: ``OssServiceError`` carries the real code and status,
``OssBackend`` is the state, ``FakeOss`` parses, authenticates and renders, ``mock_oss`` is the
door.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.sax.saxutils import escape

import requests
import responses
from requests.structures import CaseInsensitiveDict

DEFAULT_ENDPOINT = "https://oss-cn-hangzhou.aliyuncs.com"
DEFAULT_REGION = "cn-hangzhou"
DEFAULT_BUCKET = "secpref-guard-state"
ACCESS_KEY_ID = "oss-test-key-id"
ACCESS_KEY_SECRET = "oss-test-key-secret"
STS_KEY_ID = "STS.oss-test-key-id"
STS_KEY_SECRET = "oss-test-sts-secret"
STS_TOKEN = "oss-test-security-token"

_CRC64_POLY = 0xC96C5795D7870F42  # ECMA-182, reflected (CRC-64/XZ, what OSS reports)
_CRC64_TABLE: list[int] = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ _CRC64_POLY if _crc & 1 else _crc >> 1
    _CRC64_TABLE.append(_crc)


def crc64(data: bytes) -> int:
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = _CRC64_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


# -- exceptions: the service's own error codes ---------------------------------------------------


class OssServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = {k.replace("_", "-"): v for k, v in headers.items()}


def no_such_bucket() -> OssServiceError:
    return OssServiceError(404, "NoSuchBucket", "The specified bucket does not exist.")


def no_such_key() -> OssServiceError:
    return OssServiceError(404, "NoSuchKey", "The specified key does not exist.")


def position_not_equal_to_length(length: int) -> OssServiceError:
    return OssServiceError(
        409,
        "PositionNotEqualToLength",
        "Position is not equal to file length",
        x_oss_next_append_position=str(length),
    )


def object_not_appendable() -> OssServiceError:
    return OssServiceError(409, "ObjectNotAppendable", "The object is not appendable")


def file_already_exists() -> OssServiceError:
    return OssServiceError(
        409,
        "FileAlreadyExists",
        "The object you specified already exists and can not be overwritten.",
    )


# -- the model ----------------------------------------------------------------------------------


@dataclass
class StoredObject:
    data: bytes
    object_type: str  # "Normal" or "Appendable"
    content_type: str = "application/octet-stream"
    last_modified: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def etag(self) -> str:
        return '"' + hashlib.md5(self.data, usedforsecurity=False).hexdigest().upper() + '"'


class OssBackend:
    """Buckets of objects; every operation is atomic."""

    def __init__(self, *buckets: str) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, StoredObject]] = {name: {} for name in buckets}

    def create_bucket(self, name: str) -> None:
        with self._lock:
            self._buckets.setdefault(name, {})

    def _bucket(self, name: str) -> dict[str, StoredObject]:
        if name not in self._buckets:
            raise no_such_bucket()
        return self._buckets[name]

    def get_object(self, bucket: str, key: str) -> StoredObject:
        with self._lock:
            stored = self._bucket(bucket).get(key)
            if stored is None:
                raise no_such_key()
            return StoredObject(
                stored.data, stored.object_type, stored.content_type, stored.last_modified
            )

    def put_object(
        self, bucket: str, key: str, data: bytes, content_type: str, forbid_overwrite: bool = False
    ) -> StoredObject:
        with self._lock:
            objects = self._bucket(bucket)
            if forbid_overwrite and key in objects:
                raise file_already_exists()
            objects[key] = StoredObject(data, "Normal", content_type)
            return objects[key]

    def append_object(
        self, bucket: str, key: str, position: int, data: bytes, content_type: str
    ) -> StoredObject:
        with self._lock:
            objects = self._bucket(bucket)
            stored = objects.get(key)
            if stored is None:
                if position != 0:
                    raise position_not_equal_to_length(0)
                objects[key] = stored = StoredObject(b"", "Appendable", content_type)
            elif stored.object_type != "Appendable":
                raise object_not_appendable()
            if position != len(stored.data):
                raise position_not_equal_to_length(len(stored.data))
            stored.data += data
            stored.last_modified = datetime.now(timezone.utc)
            return stored

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object's content, for assertions."""
        with self._lock:
            return {key: stored.data for key, stored in self._bucket(bucket).items()}


# -- the HTTP door: parse, authenticate, dispatch, render ---------------------------------------


@dataclass(frozen=True)
class Call:
    operation: str
    bucket: str
    key: str
    status: int  # 0: the connection failed before a reply


@dataclass
class _Fault:
    kind: str  # "error", "disconnect", "lose-response"
    operation: str | None
    remaining: int | None  # None: until recover()
    status: int = 503
    code: str = "ServiceUnavailable"
    message: str = "Please reduce your request rate."


class FakeOss:
    def __init__(
        self,
        backend: OssBackend | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
        region: str = DEFAULT_REGION,
        keys: dict[str, tuple[str, str | None]] | None = None,
    ) -> None:
        self.backend = backend or OssBackend(DEFAULT_BUCKET)
        self.endpoint = endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).hostname or ""
        self.region = region
        self.keys = (
            keys
            if keys is not None
            else {
                ACCESS_KEY_ID: (ACCESS_KEY_SECRET, None),
                STS_KEY_ID: (STS_KEY_SECRET, STS_TOKEN),
            }
        )
        self.calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()

    # -- fault injection

    def fail(
        self,
        status: int = 503,
        code: str = "ServiceUnavailable",
        message: str = "Please reduce your request rate.",
        *,
        times: int | None = 1,
        operation: str | None = None,
    ) -> None:
        """The next ``times`` requests (of ``operation``) get this error reply."""
        self._faults.append(_Fault("error", operation, times, status, code, message))

    def disconnect(self, *, times: int | None = 1, operation: str | None = None) -> None:
        """The next ``times`` requests fail to connect: nothing reaches the store."""
        self._faults.append(_Fault("disconnect", operation, times))

    def lose_response(self, *, times: int | None = 1, operation: str | None = None) -> None:
        """The next ``times`` requests are applied, but their reply never arrives."""
        self._faults.append(_Fault("lose-response", operation, times))

    def recover(self) -> None:
        self._faults.clear()

    def count(self, operation: str | None = None) -> int:
        return sum(1 for c in self.calls if operation is None or c.operation == operation)

    def _take_fault(self, operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.operation not in (None, operation):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    # -- one request

    def handle(
        self, method: str, url: str, request_headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        headers: Mapping[str, str] = CaseInsensitiveDict(request_headers)
        request_id = uuid.uuid4().hex[:24].upper()
        parts = urlsplit(url)
        bucket, key = self._bucket_and_key(parts.hostname or "", parts.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        operation = self._operation(method, key, params)
        fault = self._take_fault(operation)
        if fault is not None and fault.kind == "disconnect":
            self._log(Call(operation, bucket, key, 0))
            raise requests.ConnectionError(f"fake OSS: connection to {parts.hostname} refused")
        try:
            if fault is not None and fault.kind == "error":
                raise OssServiceError(fault.status, fault.code, fault.message)
            self._authenticate(method, bucket, key, parts.query, headers)
            status, reply_headers, reply = self._dispatch(
                operation, bucket, key, params, headers, body
            )
        except OssServiceError as exc:
            status, reply_headers, reply = (
                exc.status,
                dict(exc.headers),
                _error_xml(exc, request_id, f"{bucket}.{self.host}", key),
            )
            reply_headers["Content-Type"] = "application/xml"
        self._log(Call(operation, bucket, key, status))
        if fault is not None and fault.kind == "lose-response":
            raise requests.ConnectionError("fake OSS: connection reset before the reply")
        reply_headers["x-oss-request-id"] = request_id
        reply_headers["Date"] = format_datetime(datetime.now(timezone.utc), usegmt=True)
        reply_headers["Server"] = "AliyunOSS"
        return status, reply_headers, reply

    def _log(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _bucket_and_key(self, hostname: str, path: str) -> tuple[str, str]:
        if hostname.endswith("." + self.host):  # virtual-hosted style, oss2's default
            return hostname[: -len(self.host) - 1], unquote(path.lstrip("/"))
        bucket, _, key = path.lstrip("/").partition("/")  # path style (IP endpoints)
        return unquote(bucket), unquote(key)

    @staticmethod
    def _operation(method: str, key: str, params: dict[str, str]) -> str:
        if key and method == "GET" and not params:
            return "GetObject"
        if key and method == "PUT" and not params:
            return "PutObject"
        if key and method == "POST" and "append" in params:
            return "AppendObject"
        return f"{method} {'?' + '&'.join(params) if params else ''}".strip()

    def _dispatch(
        self,
        operation: str,
        bucket: str,
        key: str,
        params: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        content_type = headers.get("content-type") or "application/octet-stream"
        if operation == "GetObject":
            stored = self.backend.get_object(bucket, key)
            reply = _object_headers(stored)
            reply["Content-Type"] = stored.content_type
            reply["Content-Length"] = str(len(stored.data))
            return 200, reply, stored.data
        if operation == "PutObject":
            forbid = headers.get("x-oss-forbid-overwrite", "false").lower()
            if forbid not in ("true", "false"):
                raise OssServiceError(
                    400, "InvalidArgument", "x-oss-forbid-overwrite must be true or false"
                )
            stored = self.backend.put_object(bucket, key, body, content_type, forbid == "true")
            return 200, _object_headers(stored), b""
        if operation == "AppendObject":
            if not params.get("position", "").isdigit():
                raise OssServiceError(
                    400, "InvalidArgument", "position must be a non-negative integer"
                )
            stored = self.backend.append_object(
                bucket, key, int(params["position"]), body, content_type
            )
            return 200, _object_headers(stored), b""
        raise OssServiceError(501, "NotImplemented", f"the fake does not serve {operation}")

    # -- OSS signature V4

    def _authenticate(
        self, method: str, bucket: str, key: str, query: str, headers: Mapping[str, str]
    ) -> None:
        authorization = headers.get("authorization", "")
        if not authorization.startswith("OSS4-HMAC-SHA256 "):
            raise OssServiceError(403, "AccessDenied", "This bucket accepts OSS signature V4 only.")
        fields = dict(
            item.strip().split("=", 1)
            for item in authorization[len("OSS4-HMAC-SHA256 ") :].split(",")
            if "=" in item
        )
        access_key_id, _, scope = fields.get("Credential", "").partition("/")
        if access_key_id not in self.keys:
            raise OssServiceError(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
            )
        secret, token = self.keys[access_key_id]
        if token is not None and headers.get("x-oss-security-token") != token:
            raise OssServiceError(
                403, "InvalidSecurityToken", "The security token you provided is invalid."
            )
        timestamp = headers.get("x-oss-date", "")
        sign_date, _, rest = scope.partition("/")
        if rest != f"{self.region}/oss/aliyun_v4_request" or sign_date != timestamp[:8]:
            raise OssServiceError(
                403, "SignatureDoesNotMatch", f"Invalid credential scope {scope!r}"
            )
        additional = sorted(h for h in fields.get("AdditionalHeaders", "").split(";") if h)
        canonical_headers = sorted(
            (name.lower(), value.strip())
            for name, value in headers.items()
            if name.lower().startswith("x-oss-")
            or name.lower() in ("content-type", "content-md5", *additional)
        )
        query_pairs = sorted(
            (_v4_encode(k), _v4_encode(v)) for k, v in parse_qsl(query, keep_blank_values=True)
        )
        canonical_request = "\n".join(
            [
                method,
                _v4_encode(f"/{bucket}/{key}", keep_slash=True),
                "&".join(f"{k}={v}" if v else k for k, v in query_pairs),
                "".join(f"{k}:{v}\n" for k, v in canonical_headers),
                ";".join(additional),
                headers.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD"),
            ]
        )
        string_to_sign = "\n".join(
            [
                "OSS4-HMAC-SHA256",
                timestamp,
                scope,
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            ]
        )
        signing_key = ("aliyun_v4" + secret).encode("utf-8")
        for part in (sign_date, self.region, "oss", "aliyun_v4_request"):
            signing_key = hmac.new(signing_key, part.encode("utf-8"), hashlib.sha256).digest()
        expected = hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            raise OssServiceError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )


def _v4_encode(text: str, keep_slash: bool = False) -> str:
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def _object_headers(stored: StoredObject) -> dict[str, str]:
    headers = {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_modified, usegmt=True),
        "x-oss-object-type": stored.object_type,
        "x-oss-hash-crc64ecma": str(crc64(stored.data)),
        "x-oss-storage-class": "Standard",
    }
    if stored.object_type == "Appendable":
        headers["x-oss-next-append-position"] = str(len(stored.data))
    return headers


def _error_xml(exc: OssServiceError, request_id: str, host_id: str, key: str) -> bytes:
    extra = f"  <Key>{escape(key)}</Key>\n" if exc.code == "NoSuchKey" else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{escape(exc.code)}</Code>\n  <Message>{escape(exc.message)}</Message>\n"
        f"  <RequestId>{request_id}</RequestId>\n  <HostId>{escape(host_id)}</HostId>\n"
        f"{extra}</Error>\n"
    ).encode()


def _body_bytes(body: Any) -> bytes:
    """What requests would put on the wire: bytes, text, a file or an iterable of chunks."""
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):
        return _body_bytes(body.read())
    return b"".join(_body_bytes(chunk) for chunk in body)


@contextmanager
def mock_oss(fake: FakeOss | None = None) -> Iterator[FakeOss]:
    """Serve ``fake`` for every request to its endpoint (any bucket) inside the block."""
    oss = fake or FakeOss()
    host = re.escape(oss.host)
    scheme = re.escape(urlsplit(oss.endpoint).scheme)
    pattern = re.compile(rf"^{scheme}://([a-z0-9-]+\.)?{host}(/.*)?$")

    def callback(request: Any) -> tuple[int, dict[str, str], bytes]:
        return oss.handle(request.method, request.url, request.headers, _body_bytes(request.body))

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for method in ("GET", "PUT", "POST", "HEAD", "DELETE"):
            rsps.add_callback(method, pattern, callback=callback)
        yield oss


def appends_per_revert(window_minutes: int = 60) -> int:
    """A revert is counted in its day's object, and in the next day's too when its window
    reaches past midnight (UTC): how many appends one revert made now takes."""
    now = datetime.now(timezone.utc)
    midnight = datetime(now.year, now.month, now.day, tzinfo=timezone.utc) + timedelta(days=1)
    return 2 if now + timedelta(minutes=window_minutes) > midnight else 1
