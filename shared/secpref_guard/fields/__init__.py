"""The field tables: the one place that knows the account-level settings and their fields.

Every other module (configuration, client, drift engine, emulator, template checks, docs tests)
derives what it needs from ``SETTINGS``: each ``Setting`` is one Get/Set pair of IMS actions,
its response object and its table of ``Field`` s (field.py says what a field records). A new
setting is one table module here, listed in ``SETTINGS``.

``FIELDS``, ``BY_API_NAME``, ``BY_ENV_VAR`` and ``field()`` cover every field of every setting
(API names are unique across settings; ``setting_of`` finds a field's setting). The module
functions ``read_response``, ``parse_response``, ``render_response`` and ``render_params`` and
``GROUPS`` / ``READ_ONLY_FIELDS`` are the security preference's, as before the password policy
joined; for any setting use the ``Setting`` methods.

Canonical Python values: ``bool`` for booleans, ``int`` for integers, ``str`` for enums, and a
``frozenset[str]`` for the two set-valued fields (network masks in normalised CIDR form,
verification types in lower case), so equality is set equality. Canonical values are for
comparison: a field the guard does not change is sent back as the Get returned it
(``Setting.read_response``), not in its canonical rendering.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .field import Field
from .password_policy import PASSWORD_POLICY
from .security_preference import SECURITY_PREFERENCE
from .setting import Setting
from .values import (
    MAX_LOGIN_NETWORK_MASKS,
    MAX_LOGIN_NETWORK_MASKS_CHARS,
    VERIFICATION_TYPE_CHOICES,
    Direction,
    FieldValueError,
    Value,
    canonical_masks,
    normalise_masks,
    normalise_verification_types,
)

__all__ = [
    "BY_API_NAME",
    "BY_ENV_VAR",
    "FIELDS",
    "GROUPS",
    "MAX_LOGIN_NETWORK_MASKS",
    "MAX_LOGIN_NETWORK_MASKS_CHARS",
    "PASSWORD_POLICY",
    "READ_ONLY_FIELDS",
    "SECURITY_PREFERENCE",
    "SETTINGS",
    "VERIFICATION_TYPE_CHOICES",
    "Direction",
    "Field",
    "FieldValueError",
    "Setting",
    "Value",
    "canonical_masks",
    "field",
    "normalise_masks",
    "normalise_verification_types",
    "parse_response",
    "read_response",
    "render_params",
    "render_response",
    "setting",
    "setting_of",
]

SETTINGS: tuple[Setting, ...] = (SECURITY_PREFERENCE, PASSWORD_POLICY)

FIELDS: tuple[Field, ...] = tuple(f for s in SETTINGS for f in s.fields)
BY_API_NAME: Mapping[str, Field] = {f.api_name: f for f in FIELDS}
BY_ENV_VAR: Mapping[str, Field] = {f.env_var: f for f in FIELDS}
_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}
if len(BY_API_NAME) != len(FIELDS) or len(BY_ENV_VAR) != len(FIELDS):
    raise ImportError("field API names and variables must be unique across settings")

# The security preference's, kept for the modules written before settings were data.
GROUPS: tuple[str, ...] = SECURITY_PREFERENCE.groups
READ_ONLY_FIELDS: Mapping[str, str | None] = SECURITY_PREFERENCE.read_only


def field(api_name: str) -> Field:
    try:
        return BY_API_NAME[api_name]
    except KeyError:
        known = ", ".join(BY_API_NAME)
        raise KeyError(f"unknown field {api_name!r}; known: {known}") from None


def setting(name: str) -> Setting:
    """The setting of this name (``security-preference``, ``password-policy``)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise KeyError(f"unknown setting {name!r}; known: {known}") from None


def setting_of(api_name: str) -> Setting:
    """The setting a field belongs to."""
    return _BY_NAME[field(api_name).setting]


def parse_response(security_preference: Mapping[str, Any]) -> dict[str, Value]:
    """Canonical values of a GetSecurityPreference response's SecurityPreference object."""
    return SECURITY_PREFERENCE.parse_response(security_preference)


def read_response(
    security_preference: Mapping[str, Any],
) -> tuple[dict[str, Value], dict[str, str]]:
    """``SECURITY_PREFERENCE.read_response``: values and live parameters."""
    return SECURITY_PREFERENCE.read_response(security_preference)


def render_response(values: Mapping[str, Value]) -> dict[str, Any]:
    """The SecurityPreference object of a Get response for these values (emulator side)."""
    return SECURITY_PREFERENCE.render_response(values)


def render_params(values: Mapping[str, Value]) -> dict[str, str]:
    """SetSecurityPreference query parameters for these values, in table order; a field of
    another setting is never rendered into them."""
    return SECURITY_PREFERENCE.render_params(values)
