"""Field values: the canonical Python values of every kind of field, and the parsers and
renderers between them and text (an environment variable, an API query parameter).

Canonical values: ``bool`` for booleans, ``int`` for integers, ``str`` for enums, and a
``frozenset[str]`` for the two set-valued fields (network masks in normalised CIDR form,
verification types in lower case), so equality is set equality. Canonical values are for
comparison: a field the guard does not change is sent back as the Get returned it, not in its
canonical rendering.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from typing import Literal, Union

Value = Union[bool, int, str, frozenset]  # noqa: UP007 - a runtime alias, kept readable on 3.10

MAX_LOGIN_NETWORK_MASKS = 40
MAX_LOGIN_NETWORK_MASKS_CHARS = 512
VERIFICATION_TYPE_CHOICES = ("sms", "email")


class FieldValueError(ValueError):
    """A value that the field does not accept; the message says what it does accept.

    ``reason`` is ``range`` for a well-formed value outside the allowed range or choices, and
    ``format`` for text that is no value of the field's type at all (the two kinds of
    ``InvalidParameter.<Name>.*`` error the RAM API documents)."""

    def __init__(self, message: str, reason: Literal["range", "format"] = "format") -> None:
        super().__init__(message)
        self.reason = reason


# The safer direction of a field: which way a value is stricter (see Field.satisfies).
#   lower  - a smaller number is stricter (an ``off`` value, if any, is the weakest of all);
#   higher - a larger number is stricter;
#   true   - true is stricter than false;
#   order  - ``order`` lists the values from the weakest to the strictest;
#   None   - no safer direction: only the baseline value itself is compliant.
Direction = Literal["lower", "higher", "true", "order"]


# --- parsers: text (environment or query parameter) -> canonical value ---------------------


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise FieldValueError(f"expected true or false, got {text!r}")


def ascii_int(text: str) -> int | None:
    """The integer written in ASCII digits with an optional sign, else None ('²', '--5',
    '٣' are digits to str.isdigit but not integers here)."""
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    return int(stripped)


def int_parser(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = ascii_int(text)
        if number is None:
            raise FieldValueError(f"expected an integer from {low} to {high}, got {text!r}")
        if not low <= number <= high:
            raise FieldValueError(
                f"expected an integer from {low} to {high}, got {number}", reason="range"
            )
        return number

    return parse


def int_choice_parser(choices: tuple[int, ...]) -> Callable[[str], int]:
    allowed = ", ".join(str(c) for c in choices)

    def parse(text: str) -> int:
        number = ascii_int(text)
        if number is None or number not in choices:
            raise FieldValueError(
                f"expected one of {allowed}, got {text!r}",
                reason="format" if number is None else "range",
            )
        return number

    return parse


def enum_parser(choices: tuple[str, ...]) -> Callable[[str], str]:
    allowed = ", ".join(choices)

    def parse(text: str) -> str:
        stripped = text.strip()
        if stripped not in choices:
            raise FieldValueError(f"expected one of {allowed}, got {text!r}", reason="range")
        return stripped

    return parse


def _canonical_mask(item: str) -> str:
    try:
        return str(ipaddress.ip_network(item, strict=False))
    except ValueError:
        return item  # read from the API and no network: compared (and sent back) as it is


def canonical_masks(items: Iterable[str]) -> frozenset[str]:
    """Masks as the API returned them, in canonical form for comparison only: spaces dropped,
    host bits cleared, a bare address a /32 (or /128). IPv4 and IPv6 are both read, and none of
    the input limits apply: a value the API holds is never unreadable (36 bare addresses fit in
    512 characters, and do not once normalised). What is sent back is the text as read."""
    return frozenset(_canonical_mask(raw.strip()) for raw in items if raw.strip())


def parse_masks_param(text: str) -> frozenset[str]:
    """A SetSecurityPreference parameter checked as the API checks it (emulator side): IPv4 or
    IPv6 CIDR blocks, at most 40 of them and 512 characters, counted on the text as sent."""
    items = [raw.strip() for raw in text.split(";") if raw.strip()]
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise FieldValueError(f"{item!r} is not an IPv4 or IPv6 CIDR block ({exc})") from None
    if len(items) > MAX_LOGIN_NETWORK_MASKS:
        raise FieldValueError(
            f"at most {MAX_LOGIN_NETWORK_MASKS} masks are allowed, got {len(items)}"
        )
    if len(text) > MAX_LOGIN_NETWORK_MASKS_CHARS:
        raise FieldValueError(
            f"the masks take {len(text)} characters, at most "
            f"{MAX_LOGIN_NETWORK_MASKS_CHARS} are allowed"
        )
    return canonical_masks(items)


def normalise_masks(items: Iterable[str]) -> frozenset[str]:
    """Normalise configured CIDRs: spaces dropped, host bits cleared, a bare address becomes a
    /32; IPv4 only, and within the API's input limits as the guard would send them."""
    masks: set[str] = set()
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        try:
            network = ipaddress.IPv4Network(item, strict=False)
        except ValueError as exc:
            raise FieldValueError(f"{item!r} is not an IPv4 CIDR block ({exc})") from None
        masks.add(str(network))
    if len(masks) > MAX_LOGIN_NETWORK_MASKS:
        raise FieldValueError(
            f"at most {MAX_LOGIN_NETWORK_MASKS} masks are allowed, got {len(masks)}"
        )
    rendered = render_masks(frozenset(masks))
    if len(rendered) > MAX_LOGIN_NETWORK_MASKS_CHARS:
        raise FieldValueError(
            f"the masks take {len(rendered)} characters, at most "
            f"{MAX_LOGIN_NETWORK_MASKS_CHARS} are allowed"
        )
    return frozenset(masks)


def parse_masks(text: str) -> frozenset[str]:
    return normalise_masks(text.split(";"))


def _mask_order(mask: str) -> tuple[int, int, int, str]:
    """Network order: IPv4, then IPv6, then anything the API returned that is no network."""
    try:
        network = ipaddress.ip_network(mask, strict=False)
    except ValueError:
        return (7, 0, 0, mask)
    return (network.version, int(network.network_address), network.prefixlen, mask)


def render_masks(masks: frozenset[str]) -> str:
    return ";".join(sorted(masks, key=_mask_order))


def normalise_verification_types(items: Iterable[str]) -> frozenset[str]:
    result: set[str] = set()
    for raw in items:
        if not isinstance(raw, str):
            raise FieldValueError(f"expected strings sms or email, got {raw!r}")
        item = raw.strip().lower()
        if not item:
            continue
        if item not in VERIFICATION_TYPE_CHOICES:
            raise FieldValueError(f"expected a subset of sms, email, got {raw.strip()!r}")
        result.add(item)
    return frozenset(result)


def parse_verification_types_env(text: str) -> frozenset[str]:
    return normalise_verification_types(text.split(","))


def parse_verification_types_param(text: str) -> frozenset[str]:
    """The API takes a JSON array in one query parameter, e.g. ``["sms","email"]``."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        raise FieldValueError(f"expected a JSON array of sms/email, got {text!r}") from None
    if not isinstance(items, list):
        raise FieldValueError(f"expected a JSON array of sms/email, got {text!r}")
    return normalise_verification_types(items)


def render_verification_types(types: frozenset[str]) -> str:
    return json.dumps(sorted(types), separators=(",", ":"))
