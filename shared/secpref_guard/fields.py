"""The field table: the one place that knows the security-preference fields.

Every other module (configuration, client, drift engine, emulator, template checks, docs tests)
derives what it needs from ``FIELDS``: the API parameter name, the environment variable that
pins it in the baseline, where it sits in the GetSecurityPreference response, how a value is
parsed from configuration, from the API and from a query parameter, how it is rendered for
SetSecurityPreference, and the documented default the API falls back to when a Set omits it.

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
from dataclasses import dataclass
from typing import Any, Union

Value = Union[bool, int, str, frozenset]  # noqa: UP007 - a runtime alias, kept readable on 3.10

MAX_LOGIN_NETWORK_MASKS = 40
MAX_LOGIN_NETWORK_MASKS_CHARS = 512
VERIFICATION_TYPE_CHOICES = ("sms", "email")


class FieldValueError(ValueError):
    """A value that the field does not accept; the message says what it does accept."""


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
            raise FieldValueError(f"expected an integer from {low} to {high}, got {number}")
        return number

    return parse


def _int_choice_parser(choices: tuple[int, ...]) -> Callable[[str], int]:
    allowed = ", ".join(str(c) for c in choices)

    def parse(text: str) -> int:
        number = _ascii_int(text)
        if number is None or number not in choices:
            raise FieldValueError(f"expected one of {allowed}, got {text!r}")
        return number

    return parse


def _enum_parser(choices: tuple[str, ...]) -> Callable[[str], str]:
    allowed = ", ".join(choices)

    def parse(text: str) -> str:
        stripped = text.strip()
        if stripped not in choices:
            raise FieldValueError(f"expected one of {allowed}, got {text!r}")
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
    """One security-preference field, as the API, the environment and the emulator see it."""

    api_name: str
    env_var: str
    group: str  # the object under SecurityPreference in the Get response
    kind: str  # bool | int | enum | masks | types: decides parsing and rendering
    description: str
    parse_text: Callable[[str], Value]  # environment variable text -> canonical value
    parse_param: Callable[[str], Value]  # SetSecurityPreference query parameter -> value
    render_param: Callable[[Any], str]  # canonical value -> query parameter
    default: Value | None  # what the API resets an omitted parameter to (None: undocumented)
    allowed: str  # human wording of the allowed values, for error messages and docs

    def from_api(self, raw: Any) -> Value:
        """Canonical value of a GetSecurityPreference response field."""
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str):
                return _parse_bool(raw)
            raise FieldValueError(f"expected a boolean, got {raw!r}")
        if self.kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, (int, str)):
                raise FieldValueError(f"expected an integer, got {raw!r}")
            return int(raw)
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
        """The SetSecurityPreference parameter that sends back exactly what a Get returned, for
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


def _bool(api_name: str, env_var: str, group: str, default: bool | None, description: str):
    return Field(
        api_name=api_name,
        env_var=env_var,
        group=group,
        kind="bool",
        description=description,
        parse_text=_parse_bool,
        parse_param=lambda text: _parse_bool_strict(text),
        render_param=lambda value: "true" if value else "false",
        default=default,
        allowed="true or false",
    )


def _parse_bool_strict(text: str) -> bool:
    # The API documents the lower-case JSON literals; the SDK's str(True) would send "True".
    if text not in ("true", "false"):
        raise FieldValueError(f"expected true or false, got {text!r}")
    return text == "true"


_IDLE_DAYS = (90, 180, 365, 730)

