"""What a setting is: one Get/Set pair of actions with its field table.

The tables themselves live one module per setting next to this one (security_preference.py,
password_policy.py); a new setting is one more table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from typing import Any

from .field import Field
from .values import FieldValueError, Value

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
