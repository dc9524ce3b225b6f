"""The evidence as OCSF findings: a JSON array of Compliance Finding events (class_uid 2003,
category Findings, OCSF 1.3.0), one per account and baseline field.

The mapping, per row:
- ``compliance``: ``status_id`` 1 Pass (compliant), 3 Fail (drift, also when report-only or
  exempt: the control is not met), 2 Warning (skipped: not evaluated), 0 Unknown (error);
  ``standards`` the CIS benchmark when the preset in use cites one, else the guard's baseline;
  ``control`` the recommendation's number (``1.4``) or the field; ``requirements`` the rule.
- finding ``status_id``: 1 New, or 3 Suppressed for an exempt field (a reviewed, accepted
  deviation); ``severity_id``: 1 Informational (compliant, skipped), 2 Low (exempt,
  report-only), 3 Medium (drift), 0 Unknown (error).
- ``finding_info.uid`` is stable per account, setting and field, so a consumer can follow one
  finding across reports; the run id is in ``metadata.correlation_uid``.
- what OCSF has no attribute for (live value, baseline, rule, source) is under ``unmapped``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import fields as F
from .rows import Evidence, Row

OCSF_VERSION = "1.3.0"
CLASS_UID, CATEGORY_UID, ACTIVITY_CREATE = 2003, 2, 1
PRODUCT = "secpref-guard"
BASELINE_STANDARD = "secpref-guard baseline"

# row status -> (compliance status_id, caption); row status -> (severity_id, caption)
_COMPLIANCE = {
    "compliant": (1, "Pass"),
    "drift": (3, "Fail"),
    "report-only": (3, "Fail"),
    "exempt": (3, "Fail"),
    "skipped": (2, "Warning"),
    "error": (0, "Unknown"),
}
_SEVERITY = {
    "compliant": (1, "Informational"),
    "skipped": (1, "Informational"),
    "exempt": (2, "Low"),
    "report-only": (2, "Low"),
    "drift": (3, "Medium"),
    "error": (0, "Unknown"),
}
_SETTING_TYPES = {
    "security-preference": "Alibaba Cloud RAM security preference",
    "password-policy": "Alibaba Cloud RAM password policy",
}
_CIS = re.compile(r"^(?P<standard>CIS [^,]+), (?P<control>\d+(?:\.\d+)+)")


def finding(row: Row, document: Evidence) -> dict[str, Any]:
    """One Compliance Finding event for one row."""
    compliance_id, compliance = _COMPLIANCE[row.status]
    severity_id, severity = _SEVERITY[row.status]
    status_id, status = (3, "Suppressed") if row.status == "exempt" else (1, "New")
    cited = _CIS.match(row.cis)
    standards = [cited["standard"]] if cited else [BASELINE_STANDARD]
    control = cited["control"] if cited else row.field
    time_ms = int(document.checked_at.timestamp() * 1000)
    numeric = row.account.isascii() and row.account.isdigit()
    resource_uid = f"acs:ram::{row.account}:{row.setting}" if numeric else row.setting
    message = f"{row.field} ({row.setting}) of account {row.account}: {row.status_text}"
    if row.detail:
        message += f": {row.detail}"
    event: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "Compliance Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "type_uid": CLASS_UID * 100 + ACTIVITY_CREATE,
        "type_name": "Compliance Finding: Create",
        "time": time_ms,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "message": message,
        "compliance": {
            "standards": standards,
            "control": control,
            "requirements": [f"{row.field} {row.rule}"] + ([row.cis] if row.cis else []),
            "status_id": compliance_id,
            "status": compliance,
            **({"status_detail": row.detail} if row.detail else {}),
        },
        "finding_info": {
            "uid": f"{PRODUCT}:{row.account}:{row.setting}:{row.field}",
            "title": f"{row.field} is {row.rule}",
            "desc": _description(row),
            "created_time": time_ms,
            "types": [row.setting],
        },
        "resources": [
            {
                "uid": resource_uid,
                "type": _SETTING_TYPES.get(row.setting, row.setting),
                "name": row.setting,
            }
        ],
        "cloud": {
            "provider": "AlibabaCloud",
            "account": {"uid": row.account} if numeric else {"name": row.account},
        },
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": document.version},
            "correlation_uid": document.run_id,
            "event_code": row.field,
        },
        "unmapped": {
            "live_value": row.live if row.read else None,
            "live_value_read": row.read,
            "baseline": row.baseline,
            "rule": row.rule,
            "baseline_source": row.source,
            "status": row.status_text,
        },
    }
    if row.until is not None:
        event["unmapped"]["exempt_until"] = row.until.isoformat()
    return event


def _description(row: Row) -> str:
    described = F.field(row.field).description
    return f"{described}; the baseline holds it to {row.rule}"


def findings(document: Evidence) -> list[dict[str, Any]]:
    return [finding(row, document) for row in document.rows]


def render_ocsf(document: Evidence) -> str:
    return json.dumps(findings(document), indent=2, ensure_ascii=False) + "\n"
