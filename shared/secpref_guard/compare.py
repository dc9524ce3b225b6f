"""The comparison: which baseline fields of a live setting drift, and what the policy lets the
guard do about each (revert, report-only, exempt, dry-run); and the complete desired state a
write sends.

A field is compliant when its live value is at least as strict as the baseline
(``Field.satisfies``: equal, or stricter in the field's safer direction unless the field is
exact or listed in GUARD_EXACT_FIELDS). A value the API does not document (an enum value or a
sentinel it adds later) may be stricter than the guard knows: it is reported, never written.
"""

from __future__ import annotations

from datetime import date

from . import fields as F
from .config import GuardConfig
from .ims import Preference
from .report import Action, Drift


def compare(config: GuardConfig, live: Preference, account: str, today: date) -> list[Drift]:
    """Every baseline field of the live setting that is not at least as strict as the
    baseline (or not equal, for exact fields), with the action the policy allows."""
    settings = config.settings
    setting = F.setting(live.setting)
    drifts: list[Drift] = []
    for api_name, expected in config.baseline_of(setting).items():
        f = F.field(api_name)
        actual = live.values.get(api_name)
        exact = config.is_exact(api_name)
        if f.satisfies(actual, expected, exact):
            continue
        action: Action = "revert"
        note = ""
        if api_name in settings.report_only_fields:
            action, note = "report-only", "listed in GUARD_REPORT_ONLY_FIELDS"
        elif actual is not None and not exact and not f.documented(actual):
            # a value the API does not document (added later?) may be stricter than the
            # baseline: reported for a person to judge, never overwritten with a weaker one
            action = "report-only"
            note = f"{f.display(actual)!r} is not a value the guard knows: not written"
        else:
            for exemption in settings.exemptions:
                if exemption.account == account and api_name in exemption.fields:
                    if exemption.active_on(today):
                        action = "exempt"
                        note = f"exempt until {exemption.until.isoformat()}: {exemption.reason}"
                        break  # an active exemption wins over any expired one
                    else:
                        note = (
                            f"exemption expired on {exemption.until.isoformat()} "
                            f"({exemption.reason})"
                        )
        if action == "revert" and config.dry_run:
            action = "dry-run"
        drifts.append(
            Drift(
                api_name,
                actual,
                expected,
                action,
                config.source_of(api_name),
                note,
                setting=setting.name,
                rule=f.rule(expected, exact),
            )
        )
    return drifts


def desired_state(live: Preference, drifts: list[Drift]) -> dict[str, F.Value]:
    """Live values of every field the account returned, baseline values of the reverted ones."""
    desired: dict[str, F.Value] = dict(live.values)
    for d in drifts:
        if d.action == "revert":
            desired[d.field] = d.expected
    return desired
