"""What a field is: one API parameter of one account-level setting.

A ``Field`` knows the environment variable that pins it in the baseline, where it sits in the
Get response, how a value is parsed from configuration, from the API and from a query
parameter, how it is rendered for the Set, the documented default the API falls back to when a
Set omits it, and its safer direction (which values are at least as strict as a baseline
value). The constructors at the end (``bool_field``, ``int_field``, ...) are what the tables
are written with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .values import (
    MAX_LOGIN_NETWORK_MASKS,
    MAX_LOGIN_NETWORK_MASKS_CHARS,
    Direction,
    FieldValueError,
    Value,
    ascii_int,
    canonical_masks,
    enum_parser,
    int_choice_parser,
    int_parser,
    normalise_verification_types,
    parse_bool,
    parse_masks,
    parse_masks_param,
    parse_verification_types_env,
    parse_verification_types_param,
    render_masks,
    render_verification_types,
)

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
                return parse_bool(raw)
            raise FieldValueError(f"expected a boolean, got {raw!r}")
        if self.kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, (int, str)):
                raise FieldValueError(f"expected an integer, got {raw!r}")
            number = raw if isinstance(raw, int) else ascii_int(raw)
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
                return parse_verification_types_param(raw)
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
            return render_masks(value)  # type: ignore[arg-type]
        if self.kind == "types":
            return {"VerificationType": sorted(value)}  # type: ignore[arg-type]
        return value

    def display(self, value: Value | None) -> Any:
        """A JSON-friendly value for reports: sets become sorted lists, unknown stays None."""
        if value is None:
            return None
        if isinstance(value, frozenset):
            if self.kind == "masks":
                return render_masks(value).split(";") if value else []
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
        parse_text=parse_bool,
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
        parse_text=int_parser(low, high),
        parse_param=int_parser(low, high),
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
    parse = int_choice_parser(choices)
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
    parse = enum_parser(choices)
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
        parse_text=parse_masks,
        parse_param=parse_masks_param,
        render_param=render_masks,
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
        parse_text=parse_verification_types_env,
        parse_param=parse_verification_types_param,
        render_param=render_verification_types,
        default=None,
        allowed="a comma-separated subset of sms, email",
    )
