"""Secret scrubbing: the one place that makes a text from outside safe to log, return or raise.

A URL's path and query often are its credential (a DingTalk ``access_token``, a webhook token, a
signed SDK request's ``Signature`` and ``SecurityToken``), and an SDK's error may quote the
string it signed. Every error message and destination the guard writes goes through one of the
functions here; each ends with ``logs.redact``, which masks every secret registered with
``logs.register_secret`` (credentials, webhook tokens, signatures) wherever it turns up.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from .logs import redact, register_secret

MAX_TEXT_CHARS = 500  # an error text longer than this is cut: it is for a person, not a dump

QUERY = re.compile(r"\?[^\s'\")]*")  # a query string inside free text, up to a quote or space
QUERY_REMOVED = "?<query removed>"
_URL = re.compile(r"(https?://[^/\s'\"?#]+)[^\s'\")]*")  # scheme and host, then the rest
_URL_FIELD = re.compile(r"(url: )\S+")  # urllib3's "... with url: /path?query (Caused by ...)"
_STRING_TO_SIGN = re.compile(r"(string to sign is:).*", re.DOTALL)  # the SDK's signature error


def remove_queries(text: str) -> str:
    """Every query string in the text replaced by ``?<query removed>``."""
    return QUERY.sub(QUERY_REMOVED, text)


def cut_urls(text: str) -> str:
    """Every URL cut to its scheme and host (``https://host/...``), and the path urllib3 quotes
    after ``url:`` removed."""
    text = _URL.sub(r"\1/...", text)
    return _URL_FIELD.sub(r"\1<removed>", text)


def api_message(message: str) -> str:
    """An API's or SDK's error message, safe to keep in an error: no string to sign, no query
    string (the signed URL's), no registered secret."""
    text = _STRING_TO_SIGN.sub(r"\1<removed>", str(message))
    return redact(remove_queries(text))


def error_text(text: str) -> str:
    """A delivery error (an exception's text, a service's answer), safe to log and return:
    URLs cut to their host, query strings removed, every registered secret masked, and at most
    ``MAX_TEXT_CHARS`` characters."""
    text = redact(remove_queries(cut_urls(str(text))))
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 3] + "..."


def safe_destination(url: str) -> str:
    """``scheme://host[:port]``, and ``/...`` when there is a path or a query: for logs that
    say where something was sent without saying the credential in its URL."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    rest = "/..." if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def register_url_secrets(url: str) -> None:
    """Every query value of a URL (DingTalk's ``access_token``, a webhook's token), and the
    query as a whole, masked in every log line from now on."""
    parts = urlsplit(url)
    for _, value in parse_qsl(parts.query, keep_blank_values=False):
        register_secret(value)
    if parts.query:
        register_secret(parts.query)


_ERRNO_REASON = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_TIMED_OUT = re.compile(r"(read|connect(ion)?) timed out", re.IGNORECASE)


def connection_problem(message: str, endpoint: str) -> str:
    """What an HTTP library's connection error says, in one short line: ``cannot reach
    <endpoint>: connection refused`` instead of a pool's repr and object addresses."""
    text = str(message)
    reason = _ERRNO_REASON.search(text)
    if reason:
        why = reason.group(1).strip()
    elif _TIMED_OUT.search(text):
        why = _TIMED_OUT.search(text).group(0).capitalize() + "."  # type: ignore[union-attr]
    else:
        why = "no answer"
    return f"cannot reach {endpoint}: {why.rstrip('.')}. Check the endpoint, and that it is up."
