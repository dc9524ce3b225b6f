"""URLs in configuration, parsed the way a client will read them: endpoints and webhooks.

An endpoint is exactly ``scheme://host[:port]``; a webhook may add a path and query. The scheme
and host are lower-cased, the port is 1..65535 in ASCII digits, user information, fragments,
whitespace and control characters are refused, and plain http is accepted only to this machine
(the request would carry a token or a secret). An error quotes the URL without its user
information, query or fragment.
"""

from __future__ import annotations

import ipaddress
import re

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
MAX_URL_CHARS = 2048


def _shown(value: str) -> str:
    """A URL as an error message may quote it: no user information, query or fragment (a
    webhook's token, a password), whatever else is wrong with it."""
    text = re.sub(r"(//)[^/?#]*@", r"\1<user removed>@", value)
    text = re.sub(r"\?[^#]*", "?<query removed>", text)
    return re.sub(r"#.*", "#<fragment removed>", text)


def _host(text: str, value: str) -> str:
    """A DNS name (ASCII, letters, digits and '-' per label), an IPv4 address or a bracketed
    IPv6 address; lower-cased."""
    if not text:
        raise ValueError(f"the URL has no host: {_shown(value)!r}")
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError(f"the IPv6 host is not closed with ']': {_shown(value)!r}")
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv6 address in {_shown(value)!r}") from None
    host = text.lower()
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 address in {_shown(value)!r}") from None
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{text!r} is not a host name (ASCII letters, digits and '-', dot-separated) "
            f"in {_shown(value)!r}"
        )
    return host.removesuffix(".")


def _port(text: str, value: str) -> str:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"the port {text!r} is not a number from 1 to 65535 in {_shown(value)!r}")
    return str(int(text))


def parse_url(value: str, *, path_allowed: bool) -> tuple[str, str, str | None, str]:
    """``(scheme, host, port, rest)`` of an http(s) URL, checked the way a client will read it.

    The scheme and host are lower-cased, the port is 1..65535 in ASCII digits (no ``0x50``, no
    empty port), user information (``user@``), fragments, whitespace and control characters
    are refused; ``rest`` (path and query) must be empty unless ``path_allowed``. Plain http is
    accepted only to this machine (the request would carry a token or a secret)."""
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        raise ValueError(f"the URL contains whitespace or control characters: {_shown(value)!r}")
    scheme, sep, remainder = value.partition("://")
    if not sep or not _SCHEME.match(scheme):
        raise ValueError(f"expected an https:// URL, got {_shown(value)!r}")
    scheme = scheme.lower()
    if scheme not in ("https", "http"):
        raise ValueError(f"expected an https:// URL, got {_shown(value)!r}")
    if "#" in remainder:
        raise ValueError(f"a URL fragment ('#...') is not allowed: {_shown(value)!r}")
    split = min((i for i in (remainder.find("/"), remainder.find("?")) if i >= 0), default=-1)
    authority, rest = (remainder, "") if split < 0 else (remainder[:split], remainder[split:])
    if "@" in authority:
        raise ValueError(
            f"user information ('user@host') is not allowed in the URL: {_shown(value)!r}"
        )
    if authority.startswith("["):
        close = authority.find("]") if "]" in authority else len(authority) - 1
        host_text, port_text = authority[: close + 1], authority[close + 1 :]
        if port_text and not port_text.startswith(":"):
            raise ValueError(f"unexpected text after the IPv6 host in {_shown(value)!r}")
        has_port, port_text = bool(port_text), port_text[1:]
    else:
        host_text, has_port, port_text = authority.partition(":")
        has_port = bool(has_port)
    host = _host(host_text, value)
    port = _port(port_text, value) if has_port else None
    if rest and not path_allowed:
        raise ValueError(f"expected scheme, host and optional port only, got {_shown(value)!r}")
    if scheme == "http" and not is_loopback(host.strip("[]")):
        raise ValueError(
            "plain http is allowed only to this machine (127.0.0.1, localhost); "
            f"{_shown(value)!r} would send its credentials unencrypted: use https://"
        )
    return scheme, host, port, rest


def _origin(scheme: str, host: str, port: str | None) -> str:
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def endpoint(value: str) -> str:
    """``scheme://host[:port]``, normalised (lower-case scheme and host, no trailing '/');
    a value without a scheme is https. Plain http only to this machine (it would carry the
    STS token)."""
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if "://" not in text:
        text = "https://" + text
    if text.endswith("/") and not text.endswith("://"):
        text = text[:-1]
    scheme, host, port, _ = parse_url(text, path_allowed=False)
    return _origin(scheme, host, port)


def url(value: str) -> str:
    """An https URL that may carry a path and query (a webhook), with the scheme and host
    normalised; the path and query are kept exactly as given."""
    scheme, host, port, rest = parse_url(value, path_allowed=True)
    return _origin(scheme, host, port) + rest


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
