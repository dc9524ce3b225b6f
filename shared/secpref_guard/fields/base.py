"""What a field and a setting are: the machinery every setting's table is made of.

A ``Field`` is one API parameter of one account-level setting: the environment variable that
pins it in the baseline, where it sits in the Get response, how a value is parsed from
configuration, from the API and from a query parameter, how it is rendered for the Set, the
documented default the API falls back to when a Set omits it, and its safer direction (which
values are at least as strict as a baseline value). A ``Setting`` is one Get/Set pair of actions
with its field table. The tables themselves live one module per setting next to this one.

Canonical Python values: ``bool`` for booleans, ``int`` for integers, ``str`` for enums, and a
``frozenset[str]`` for the two set-valued fields (network masks in normalised CIDR form,
verification types in lower case), so equality is set equality. Canonical values are for
comparison: a field the guard does not change is sent back as the Get returned it
(``read_response``), not in its canonical rendering.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from typing import Any, Literal, Union

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


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise FieldValueError(f"expected true or false, got {text!r}")


def _ascii_int(text: str) -> int | None:
    """The integer written in ASCII digits with an optional sign, else None ('²', '--5',
    '٣' are digits to str.isdigit but not integers here)."""
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    return int(stripped)


def _int_parser(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = _ascii_int(text)
        if number is None:
            raise FieldValueError(f"expected an integer from {low} to {high}, got {text!r}")
        if not low <= number <= high:
            raise FieldValueError(
                f"expected an integer from {low} to {high}, got {number}", reason="range"
            )
        return number

    return parse


def _int_choice_parser(choices: tuple[int, ...]) -> Callable[[str], int]:
    allowed = ", ".join(str(c) for c in choices)

    def parse(text: str) -> int:
        number = _ascii_int(text)
        if number is None or number not in choices:
            raise FieldValueError(
                f"expected one of {allowed}, got {text!r}",
                reason="format" if number is None else "range",
            )
        return number

    return parse


def _enum_parser(choices: tuple[str, ...]) -> Callable[[str], str]:
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


def _parse_masks_param(text: str) -> frozenset[str]:
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
    rendered = _render_masks(frozenset(masks))
    if len(rendered) > MAX_LOGIN_NETWORK_MASKS_CHARS:
        raise FieldValueError(
            f"the masks take {len(rendered)} characters, at most "
            f"{MAX_LOGIN_NETWORK_MASKS_CHARS} are allowed"
        )
    return frozenset(masks)


def _parse_masks(text: str) -> frozenset[str]:
    return normalise_masks(text.split(";"))


def _mask_order(mask: str) -> tuple[int, int, int, str]:
    """Network order: IPv4, then IPv6, then anything the API returned that is no network."""
    try:
        network = ipaddress.ip_network(mask, strict=False)
    except ValueError:
        return (7, 0, 0, mask)
    return (network.version, int(network.network_address), network.prefixlen, mask)


def _render_masks(masks: frozenset[str]) -> str:
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


def _parse_verification_types_env(text: str) -> frozenset[str]:
    return normalise_verification_types(text.split(","))


def _parse_verification_types_param(text: str) -> frozenset[str]:
    """The API takes a JSON array in one query parameter, e.g. ``["sms","email"]``."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        raise FieldValueError(f"expected a JSON array of sms/email, got {text!r}") from None
    if not isinstance(items, list):
        raise FieldValueError(f"expected a JSON array of sms/email, got {text!r}")
    return normalise_verification_types(items)


