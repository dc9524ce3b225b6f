"""The evidence as one self-contained HTML page: inline CSS, no script, no external asset.

Read from the top: the run (when, which targets, which preset), the accounts per status and a
line per account (linked to its table), a summary per field (how many accounts meet it), then
a table per account with its rows, each status coloured. Every value is HTML-escaped: a value
read from an account, a reason or an exemption's text could hold markup, and the page must show
it as text.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from .rows import Evidence, Row, worst

# the order a reader takes the statuses in: met, not met, not met by decision, not looked at
SHOWN: tuple[str, ...] = ("compliant", "drift", "report-only", "exempt", "skipped", "error")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1f2328;
background:#fff;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
h3{font-size:15px;margin:22px 0 6px}
p.meta{color:#57606a;margin:0 0 16px}
table{border-collapse:collapse;margin:4px 0 8px;min-width:60%}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
td.setting{white-space:nowrap}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;
white-space:nowrap}
.compliant{background:#dafbe1;color:#116329}.drift{background:#ffebe9;color:#a40e26}
.exempt{background:#fff8c5;color:#7d4e00}.report-only{background:#fbefff;color:#6e40c9}
.skipped{background:#eaeef2;color:#424a53}.error{background:#a40e26;color:#fff}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:90px}
.card b{display:block;font-size:22px}
.detail{color:#57606a}
"""


def _badge(status: str, label: str | None = None) -> str:
    return f'<span class="badge {escape(status)}">{escape(label or status)}</span>'


def _meta(document: Evidence) -> str:
    when = document.checked_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        f"checked {escape(when)}",
        f"targets <code>{escape(document.targets)}</code>",
        f"preset <code>{escape(document.preset)}</code>" if document.preset else "no preset",
        f"run <code>{escape(document.run_id)}</code>",
        f"secpref-guard {escape(document.version)}",
    ]
    return f'<p class="meta">{" · ".join(parts)}</p>'


def _account_cards(document: Evidence) -> str:
    counts = document.account_counts()
    total = sum(counts.values())
    noun = "account" if total == 1 else "accounts"
    cards = [f'<div class="card"><b>{total}</b>{noun}</div>']
    for status in SHOWN:
        if counts[status]:
            cards.append(
                f'<div class="card {escape(status)}"><b>{counts[status]}</b>{escape(status)}</div>'
            )
    return f'<div class="cards">{"".join(cards)}</div>'


def _account_summary(document: Evidence) -> str:
    """One line per account: its status, its rows per status, and why when it was not read."""
    present = [s for s in SHOWN if any(r.status == s for r in document.rows)]
    head = "".join(f"<th>{escape(s)}</th>" for s in present)
    lines = [f"<table><thead><tr><th>account</th><th>status</th>{head}<th>why</th></tr></thead>"]
    lines.append("<tbody>")
    for account, rows in document.accounts().items():
        counts = Counter(r.status for r in rows)
        cells = "".join(f'<td class="num">{counts[s]}</td>' for s in present)
        why = rows[0].detail if rows and rows[0].status in ("skipped", "error") else ""
        anchor = escape(f"account-{account}")
        lines.append(
            f'<tr><td><a href="#{anchor}"><code>{escape(account)}</code></a></td>'
            f"<td>{_badge(worst(r.status for r in rows))}</td>{cells}"
            f'<td class="detail">{escape(why)}</td></tr>'
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _field_summary(document: Evidence) -> str:
    per_field: dict[str, Counter[str]] = {name: Counter() for name in document.fields}
    first: dict[str, Row] = {}
    for row in document.rows:
        per_field.setdefault(row.field, Counter())[row.status] += 1
        first.setdefault(row.field, row)
    present = [s for s in SHOWN if any(r.status == s for r in document.rows)]
    head = "".join(f"<th>{escape(s)}</th>" for s in present)
    lines = [
        "<table><thead><tr><th>setting</th><th>field</th><th>rule</th>"
        f"<th>CIS recommendation</th>{head}</tr></thead><tbody>"
    ]
    for name, counts in per_field.items():
        row = first.get(name)
        cells = "".join(
            f'<td class="num">{_badge(s, str(counts[s])) if counts[s] else "0"}</td>'
            for s in present
        )
        setting, rule, cis = (row.setting, row.rule, row.cis) if row else ("", "", "")
        lines.append(
            f'<tr><td class="setting">{escape(setting)}</td><td><code>{escape(name)}</code></td>'
            f"<td>{escape(rule)}</td><td>{escape(cis)}</td>{cells}</tr>"
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _account_table(account: str, rows: list[Row], document: Evidence) -> str:
    status = worst(r.status for r in rows)
    counts = Counter(r.status for r in rows)
    summary = ", ".join(f"{counts[s]} {s}" for s in SHOWN if counts[s])
    lines = [
        f'<h3 id="account-{escape(account)}">account <code>{escape(account)}</code> '
        f'{_badge(status)} <span class="detail">{escape(summary)}</span></h3>',
        "<table><thead><tr><th>setting</th><th>field</th><th>live value</th><th>baseline</th>"
        "<th>rule</th><th>status</th><th>why</th></tr></thead><tbody>",
    ]
    for row in rows:
        live = f"<code>{escape(row.live_text)}</code>" if row.read else "&mdash;"
        lines.append(
            f'<tr><td class="setting">{escape(row.setting)}</td>'
            f"<td><code>{escape(row.field)}</code></td><td>{live}</td><td><code>{escape(row.baseline_text)}</code></td>"
            f"<td>{escape(row.rule)}</td><td>{_badge(row.status, row.status_text)}</td>"
            f'<td class="detail">{escape(row.detail)}</td></tr>'
        )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def render_html(document: Evidence) -> str:
    accounts = document.accounts()
    body = [
        "<h1>secpref-guard: RAM security settings against the baseline</h1>",
        _meta(document),
        "<h2>Accounts</h2>",
        _account_cards(document),
        _account_summary(document),
        "<h2>Per field</h2>",
        _field_summary(document),
        "<h2>Per account</h2>",
        *(_account_table(a, rows, document) for a, rows in accounts.items()),
    ]
    title = f"secpref-guard report {document.checked_at.strftime('%Y-%m-%d')}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
