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
    "MAX_LOGIN_NETWORK_MASKS",
    "MAX_LOGIN_NETWORK_MASKS_CHARS",
    "PASSWORD_POLICY",
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
