"""Named baselines. A preset is data: field -> value, each with the recommendation it serves.

A preset may name fields of every setting (the security preference and the password policy);
a field's safer direction applies to a preset value as to a BASELINE_* one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .fields import Value


@dataclass(frozen=True)
class PresetField:
    value: Value
    citation: str


_CIS = "CIS Alibaba Cloud Foundations Benchmark v2.0.0"

PRESETS: Mapping[str, Mapping[str, PresetField]] = {
    "cis-2.0": {
        "MFAOperationForLogin": PresetField(
            "mandatory",
            "CIS Alibaba Cloud Foundations Benchmark v2.0.0, 1.4: "
            "ensure MFA is enabled for all RAM users that have a console password",
        ),
        "MaxIdleDaysForUsers": PresetField(
            90,
            "CIS Alibaba Cloud Foundations Benchmark v2.0.0, 1.5: "
            "ensure users not logged on for 90 days or longer are disabled for console logon",
        ),
        "MaxIdleDaysForAccessKeys": PresetField(
            90,
            "CIS Alibaba Cloud Foundations Benchmark v2.0.0, 1.6 (in part): "
            "ensure access keys are rotated every 90 days or less",
        ),
        # The password policy, 1.7-1.14. Where CIS says "or greater" the value is a threshold:
        # the field's safer direction keeps a stricter live value (fields/password_policy.py).
        "RequireUppercaseCharacters": PresetField(
            True, f"{_CIS}, 1.7: the RAM password policy requires an upper-case letter"
        ),
        "RequireLowercaseCharacters": PresetField(
            True, f"{_CIS}, 1.8: the RAM password policy requires a lower-case letter"
        ),
        "RequireSymbols": PresetField(
            True, f"{_CIS}, 1.9: the RAM password policy requires a symbol"
        ),
        "RequireNumbers": PresetField(
            True, f"{_CIS}, 1.10: the RAM password policy requires a number"
        ),
        "MinimumPasswordLength": PresetField(
            14, f"{_CIS}, 1.11: passwords of at least 14 characters (14 or greater)"
        ),
        "PasswordReusePrevention": PresetField(
            5, f"{_CIS}, 1.12: the last 5 passwords may not be reused"
        ),
        "MaxPasswordAge": PresetField(
            365,
            f"{_CIS}, 1.13: passwords expire after 365 days or more (an annual reset; compared "
            "exactly, as v1.0 of the benchmark asked for 90 days or less)",
        ),
        "MaxLoginAttemps": PresetField(
            5, f"{_CIS}, 1.14: logon is blocked for an hour after 5 failed attempts"
        ),
    },
}