FIELDS: tuple[Field, ...] = (
    _bool(
        "EnableSaveMFATicket",
        "BASELINE_ENABLE_SAVE_MFA_TICKET",
        "LoginProfilePreference",
        False,
        "RAM users may skip MFA for 7 days after passing it",
    ),
    _bool(
        "AllowUserToChangePassword",
        "BASELINE_ALLOW_USER_TO_CHANGE_PASSWORD",
        "LoginProfilePreference",
        True,
        "RAM users may change their own password",
    ),
    _bool(
        "AllowUserToLoginWithPasskey",
        "BASELINE_ALLOW_USER_TO_LOGIN_WITH_PASSKEY",
        "LoginProfilePreference",
        True,
        "RAM users may log on with a passkey",
    ),
    Field(
        api_name="LoginSessionDuration",
        env_var="BASELINE_LOGIN_SESSION_DURATION",
        group="LoginProfilePreference",
        kind="int",
        description="hours a console session lasts",
        parse_text=_int_parser(1, 24),
        parse_param=_int_parser(1, 24),
        render_param=str,
        default=6,
        allowed="an integer from 1 to 24 (hours)",
    ),
    Field(
        api_name="LoginNetworkMasks",
        env_var="BASELINE_LOGIN_NETWORK_MASKS",
        group="LoginProfilePreference",
        kind="masks",
        description="networks RAM users may log on from (empty: no restriction)",
        parse_text=_parse_masks,
        parse_param=_parse_masks_param,
        render_param=_render_masks,
        default=frozenset(),
        allowed=(
            f"';'-separated IPv4 CIDR blocks, at most {MAX_LOGIN_NETWORK_MASKS} masks and "
            f"{MAX_LOGIN_NETWORK_MASKS_CHARS} characters; empty for no restriction"
        ),
    ),
    Field(
        api_name="MFAOperationForLogin",
        env_var="BASELINE_MFA_OPERATION_FOR_LOGIN",
        group="LoginProfilePreference",
        kind="enum",
        description="when RAM users must pass MFA at logon",
        parse_text=_enum_parser(("mandatory", "independent", "adaptive")),
        parse_param=_enum_parser(("mandatory", "independent", "adaptive")),
        render_param=str,
        default="independent",
        allowed="one of mandatory, independent, adaptive",
    ),
    _bool(
        "AllowUserToManageAccessKeys",
        "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS",
        "AccessKeyPreference",
        False,
        "RAM users may manage their own AccessKeys",
    ),
    _bool(
        "AllowUserToManageServiceCredentials",
        "BASELINE_ALLOW_USER_TO_MANAGE_SERVICE_CREDENTIALS",
        "AccessKeyPreference",
        None,
        "RAM users may manage their own service credentials (API keys)",
    ),
    _bool(
        "AllowUserToManageMFADevices",
        "BASELINE_ALLOW_USER_TO_MANAGE_MFA_DEVICES",
        "MFAPreference",
        True,
        "RAM users may bind and unbind their own MFA devices",
    ),
    _bool(
        "AllowUserToManagePersonalDingTalk",
        "BASELINE_ALLOW_USER_TO_MANAGE_PERSONAL_DING_TALK",
        "PersonalInfoPreference",
        True,
        "RAM users may bind and unbind their personal DingTalk",
    ),
    Field(
        api_name="MaxIdleDaysForAccessKeys",
        env_var="BASELINE_MAX_IDLE_DAYS_FOR_ACCESS_KEYS",
        group="MaxIdleDays",
        kind="int",
        description="days after which an unused AccessKey is disabled",
        parse_text=_int_choice_parser(_IDLE_DAYS),
        parse_param=_int_choice_parser(_IDLE_DAYS),
        render_param=str,
        default=730,
        allowed="one of 90, 180, 365, 730 (days)",
    ),
    Field(
        api_name="MaxIdleDaysForUsers",
        env_var="BASELINE_MAX_IDLE_DAYS_FOR_USERS",
        group="MaxIdleDays",
        kind="int",
        description="days after which an idle user's console logon is disabled",
        parse_text=_int_choice_parser(_IDLE_DAYS),
        parse_param=_int_choice_parser(_IDLE_DAYS),
        render_param=str,
        default=730,
        allowed="one of 90, 180, 365, 730 (days)",
    ),
    Field(
        api_name="VerificationTypes",
        env_var="BASELINE_VERIFICATION_TYPES",
        group="VerificationPreference",
        kind="types",
        description="second factors RAM users may verify with",
        parse_text=_parse_verification_types_env,
        parse_param=_parse_verification_types_param,
        render_param=_render_verification_types,
        default=None,
        allowed="a comma-separated subset of sms, email",
    ),
)

BY_API_NAME: Mapping[str, Field] = {f.api_name: f for f in FIELDS}
BY_ENV_VAR: Mapping[str, Field] = {f.env_var: f for f in FIELDS}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(f.group for f in FIELDS))

# Read from the response, never enforced or sent (deprecated by the API).
READ_ONLY_FIELDS: Mapping[str, str] = {"OperationForRiskLogin": "LoginProfilePreference"}


def field(api_name: str) -> Field:
    try:
        return BY_API_NAME[api_name]
    except KeyError:
        known = ", ".join(BY_API_NAME)
        raise KeyError(f"unknown security preference field {api_name!r}; known: {known}") from None


def parse_response(security_preference: Mapping[str, Any]) -> dict[str, Value]:
    """Canonical values of every known field present in a Get response's SecurityPreference.

    A field the account's site does not return is left out: absent means unknown, never false.
    """
    return read_response(security_preference)[0]


def read_response(
    security_preference: Mapping[str, Any],
) -> tuple[dict[str, Value], dict[str, str]]:
    """``parse_response``'s values, and the Set parameters that send back exactly what was read
    for the fields whose rendering could differ from it (``Field.live_param``)."""
    values: dict[str, Value] = {}
    live: dict[str, str] = {}
    for f in FIELDS:
        group = security_preference.get(f.group)
        if not isinstance(group, Mapping) or f.api_name not in group:
            continue
        raw = group[f.api_name]
        if raw is None:
            continue
        try:
            values[f.api_name] = f.from_api(raw)
        except FieldValueError as exc:
            raise FieldValueError(
                f"GetSecurityPreference returned an unreadable {f.group}.{f.api_name}: {exc}"
            ) from None
        text = f.live_param(raw)
        if text is not None:
            live[f.api_name] = text
    return values, live


def render_response(values: Mapping[str, Value]) -> dict[str, dict[str, Any]]:
    """The SecurityPreference object of a Get response for these values (emulator side)."""
    body: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
    for f in FIELDS:
        if f.api_name in values:
            body[f.group][f.api_name] = f.to_api(values[f.api_name])
    return body


def render_params(values: Mapping[str, Value]) -> dict[str, str]:
    """SetSecurityPreference query parameters for these values, in table order."""
    return {f.api_name: f.render_param(values[f.api_name]) for f in FIELDS if f.api_name in values}
