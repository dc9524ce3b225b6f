"""The evidence as CSV (RFC 4180): a header row, then one row per account and baseline field.

Values are rendered as the CLI's tables render them (booleans in lower case, lists
``;``-joined); fields are quoted where they must be and lines end with CRLF, as RFC 4180 says.
A cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``)
is prefixed with a single quote, so no value read from an account can execute when opened.
"""

from __future__ import annotations

import csv
import io

from .rows import Evidence, Row

COLUMNS = (
    "checked_at",
    "account",
    "setting",
    "field",
    "live_value",
    "baseline",
    "rule",
    "status",
    "detail",
    "cis_recommendation",
    "baseline_source",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cells(row: Row, checked_at: str) -> list[str]:
    cells = [
        checked_at,
        row.account,
        row.setting,
        row.field,
        row.live_text,
        row.baseline_text,
        row.rule,
        row.status_text,
        row.detail,
        row.cis,
        row.source,
    ]
    return [_safe(cell) for cell in cells]


def _safe(cell: str) -> str:
    # a negative number is a number, not a formula
    if cell.startswith(_FORMULA_START) and not _is_number(cell):
        return "'" + cell
    return cell


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def render_csv(document: Evidence) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    checked_at = document.checked_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    for row in document.rows:
        writer.writerow(_cells(row, checked_at))
    return out.getvalue()
