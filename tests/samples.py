"""Valid sample values of every field, shared by the field, config, engine and property tests."""

from __future__ import annotations

from typing import Any

from secpref_guard import fields as F

# Valid values per kind, as environment text; a field of a new kind fails loudly.
SAMPLE_TEXTS = {
    "bool": ["true", "false"],
    "int": ["90", "730", "1", "24", "12", "8", "0"],
    "enum": ["mandatory", "adaptive", "independent"],
    "masks": ["10.0.0.0/8;192.168.0.0/16", "172.16.0.0/12", ""],
    "types": ["sms,email", "sms", "email", ""],
}


def sample_values(f: F.Field) -> list[F.Value]:
    """Every distinct canonical value the sample texts of this field's kind parse to."""
    assert f.kind in SAMPLE_TEXTS, f"no sample values for kind {f.kind!r} of {f.api_name}"
    values: list[F.Value] = []
    for text in SAMPLE_TEXTS[f.kind]:
        try:
            value = f.parse_text(text)
        except F.FieldValueError:
            continue
        if value not in values:
            values.append(value)
    assert len(values) >= 2, f"fewer than two sample values for {f.api_name}"
    return values


def other_than(f: F.Field, value: F.Value) -> F.Value:
    """A valid value of the field that differs from ``value``."""
    return next(v for v in sample_values(f) if v != value)


def env_text(f: F.Field, value: Any) -> str:
    """The environment-variable text of a canonical value."""
    if f.kind == "bool":
        return "true" if value else "false"
    if f.kind == "masks":
        return ";".join(sorted(value))
    if f.kind == "types":
        return ",".join(sorted(value))
    return str(value)
