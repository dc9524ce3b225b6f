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
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

LOGGER_NAME = "secpref_guard"
MASK = "***"
MIN_SECRET_CHARS = 6  # shorter values are not treated as secrets
# A scope keeps the values of its newest registration and of the one before it: a call made
# with credentials just refreshed away (on another thread, or by a concurrent invocation of the
# same instance) may still be running, and its errors must stay masked. Older ones are dropped.
SCOPE_GENERATIONS = 2
# Unscoped values (webhook tokens and DingTalk signatures from notify.py) are bounded too: a warm
# instance lives for days and signs a new DingTalk URL per message. Beyond this many values the
# least recently registered is dropped; a value in use is registered again by every invocation
# (the notifier builds its channels per invocation), which keeps it among the recent ones.
MAX_UNSCOPED_SECRETS = 2048
# Up to this many masked strings redact() looks for each with str.find (C speed, 0.2 to 0.75 us
# per string and KB of text); beyond, it looks every position of the text up in an index by
# the strings' first MIN_SECRET_CHARS characters (0.1 ms per KB, whatever the number of
# strings). Measured on CPython 3.10: the two cost the same at 130 to 500 strings.
FEW_SECRETS = 128
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "secpref_guard_log_context", default=None
)


def _masked_forms(value: str | None) -> frozenset[str]:
    """The value as it is, and percent-encoded once and twice (as it appears in a URL and in a
    string to sign); every form is at least as long as the value."""
    if not value or len(value) < MIN_SECRET_CHARS:
        return frozenset()
    once = quote(value, safe="~")
    return frozenset({value, once, quote(once, safe="~"), quote(value, safe="")})


