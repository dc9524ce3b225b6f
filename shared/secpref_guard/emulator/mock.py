"""In-process front door: the emulator behind ``responses``, on the SDK's own HTTP path.

aliyun-python-sdk-core sends through a vendored copy of requests, which ``responses`` does not
patch by default; ``SDK_SEND`` is that copy's adapter. Everything above it (signing, the SDK's
request building and error parsing) runs for real.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import responses

from .responses import Emulator

SDK_SEND = "aliyunsdkcore.vendored.requests.adapters.HTTPAdapter.send"
DEFAULT_ENDPOINT = "http://127.0.0.1:8765"


@contextmanager
def mock_endpoint(
    emulator: Emulator | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
    target: str = SDK_SEND,
) -> Iterator[Emulator]:
    """Serve ``emulator`` at ``endpoint`` for every request the SDK makes inside the block."""
    emu = emulator or Emulator.with_default_key()
    with responses.RequestsMock(target=target, assert_all_requests_are_fired=False) as rsps:
        pattern = re.compile(re.escape(endpoint.rstrip("/")) + r"(/.*)?$")

        def callback(request: Any) -> tuple[int, dict[str, str], bytes]:
            return emu.handle(request.method, request.url, dict(request.headers), request.body)

        for method in ("GET", "POST"):
            rsps.add_callback(method, pattern, callback=callback)
        yield emu
