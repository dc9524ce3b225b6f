"""Structured logs: one JSON object per line, the shape Log Service indexes.

Every line carries the invocation's context (request id, trigger, function) set with
``bind``; every secret that the guard handles is registered with ``register_secret`` and masked
in every line, whatever field it turns up in. The SDK's own loggers, which print security
tokens and signed URLs at DEBUG and ERROR, are silenced by ``silence_sdk_loggers``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

LOGGER_NAME = "secpref_guard"
MASK = "***"
_secrets: set[str] = set()
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "secpref_guard_log_context", default=None
)


def register_secret(value: str | None) -> None:
    """Mask this value wherever it would appear in a log line or an error message: as it is,
    and percent-encoded once and twice (as it appears in a URL and in a string to sign).
    Values shorter than six characters are not treated as secrets."""
    if not value or len(value) < 6:
        return
    once = quote(value, safe="~")
    _secrets.update({value, once, quote(once, safe="~"), quote(value, safe="")})


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields to every log line written inside the block (per thread and task)."""
    current = dict(_context.get() or {})
    current.update({k: v for k, v in fields.items() if v is not None})
    token = _context.set(current)
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_context.get() or {})
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update(extra)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            line["error_type"] = type(exc).__name__
            line.setdefault("error", str(exc))
        return redact(json.dumps(line, default=_jsonable, ensure_ascii=False))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of the write (it may be replaced, e.g. by a
    test runner or a local invocation), never to a stream that has since been closed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def configure(level: str | int = "INFO", stream: Any = None) -> None:
    """Send the guard's logs as JSON lines to stderr (Function Compute ships them to SLS)."""
    logger = get_logger()
    for handler in list(logger.handlers):
        if getattr(handler, "_secpref_guard", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter())
    handler._secpref_guard = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    logger.propagate = False
    silence_sdk_loggers()


def event(level: int, message: str, /, **fields: Any) -> None:
    """Log one decision or fact with its fields as top-level JSON keys."""
    get_logger().log(level, message, extra={"fields": fields})


def silence_sdk_loggers() -> None:
    """aliyun-python-sdk-core logs request parameters (with SecurityToken) at DEBUG, signed URLs
    at ERROR, and attaches its own DEBUG stream handler to one module: none of it may reach our
    output. The guard reports API failures itself, through redacted exceptions."""
    for name in list(logging.root.manager.loggerDict):
        if name == "aliyunsdkcore" or name.startswith("aliyunsdkcore."):
            sdk_logger = logging.getLogger(name)
            for handler in list(sdk_logger.handlers):
                sdk_logger.removeHandler(handler)
            sdk_logger.setLevel(logging.CRITICAL + 1)
            sdk_logger.propagate = False
    root_sdk = logging.getLogger("aliyunsdkcore")
    root_sdk.setLevel(logging.CRITICAL + 1)
    root_sdk.propagate = False
