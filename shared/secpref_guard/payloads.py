"""Trigger payloads as bytes: decoded with size and depth limits, before any model is built.

Function Compute hands a handler its event as bytes. Every mode decodes them here first, so a
payload that is too large, not UTF-8, not JSON or nested deep enough to exhaust the parser's
recursion is refused with one clear ``EventError`` (standard library only: the timer and the
worker never build the audit-event models).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import GuardError

if TYPE_CHECKING:  # the type only: this module stays on the standard library at run time
    from pydantic import ValidationError

MAX_EVENT_BYTES = 256 * 1024  # EventBridge's event size limit; a larger payload is not an event
MAX_DEPTH = 32


class EventError(GuardError, ValueError):
    """A trigger payload that cannot be read. The message names the field and the problem."""

    code = "MalformedEvent"


def load_json(event: bytes | str | dict | None, what: str) -> Any:
    """Decode a trigger payload (Function Compute passes bytes) with size and depth limits."""
    if event is None:
        return None
    if isinstance(event, dict):
        return event
    if isinstance(event, (bytes, bytearray)):
        if len(event) > MAX_EVENT_BYTES:
            raise EventError(f"{what}: {len(event)} bytes, more than {MAX_EVENT_BYTES}")
        try:
            text = bytes(event).decode("utf-8")
        except UnicodeDecodeError:
            raise EventError(f"{what}: not UTF-8 text") from None
    elif isinstance(event, str):
        text = event
        if len(text.encode("utf-8")) > MAX_EVENT_BYTES:
            raise EventError(f"{what}: more than {MAX_EVENT_BYTES} bytes")
    else:
        raise EventError(f"{what}: expected bytes, got {type(event).__name__}")
    if not text.strip():
        return None
    if _nesting(text) > MAX_DEPTH:
        raise EventError(f"{what}: nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventError(f"{what}: not JSON ({exc.msg} at position {exc.pos})") from None


def explain(exc: ValidationError, prefix: str) -> str:
    """A pydantic ``ValidationError`` of a payload in one line: where (under ``prefix``), what."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    where = f"{prefix}.{where}" if prefix and where else (prefix or where)
    return f"{where}: {error['msg']}"


def _nesting(text: str) -> int:
    """The deepest bracket nesting outside strings (cheap; guards json's recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