def _render_verification_types(types: frozenset[str]) -> str:
    return json.dumps(sorted(types), separators=(",", ":"))


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One field of one setting, as the API, the environment and the emulator see it."""

    api_name: str
    env_var: str
    group: str | None  # the object under the response key holding it; None: a flat response
    kind: str  # bool | int | enum | masks | types: decides parsing and rendering
    description: str
    parse_text: Callable[[str], Value]  # environment variable text -> canonical value
    parse_param: Callable[[str], Value]  # Set query parameter -> value (emulator side)
    render_param: Callable[[Any], str]  # canonical value -> query parameter
    default: Value | None  # what the API resets an omitted parameter to (None: undocumented)
    allowed: str  # human wording of the allowed values, for error messages and docs
    direction: Direction | None = None  # the safer direction; None: compared for equality
    order: tuple[Value, ...] = ()  # direction "order": the values, weakest first
    off: Value | None = None  # direction "lower": the value that switches the limit off
    bounds: tuple[int, int] | None = None  # an integer range field: its inclusive range
    setting: str = ""  # the name of the setting it belongs to (filled in by Setting)

    # --- at least as strict -----------------------------------------------------------------

    def strictness(self, value: Value) -> tuple[int, int]:
        """A sort key: a value is at least as strict as another when its key is not smaller.

        Defined for directional fields only. A value outside ``order`` (an enum value the API
        added later) ranks below every known one: it is never taken for stricter."""
        if self.direction == "lower":
            if self.off is not None and value == self.off:
                return (0, 0)
            return (1, -int(value))  # type: ignore[arg-type]
        if self.direction == "higher":
            return (1, int(value))  # type: ignore[arg-type]
        if self.direction == "true":
            return (1, 1 if value is True else 0)
        if self.direction == "order":
            return (1, self.order.index(value)) if value in self.order else (0, 0)
        raise ValueError(f"{self.api_name} has no safer direction")

    def satisfies(self, live: Value | None, baseline: Value, exact: bool = False) -> bool:
        """True when ``live`` is compliant with ``baseline``: equal to it, or (unless ``exact``
        or the field has no safer direction) stricter in the field's direction. An unknown
        live value (None: the account did not return the field) is never compliant."""
        if live is None:
            return False
        if live == baseline:
            return True
        if exact or self.direction is None:
            return False
        if self.direction == "order" and baseline in self.order and self.order[0] == baseline:
            return True  # the weakest of the order: any value is at least as strict
        if not self.documented(live):
            # a value the API does not document (an enum value or a sentinel it adds later):
            # unknown, so never taken for stricter
            return False
        return self.strictness(live) >= self.strictness(baseline)

    def documented(self, value: Value) -> bool:
        """Whether ``value`` is one the API documents for this field (its range, choices or
        order)."""
        if self.direction == "order":
            return value in self.order
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return False
            try:
                self.parse_text(str(value))
            except FieldValueError:
                return False
        return True

    def rule(self, baseline: Value, exact: bool = False) -> str:
        """The rule a live value is held to, in words: "at least 14", "at most 4, not 0 (off)",
        "true", "exactly 10.0.0.0/8;192.168.0.0/16", or "any value" for a baseline at the
        weakest end of its direction."""
        if exact or self.direction is None:
            return f"exactly {self._words(baseline)}"
        if self.direction == "lower":
            if self.off is not None and baseline == self.off:
                return "any value"  # off is the weakest: every value is at least as strict
            if self.off is not None:
                return f"at most {baseline}, not {self.off} (off)"
            return f"at most {baseline}"
        if self.direction == "higher":
            return f"at least {baseline}"
        if self.direction == "true":
            return "true" if baseline is True else "any value"  # false is the weakest
        stricter = self.order[self.order.index(baseline) :] if baseline in self.order else ()
        if len(stricter) <= 1:
            return f"exactly {self._words(baseline)}"
        if len(stricter) == len(self.order):
            return "any value"  # the weakest of the order
        return f"at least {baseline} ({' or '.join(str(v) for v in stricter)})"

    def _words(self, value: Value) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, frozenset):
            shown = self.display(value)
            sep = ";" if self.kind == "masks" else ","
            return sep.join(shown) if shown else "empty"
        return str(value)

    # --- conversions ------------------------------------------------------------------------

    def from_api(self, raw: Any) -> Value:
        """Canonical value of a Get response field."""
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str):
                return _parse_bool(raw)
            raise FieldValueError(f"expected a boolean, got {raw!r}")
        if self.kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, (int, str)):
                raise FieldValueError(f"expected an integer, got {raw!r}")
            number = raw if isinstance(raw, int) else _ascii_int(raw)
            if number is None:
                raise FieldValueError(f"expected an integer, got {raw!r}")
            return number
        if self.kind == "enum":
            if not isinstance(raw, str):
                raise FieldValueError(f"expected a string, got {raw!r}")
            return raw
        if self.kind == "masks":
            if raw is None:
                return frozenset()
            if not isinstance(raw, str):
                raise FieldValueError(f"expected a string of masks, got {raw!r}")
            return canonical_masks(raw.split(";"))
        if self.kind == "types":
            # JSON of RPC APIs wraps lists: {"VerificationType": [...]}; accept the bare list too.
            if isinstance(raw, Mapping):
                inner = list(raw.values())
                raw = inner[0] if len(inner) == 1 else []
            if isinstance(raw, str):
                return _parse_verification_types_param(raw)
            if not isinstance(raw, list):
                raise FieldValueError(f"expected a list of verification types, got {raw!r}")
            return normalise_verification_types(raw)
        raise AssertionError(self.kind)  # pragma: no cover - the table is closed

    def live_param(self, raw: Any) -> str | None:
        """The Set parameter that sends back exactly what a Get returned, for
        the kinds whose canonical rendering can differ from it: masks as the text read (not
        normalised: ``10.1.2.3/24`` stays ``10.1.2.3/24``, a bare address stays bare),
        verification types as the list read (its order kept). None for the other kinds, whose
        rendering of the value read is that value. Call it on a value ``from_api`` accepted."""
        if self.kind == "masks":
            return raw if isinstance(raw, str) else None
        if self.kind == "types":
            if isinstance(raw, Mapping):
                inner = list(raw.values())
                raw = inner[0] if len(inner) == 1 else []
            if isinstance(raw, str):
                return raw
            if isinstance(raw, list):
                return json.dumps(raw, separators=(",", ":"))
        return None

    def to_api(self, value: Value) -> Any:
        """The JSON form the Get response uses for a canonical value (emulator side)."""
        if self.kind == "masks":
            return _render_masks(value)  # type: ignore[arg-type]
        if self.kind == "types":
            return {"VerificationType": sorted(value)}  # type: ignore[arg-type]
        return value

    def display(self, value: Value | None) -> Any:
        """A JSON-friendly value for reports: sets become sorted lists, unknown stays None."""
        if value is None:
            return None
        if isinstance(value, frozenset):
            if self.kind == "masks":
                return _render_masks(value).split(";") if value else []
            return sorted(value)
        return value


def _parse_bool_strict(text: str) -> bool:
    # The API documents the lower-case JSON literals; the SDK's str(True) would send "True".
    if text not in ("true", "false"):
        raise FieldValueError(f"expected true or false, got {text!r}")
    return text == "true"


def bool_field(
    api_name: str,
    env_var: str,
    group: str | None,
    default: bool | None,
    description: str,
    direction: Direction | None = None,
) -> Field:
    """A boolean field: ``true`` / ``false`` in any letter case from the environment, the
    lower-case literals only as an API parameter."""
    return Field(
        api_name=api_name,
        env_var=env_var,
        group=group,
        kind="bool",
        description=description,
        parse_text=_parse_bool,
        parse_param=_parse_bool_strict,
        render_param=lambda value: "true" if value else "false",
        default=default,
        allowed="true or false",
        direction=direction,
    )


def int_field(
    api_name: str,
    env_var: str,
    group: str | None,
    low: int,
    high: int,
    default: int | None,
    description: str,
    unit: str,
    direction: Direction | None = None,
    off: int | None = None,
    off_means: str = "off",
) -> Field:
    """An integer field with an inclusive range (the same range from the environment and as
    an API parameter); ``off`` is the value that switches the limit off, ``off_means`` its
    wording in messages."""
    off_words = f", {off} = {off_means}" if off is not None else ""
    return Field(
        api_name=api_name,
        env_var=env_var,
        group=group,
        kind="int",
        description=description,
        parse_text=_int_parser(low, high),
        parse_param=_int_parser(low, high),
        render_param=str,
        default=default,
        allowed=f"an integer from {low} to {high} ({unit}{off_words})",
        direction=direction,
        off=off,
        bounds=(low, high),
    )


def int_choice_field(
    api_name: str,
    env_var: str,
    group: str | None,
    choices: tuple[int, ...],
    default: int | None,
    description: str,
    unit: str,
    direction: Direction | None = None,
) -> Field:
    parse = _int_choice_parser(choices)
    return Field(
        api_name=api_name,
        env_var=env_var,
        group=group,
        kind="int",
        description=description,
        parse_text=parse,
        parse_param=parse,
        render_param=str,
        default=default,
        allowed=f"one of {', '.join(str(c) for c in choices)} ({unit})",
        direction=direction,
    )


def enum_field(
    api_name: str,
    env_var: str,
    group: str | None,
    choices: tuple[str, ...],
    default: str | None,
    description: str,
    order: tuple[str, ...] = (),
) -> Field:
    """A string field with fixed choices; ``order`` (weakest first) gives it a direction."""
    parse = _enum_parser(choices)
    return Field(
        api_name=api_name,
        env_var=env_var,
        group=group,
        kind="enum",
        description=description,
        parse_text=parse,
        parse_param=parse,
        render_param=str,
        default=default,
        allowed=f"one of {', '.join(choices)}",
        direction="order" if order else None,
        order=order,
    )


def masks_field(api_name: str, env_var: str, group: str | None, description: str) -> Field:
    return Field(
        api_name=api_name,
        env_var=env_var,
        group=group,
        kind="masks",
        description=description,
        parse_text=_parse_masks,
        parse_param=_parse_masks_param,
        render_param=_render_masks,
        default=frozenset(),
        allowed=(
            f"';'-separated IPv4 CIDR blocks, at most {MAX_LOGIN_NETWORK_MASKS} masks and "
            f"{MAX_LOGIN_NETWORK_MASKS_CHARS} characters; empty for no restriction"
        ),
    )


def verification_types_field(
    api_name: str, env_var: str, group: str | None, description: str
) -> Field:
    return Field(
        api_name=api_name,
        env_var=env_var,
        group=group,
        kind="types",
        description=description,
        parse_text=_parse_verification_types_env,
        parse_param=_parse_verification_types_param,
        render_param=_render_verification_types,
        default=None,
        allowed="a comma-separated subset of sms, email",
    )


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One account-level setting: a Get and a Set action and the fields they carry.

    ``response_key`` is the object of the Get response that holds the fields, either grouped
    (each field's ``group`` is an object under it) or flat (every ``group`` is None).
    ``read_only`` lists fields the Get returns that are read and never enforced or sent
    (name -> group). ``detailed_error_codes``: the service names a bad parameter's error
    ``InvalidParameter.<Name>.Range`` / ``.Format`` rather than ``InvalidParameter.<Name>``."""

    name: str  # the interface's "setting" value: security-preference, password-policy
    get_action: str
    set_action: str
    response_key: str
    fields: tuple[Field, ...]
    events: tuple[str, ...]  # the audit event names (ActionTrail eventName) that change it
    read_only: Mapping[str, str | None] = dataclass_field(default_factory=dict)
    detailed_error_codes: bool = False

    def __post_init__(self) -> None:
        # Each field knows its setting: a report or an error can name it from the field alone.
        fields = tuple(replace(f, setting=self.name) for f in self.fields)
        object.__setattr__(self, "fields", fields)
        names = [f.api_name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate field names")
        grouped = {f.group is None for f in fields}
        if len(grouped) > 1:
            raise ValueError(f"{self.name}: fields are either all grouped or all flat")

    @property
    def by_api_name(self) -> Mapping[str, Field]:
        return {f.api_name: f for f in self.fields}

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.group for f in self.fields if f.group is not None))

    @property
    def flat(self) -> bool:
        return not self.groups

    def _container(self, body: Mapping[str, Any], f: Field) -> Mapping[str, Any] | None:
        holder = body if f.group is None else body.get(f.group)
        return holder if isinstance(holder, Mapping) else None

    def read_response(self, body: Mapping[str, Any]) -> tuple[dict[str, Value], dict[str, str]]:
        """Canonical values of every known field present in the Get response's object under
        ``response_key``, and the Set parameters that send back exactly what was read for the
        fields whose rendering could differ from it (``Field.live_param``).

        A field the account does not return is left out: absent means unknown, never false."""
        values: dict[str, Value] = {}
        live: dict[str, str] = {}
        for f in self.fields:
            holder = self._container(body, f)
            if holder is None or f.api_name not in holder:
                continue
            raw = holder[f.api_name]
            if raw is None:
                continue
            try:
                values[f.api_name] = f.from_api(raw)
            except FieldValueError as exc:
                where = f.api_name if f.group is None else f"{f.group}.{f.api_name}"
                raise FieldValueError(
                    f"{self.get_action} returned an unreadable {where}: {exc}"
                ) from None
            text = f.live_param(raw)
            if text is not None:
                live[f.api_name] = text
        return values, live

    def parse_response(self, body: Mapping[str, Any]) -> dict[str, Value]:
        return self.read_response(body)[0]

    def read_only_values(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The read-only fields the Get returned, as returned."""
        found: dict[str, Any] = {}
        for name, group in self.read_only.items():
            holder = body if group is None else body.get(group)
            if isinstance(holder, Mapping) and name in holder:
                found[name] = holder[name]
        return found

    def render_response(self, values: Mapping[str, Value]) -> dict[str, Any]:
        """The object under ``response_key`` of a Get response for these values (emulator)."""
        body: dict[str, Any] = {group: {} for group in self.groups}
        for f in self.fields:
            if f.api_name in values:
                holder = body if f.group is None else body[f.group]
                holder[f.api_name] = f.to_api(values[f.api_name])
        return body

    def render_params(self, values: Mapping[str, Value]) -> dict[str, str]:
        """Set query parameters for those of these values that are this setting's fields, in
        table order (another setting's fields are never sent)."""
        return {
            f.api_name: f.render_param(values[f.api_name])
            for f in self.fields
            if f.api_name in values
        }
