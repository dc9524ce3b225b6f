"""Named baselines. A preset is data: field -> value, each with the recommendation it serves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .fields import Value


@dataclass(frozen=True)
class PresetField:
    value: Value
    citation: str


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
    },
}