class _SecretRegistry:
    """Every masked string, who holds it, and the structures redact() searches with.

    Writers take the lock. redact() reads without it: the index's buckets and the tuple of few
    secrets are immutable and replaced whole, so a reader sees each as it was before or after a
    change, never half of one (a value registered while a line is being redacted may miss that
    line, as it would if registered a moment later).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[str, int] = {}  # masked string -> registrations that hold it
        self._scopes: dict[str, list[frozenset[str]]] = {}  # generations, oldest first
        self._unscoped: OrderedDict[str, frozenset[str]] = OrderedDict()  # LRU: value -> forms
        self._index: dict[str, tuple[str, ...]] = {}  # first characters -> strings, longest first
        self._few: tuple[str, ...] | None = ()  # every masked string while there are few

    def register(self, values: Iterable[str | None], scope: str | None) -> None:
        with self._lock:
            if scope is None:
                for value in values:
                    forms = _masked_forms(value)
                    if not forms or value is None:
                        continue
                    if value in self._unscoped:
                        self._unscoped.move_to_end(value)
                        continue
                    self._unscoped[value] = forms
                    self._hold(forms)
                    while len(self._unscoped) > MAX_UNSCOPED_SECRETS:
                        self._release(self._unscoped.popitem(last=False)[1])
            else:
                forms = frozenset().union(*(_masked_forms(v) for v in values))
                generations = self._scopes.setdefault(scope, [])
                if generations and generations[-1] == forms:
                    return  # the same values again (e.g. the same credentials rebuilt)
                generations.append(forms)
                self._hold(forms)
                while len(generations) > SCOPE_GENERATIONS:
                    self._release(generations.pop(0))
            self._refresh_few()

    def forget(self, scope: str) -> None:
        with self._lock:
            for forms in self._scopes.pop(scope, ()):
                self._release(forms)
            self._refresh_few()

    def __len__(self) -> int:
        return len(self._holders)

    def _hold(self, forms: frozenset[str]) -> None:
        for secret in forms:
            held = self._holders.get(secret, 0)
            self._holders[secret] = held + 1
            if not held:
                key = secret[:MIN_SECRET_CHARS]
                bucket = (*self._index.get(key, ()), secret)
                self._index[key] = tuple(sorted(bucket, key=len, reverse=True))

    def _release(self, forms: frozenset[str]) -> None:
        for secret in forms:
            held = self._holders[secret] - 1
            if held:
                self._holders[secret] = held
                continue
            del self._holders[secret]
            key = secret[:MIN_SECRET_CHARS]
            bucket = tuple(s for s in self._index.get(key, ()) if s != secret)
            if bucket:
                self._index[key] = bucket
            else:
                self._index.pop(key, None)

    def _refresh_few(self) -> None:
        self._few = tuple(self._holders) if len(self._holders) <= FEW_SECRETS else None

    def redact(self, text: str) -> str:
        few = self._few
        if few is None:
            spans = _find_indexed(text, self._index)
        elif few:
            spans = _find_each(text, few)
        else:
            return text
        return _mask(text, spans) if spans else text


def _find_each(text: str, secrets: Iterable[str]) -> list[tuple[int, int]]:
    """Where each secret occurs in the text: (start, end) of every occurrence."""
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        start = text.find(secret)
        while start >= 0:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    return spans


def _find_indexed(text: str, index: Mapping[str, tuple[str, ...]]) -> list[tuple[int, int]]:
    """The longest secret starting at each position of the text, found through the index."""
    width = MIN_SECRET_CHARS
    starts = [i for i in range(len(text) - width + 1) if text[i : i + width] in index]
    spans: list[tuple[int, int]] = []
    for start in starts:
        for secret in index.get(text[start : start + width], ()):
            if text.startswith(secret, start):
                spans.append((start, start + len(secret)))
                break
    return spans


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """Every character inside an occurrence of a secret is masked. Overlapping occurrences are
    one mask: a secret that contains (or overlaps) another is masked whole."""
    spans.sort()
    parts: list[str] = []
    done = 0  # text[:done] is already in parts
    start, end = spans[0]
    for next_start, next_end in spans[1:]:
        if next_start < end:
            end = max(end, next_end)
            continue
        parts += (text[done:start], MASK)
        done = end
        start, end = next_start, next_end
    parts += (text[done:start], MASK, text[end:])
    return "".join(parts)


_registry = _SecretRegistry()


def register_secret(value: str | None, scope: str | None = None) -> None:
    """Mask this value wherever it would appear in a log line or an error message: as it is,
    and percent-encoded once and twice (as it appears in a URL and in a string to sign).
    Values shorter than six characters are not treated as secrets.

    ``scope`` names what the value belongs to (credentials use their ``source``, e.g.
    ``assumed role <arn>``): registering the same scope again replaces its values (the previous
    registration's stay masked until the next one, see SCOPE_GENERATIONS), so credentials
    refreshed every hour for thousands of accounts keep the registry at one set per account.
    Unscoped values are kept up to MAX_UNSCOPED_SECRETS, the least recently registered dropped
    first.
    """
    _registry.register((value,), scope)


def register_secrets(values: Iterable[str | None], scope: str | None = None) -> None:
    """As ``register_secret`` for several values; with a scope, together they replace its
    values (a key pair's secret and its security token)."""
    _registry.register(tuple(values), scope)


def forget_secrets(scope: str) -> None:
    """Stop masking the values of a scope (unless another registration holds them too)."""
    _registry.forget(scope)


def registered_secret_count() -> int:
    """How many strings are masked: every form of every registered value counts."""
    return len(_registry)


def redact(text: str) -> str:
    """The text with every registered secret masked. Cost: one str.find per masked string
    while there are few; beyond FEW_SECRETS, one index look-up per character of the text."""
    return _registry.redact(text)


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
        text = redact(json.dumps(line, default=_jsonable, ensure_ascii=False))
        return text.translate(_LINE_BREAKS)  # after redact: secrets are registered raw


# Every character str.splitlines() breaks a line at. json.dumps escapes the ASCII ones (below
# U+0020) itself; with ensure_ascii=False it leaves U+0085, U+2028 and U+2029 raw, and a reader
# that splits lines the way Python (or JavaScript, for U+2028/9) does would see one record as
# several. Inside a JSON string the \uXXXX escape reads back as the same character.
_LINE_BREAKS = {ord(ch): f"\\u{ord(ch):04x}" for ch in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


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
    output. The guard reports API failures itself, through redacted exceptions.

    Called for every client made (per account in an organisation-wide run), it sets a level
    only where it differs: each ``setLevel`` clears the level cache of every logger in the
    process (on Python 3.12, with the 39 loggers of a run: 0.07 ms a call before, 0.02 ms after).
    """
    silent = logging.CRITICAL + 1
    names = dict.fromkeys(["aliyunsdkcore", *logging.root.manager.loggerDict])
    for name in names:
        if name == "aliyunsdkcore" or name.startswith("aliyunsdkcore."):
            sdk_logger = logging.getLogger(name)
            for handler in list(sdk_logger.handlers):
                sdk_logger.removeHandler(handler)
            if sdk_logger.level != silent:
                sdk_logger.setLevel(silent)
            sdk_logger.propagate = False
