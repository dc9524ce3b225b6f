"""In-process front door: the emulator behind ``responses``, on the SDK's own HTTP path.

aliyun-python-sdk-core sends through a vendored copy of requests, which ``responses`` does not
patch by default; ``SDK_SEND`` is that copy's adapter. Everything above it (signing, the SDK's
request building and error parsing) runs for real.

Transport faults (``ImsBackend.inject_transport_fault``) happen here, on the wire: they are
raised as the patched HTTP library's own exceptions, worded as urllib3 words them (a refused
connection names the URL, signed query included, as the real message does), so the SDK turns
them into ``ClientException`` exactly as it would in production.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import responses

from .models import Fault
from .responses import Emulator, Reply

SDK_SEND = "aliyunsdkcore.vendored.requests.adapters.HTTPAdapter.send"
# The official generated SDKs (the Tea core: alibabacloud-tea-openapi, e.g.
# alibabacloud_ims20190815, alibabacloud-fc20230330) send through the ordinary requests.
REQUESTS_SEND = "requests.adapters.HTTPAdapter.send"
DEFAULT_ENDPOINT = "http://127.0.0.1:8765"
DEFAULT_TIMEOUTS = (5.0, 10.0)  # the SDK's defaults: connect, read


@contextmanager
def mock_endpoint(
    emulator: Emulator | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
    target: str = SDK_SEND,
) -> Iterator[Emulator]:
    """Serve ``emulator`` at ``endpoint`` for every request the SDK makes inside the block."""
    emu = emulator or Emulator.with_default_key()
    errors = _exceptions_of(target)
    with responses.RequestsMock(target=target, assert_all_requests_are_fired=False) as rsps:
        pattern = re.compile(re.escape(endpoint.rstrip("/")) + r"(/.*)?$")

        def callback(request: Any) -> Reply:
            fault = _transport_fault(emu, request)
            if fault is not None:
                return _fail_on_the_wire(emu, fault, request, errors)
            return _serve(emu, request)

        for method in ("GET", "POST"):
            rsps.add_callback(method, pattern, callback=callback)
        yield emu


def _serve(emu: Emulator, request: Any) -> Reply:
    return emu.handle(request.method, request.url, dict(request.headers), request.body)


def _exceptions_of(target: str) -> ModuleType:
    """The exceptions module of the requests copy whose adapter ``target`` patches."""
    package = target.split(".adapters.", 1)[0]
    return importlib.import_module(f"{package}.exceptions")


def _transport_fault(emu: Emulator, request: Any) -> Fault | None:
    if not any(f.kind != "error" and f.times > 0 for f in emu.ims.faults):
        return None
    params = Emulator._params(request.url, dict(request.headers), request.body)
    key = emu.keys.get(params.get("AccessKeyId", ""))
    return emu.ims.take_transport_fault(params.get("Action"), key.account if key else None)


def _timeouts(request: Any) -> tuple[float, float]:
    """The (connect, read) timeouts the client passed to the adapter."""
    timeout = getattr(request, "req_kwargs", {}).get("timeout")
    if isinstance(timeout, tuple):
        connect, read = timeout
        return (
            float(connect if connect is not None else DEFAULT_TIMEOUTS[0]),
            float(read if read is not None else DEFAULT_TIMEOUTS[1]),
        )
    if isinstance(timeout, (int, float)):
        return float(timeout), float(timeout)
    return DEFAULT_TIMEOUTS


def _fail_on_the_wire(emu: Emulator, fault: Fault, request: Any, errors: ModuleType) -> Reply:
    parts = urlsplit(request.url)
    pool = f"{parts.scheme.upper()}ConnectionPool(host={parts.hostname!r}, port={parts.port})"
    connect_timeout, read_timeout = _timeouts(request)
    if fault.kind == "connection-error":
        raise errors.ConnectionError(
            f"{pool}: Max retries exceeded with url: {request.path_url} (Caused by "
            "NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f3a2c1d5e50>: "
            "Failed to establish a new connection: [Errno 111] Connection refused'))",
            request=request,
        )
    if fault.kind == "connect-timeout":
        waited = min(fault.delay, connect_timeout) if fault.delay else connect_timeout
        emu.ims.sleep(waited)
        raise errors.ConnectTimeout(
            f"{pool}: Max retries exceeded with url: {request.path_url} (Caused by "
            "ConnectTimeoutError(<urllib3.connection.HTTPConnection object at 0x7f3a2c1d5e50>, "
            f"'Connection to {parts.hostname} timed out. (connect timeout={connect_timeout})'))",
            request=request,
        )
    delay = fault.delay if fault.delay is not None else read_timeout
    if fault.kind == "slow" and delay < read_timeout:
        emu.ims.sleep(delay)
        return _serve(emu, request)
    # a read timeout, or a reply slower than the client waits for
    emu.ims.sleep(min(delay, read_timeout))
    if fault.reached_server:
        _serve(emu, request)  # the service acts; its reply never arrives
    raise errors.ReadTimeout(f"{pool}: Read timed out. (read timeout={read_timeout})")
