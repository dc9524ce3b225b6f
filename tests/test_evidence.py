"""`secpref-guard report`: evidence for auditors from one read-only run, in three formats.

One emulated Resource Directory of 25 accounts (the management account and 24 members) holds
every case an auditor meets: compliant accounts, drift, an exempt field (its reason written
with markup), a report-only field, an excluded account, a member in an unusable state and a
member whose role cannot be assumed. Each format is read back the way its consumer reads it:
CSV with csv.DictReader, OCSF as JSON checked for the Compliance Finding's keys and types, the
HTML page with html.parser (and in headless Chromium, in test_evidence_browser.py).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conftest import ENDPOINT
from evidence_support import (  # noqa: F401 - directory_fixture: the fixture
    BASELINE,
    EXEMPT_UNTIL,
    MARKUP,
    Directory,
    directory_fixture,
    report,
)
from readme_examples import DEMO_BASELINE, DEMO_STATE  # `make demo`'s emulator and baseline
from secpref_guard.config import load_config
from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator, mock_endpoint
from secpref_guard.evidence import Evidence, Row
from secpref_guard.evidence.csv_format import COLUMNS, render_csv
from secpref_guard.evidence.rows import account_rows, citation
from secpref_guard.presets import PRESETS
from secpref_guard.report import AccountReport, Drift
from secpref_guard.report_command import Progress
from secpref_guard.table import cell_text


def by_account(rows: list[dict[str, str]]) -> dict[str, dict[str, dict[str, str]]]:
    grouped: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault(row["account"], {})[row["field"]] = row
    return grouped


# --- CSV ----------------------------------------------------------------------------------


def test_csv_has_a_row_per_account_and_field_with_the_verdict_and_why(
    directory: Directory, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = report(capsys)

    assert status == 1  # an account failed: that is an error, whatever else was found
    errors = [line for line in err.splitlines() if line.startswith("secpref-guard: error:")]
    assert len(errors) == 1
    assert f"account {directory.failing}" in errors[0]
    assert directory.org.emulator.ims.calls_of("SetSecurityPreference") == []  # read-only
    assert out.endswith("\r\n")
    assert "\r\n" in out.rstrip("\r\n")
    reader = csv.DictReader(io.StringIO(out, newline=""))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    rows = list(reader)
    assert len(rows) == 25 * len(BASELINE)
    grouped = by_account(rows)
    assert list(grouped) == directory.accounts  # every account of scope, in the run's order
    for fields in grouped.values():
        assert list(fields) == list(BASELINE)

    d = directory
    drifted = grouped[d.drifted]
    assert [drifted[f]["status"] for f in BASELINE] == [
        "compliant",
        "drift",
        "drift",
        "compliant",
        "compliant",
        "drift",
    ]
    password = drifted["MinimumPasswordLength"]
    assert (password["setting"], password["live_value"], password["rule"]) == (
        "password-policy",
        "8",
        "at least 14",
    )
    assert ", 1.11:" in password["cis_recommendation"]
    stricter = grouped[d.org.members[6]]["MinimumPasswordLength"]
    assert (stricter["status"], stricter["live_value"]) == ("compliant", "16")
    access = drifted["AllowUserToManageAccessKeys"]
    assert (access["live_value"], access["baseline"], access["rule"]) == (
        "true",
        "false",
        "exactly false",
    )
    assert access["baseline_source"] == "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS"
    mfa = drifted["MFAOperationForLogin"]
    assert (mfa["live_value"], mfa["baseline"]) == ("adaptive", "mandatory")
    assert mfa["cis_recommendation"].startswith(
        "CIS Alibaba Cloud Foundations Benchmark v2.0.0, 1.4"
    )
    assert mfa["baseline_source"] == "BASELINE_MFA_OPERATION_FOR_LOGIN"
    assert access["cis_recommendation"] == ""  # no preset names a recommendation for it
    users = drifted["MaxIdleDaysForUsers"]
    assert users["cis_recommendation"].startswith(
        "CIS Alibaba Cloud Foundations Benchmark v2.0.0, 1.5"
    )
    assert drifted["MaxIdleDaysForAccessKeys"]["cis_recommendation"] == ""  # 180 is weaker

    exempt = grouped[d.exempt]["AllowUserToManageAccessKeys"]
    assert exempt["status"] == f"exempt until {EXEMPT_UNTIL}"
    assert MARKUP in exempt["detail"]
    only = grouped[d.report_only]["LoginSessionDuration"]
    assert (only["status"], only["live_value"]) == ("report-only", "24")
    assert "GUARD_REPORT_ONLY_FIELDS" in only["detail"]

    for account, status_text, reason in [
        (d.excluded, "skipped", "GUARD_EXCLUDE_ACCOUNTS"),
        (d.unusable, "skipped", "CreateFailed"),
        (d.failing, "error", "cannot assume"),
    ]:
        for row in grouped[account].values():
            assert row["status"] == status_text
            assert reason in row["detail"]
            assert row["live_value"] == ""  # never read
            assert row["baseline"]
            assert row["rule"]

    compliant = [a for a in grouped if a not in {d.drifted, d.exempt, d.report_only}]
    compliant = [a for a in compliant if a not in {d.excluded, d.unusable, d.failing}]
    assert len(compliant) == 19
    for account in compliant:
        assert {r["status"] for r in grouped[account].values()} == {"compliant"}
    assert {r["checked_at"] for r in rows} == {rows[0]["checked_at"]}
    datetime.fromisoformat(rows[0]["checked_at"].replace("Z", "+00:00"))


def test_csv_values_are_rendered_as_the_cli_renders_them() -> None:
    assert [cell_text(v) for v in (True, False, 6, ["10.0.0.0/8", "192.168.0.0/16"], [], None)] == [
        "true",
        "false",
        "6",
        "10.0.0.0/8;192.168.0.0/16",
        "(none)",
        "(absent)",
    ]


def test_a_recommendation_is_cited_only_where_the_baseline_meets_it() -> None:
    preset = load_config({"GUARD_PRESET": "cis-2.0"})
    for name, entry in PRESETS["cis-2.0"].items():
        assert citation(preset, name) == entry.citation
    stricter = load_config({"GUARD_PRESET": "cis-2.0", "BASELINE_PASSWORD_MINIMUM_LENGTH": "16"})
    assert ", 1.11:" in citation(stricter, "MinimumPasswordLength")
    weaker = load_config({"GUARD_PRESET": "cis-2.0", "BASELINE_PASSWORD_MINIMUM_LENGTH": "10"})
    assert citation(weaker, "MinimumPasswordLength") == ""
    alone = load_config({"BASELINE_MFA_OPERATION_FOR_LOGIN": "mandatory"})
    assert ", 1.4:" in citation(alone, "MFAOperationForLogin")
    assert (
        citation(
            load_config({"BASELINE_MFA_OPERATION_FOR_LOGIN": "adaptive"}), "MFAOperationForLogin"
        )
        == ""
    )


def test_rows_for_a_field_not_returned_an_expired_exemption_and_a_failed_read() -> None:
    config = load_config(
        {
            "BASELINE_LOGIN_SESSION_DURATION": "6",
            "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
        }
    )
    expired = "exemption expired on 2020-01-01 (CHG-1)"
    account = AccountReport(
        account="1",
        status="drift",
        mode="check",
        drift=[
            Drift("LoginSessionDuration", None, 6, "dry-run"),
            Drift("AllowUserToManageAccessKeys", True, False, "dry-run", note=expired),
        ],
        observed={"LoginSessionDuration": None, "AllowUserToManageAccessKeys": True},
    )
    session, access = account_rows(account, config)
    assert (session.status, session.read, session.live_text) == ("drift", True, "(absent)")
    assert session.detail == "the account did not return the field"
    assert session.rule == "at most 6"
    assert (access.status, access.detail, access.live_text) == ("drift", expired, "true")
    failed = AccountReport(account="2", status="error", mode="check", reason="Throttling.User")
    assert {(r.status, r.detail, r.read) for r in account_rows(failed, config)} == {
        ("error", "Throttling.User", False)
    }


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_quoted() -> None:
    row = Row(
        account="1",
        setting="security-preference",
        field="LoginSessionDuration",
        live=-1,
        read=True,
        baseline=6,
        rule="exactly 6",
        status="drift",
        detail='=HYPERLINK("http://evil.example")',
    )
    document = Evidence((row,), datetime(2026, 12, 1, tzinfo=timezone.utc), "r", "self", None, ())
    (parsed,) = csv.DictReader(io.StringIO(render_csv(document), newline=""))
    assert parsed["detail"] == "'" + row.detail
    assert parsed["live_value"] == "-1"  # a number stays a number


# --- OCSF ---------------------------------------------------------------------------------

REQUIRED: dict[str, type | tuple[type, ...]] = {
    "class_uid": int,
    "category_uid": int,
    "activity_id": int,
    "type_uid": int,
    "time": int,
    "severity_id": int,
    "status_id": int,
    "compliance": dict,
    "finding_info": dict,
    "metadata": dict,
    "resources": list,
    "cloud": dict,
}


def test_ocsf_is_one_compliance_finding_per_account_and_field(
    directory: Directory, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = report(capsys, "--format", "ocsf")
    assert status == 1
    findings = json.loads(out)
    assert isinstance(findings, list)
    assert len(findings) == 25 * len(BASELINE)
    uids = set()
    for finding in findings:
        for key, kind in REQUIRED.items():
            assert isinstance(finding[key], kind), key
        assert (finding["class_uid"], finding["category_uid"], finding["activity_id"]) == (
            2003,
            2,
            1,
        )
        assert finding["type_uid"] == 200301
        assert finding["time"] > 1_700_000_000_000  # milliseconds since the epoch
        compliance = finding["compliance"]
        assert isinstance(compliance["standards"], list)
        assert compliance["standards"]
        assert all(isinstance(s, str) for s in compliance["standards"])
        assert isinstance(compliance["requirements"], list)
        assert isinstance(compliance["control"], str)
        assert compliance["status_id"] in (0, 1, 2, 3)
        info = finding["finding_info"]
        assert isinstance(info["uid"], str)
        assert isinstance(info["title"], str)
        uids.add(info["uid"])
        product = finding["metadata"]["product"]
        assert product["name"] == "secpref-guard"
        assert isinstance(product["version"], str)
        assert product["vendor_name"]
        assert finding["metadata"]["version"] == "1.3.0"
        (resource,) = finding["resources"]
        assert isinstance(resource["uid"], str)
        assert isinstance(resource["type"], str)
        assert finding["cloud"]["provider"] == "AlibabaCloud"
        assert finding["cloud"]["account"]["uid"].isdigit()
    assert len(uids) == len(findings)  # one finding per account and field

    def one(account: str, field: str) -> dict[str, Any]:
        (found,) = [
            f
            for f in findings
            if f["cloud"]["account"]["uid"] == account and f["metadata"]["event_code"] == field
        ]
        return found

    d = directory
    mfa = one(d.drifted, "MFAOperationForLogin")
    assert (mfa["compliance"]["status_id"], mfa["compliance"]["status"]) == (3, "Fail")
    assert mfa["compliance"]["standards"] == ["CIS Alibaba Cloud Foundations Benchmark v2.0.0"]
    assert mfa["compliance"]["control"] == "1.4"
    assert mfa["unmapped"]["live_value"] == "adaptive"
    assert mfa["severity_id"] == 3
    passed = one(d.org.management_account, "MFAOperationForLogin")
    assert (passed["compliance"]["status_id"], passed["severity_id"]) == (1, 1)
    exempt = one(d.exempt, "AllowUserToManageAccessKeys")
    assert (exempt["status_id"], exempt["status"]) == (3, "Suppressed")
    assert exempt["unmapped"]["exempt_until"] == EXEMPT_UNTIL
    assert one(d.excluded, "LoginSessionDuration")["compliance"]["status_id"] == 2
    failed = one(d.failing, "LoginSessionDuration")
    assert failed["compliance"]["status_id"] == 0
    assert "cannot assume" in failed["message"]
    assert failed["unmapped"]["live_value_read"] is False


# --- HTML ---------------------------------------------------------------------------------


class Page(HTMLParser):
    """The tables of the page (rows of cell texts), every tag and attribute, and the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def test_html_is_one_self_contained_page_with_a_table_per_account(
    directory: Directory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "report.html"
    status, out, _ = report(capsys, "--format", "html", "--output", str(target))
    assert status == 1
    assert out == ""
    page = Page()
    page.feed(target.read_text(encoding="utf-8"))

    names = [tag for tag, _ in page.tags]
    assert "script" not in names
    assert "img" not in names
    assert "link" not in names
    for _, attrs in page.tags:
        for key in ("src", "href"):
            assert not (attrs.get(key) or "").startswith(("http:", "https:", "//")), attrs
    assert MARKUP in "".join(page.text)  # the exemption's reason, shown as text

    overview, field_table, *account_tables = page.tables
    assert len(account_tables) == 25
    assert overview[0][:2] == ["account", "status"]
    lines = {row[0]: dict(zip(overview[0], row, strict=True)) for row in overview[1:]}
    assert list(lines) == directory.accounts
    assert lines[directory.drifted]["status"] == "drift"
    assert lines[directory.drifted]["drift"] == "3"
    assert lines[directory.failing]["status"] == "error"
    assert "cannot assume" in lines[directory.failing]["why"]
    assert "GUARD_EXCLUDE_ACCOUNTS" in lines[directory.excluded]["why"]
    links = {attrs.get("href") for tag, attrs in page.tags if tag == "a"}
    ids = {attrs.get("id") for _, attrs in page.tags if attrs.get("id")}
    assert links == {f"#{i}" for i in ids}  # every line links to its account's table
    head = field_table[0]
    assert head[:4] == ["setting", "field", "rule", "CIS recommendation"]
    summary = {row[1]: dict(zip(head, row, strict=True)) for row in field_table[1:]}
    assert list(summary) == list(BASELINE)
    access = summary["AllowUserToManageAccessKeys"]
    # 19 compliant + the report-only account, which meets this field
    assert (access["compliant"], access["drift"], access["exempt"]) == ("20", "1", "1")
    assert (access["skipped"], access["error"]) == ("2", "1")
    assert summary["MFAOperationForLogin"]["CIS recommendation"].startswith("CIS Alibaba")

    for table in account_tables:
        assert table[0] == ["setting", "field", "live value", "baseline", "rule", "status", "why"]
        assert [row[1] for row in table[1:]] == list(BASELINE)
    headings = "".join(page.text)
    assert f"account {directory.failing} error" in headings
    assert "25accounts" in headings.replace(" ", "").replace("\n", "")


# --- exit status, output file, progress ----------------------------------------------------


def test_exit_status_is_0_when_compliant_and_2_on_drift(
    directory: Directory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    o = directory.org
    monkeypatch.setenv("GUARD_TARGETS", ",".join(o.members[6:9]))
    monkeypatch.setenv("GUARD_EXCLUDE_ACCOUNTS", directory.excluded)
    assert report(capsys)[0] == 0
    o.emulator.ims.put(o.members[7], MaxIdleDaysForUsers=730)
    status, out, _ = report(capsys)
    assert status == 2
    assert sum(r["status"] == "drift" for r in csv.DictReader(io.StringIO(out))) == 1
    monkeypatch.setenv("GUARD_TARGETS", directory.exempt)  # exempt drift is drift left
    assert report(capsys)[0] == 2


def test_a_file_that_cannot_be_written_fails_before_the_run(
    directory: Directory, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir" / "report.csv"
    status, out, err = report(capsys, "--output", str(missing))
    assert status == 1
    assert out == ""
    assert err.strip() == (
        f"secpref-guard: error: --output {missing}: the directory {missing.parent} does not exist"
    )
    assert directory.org.emulator.ims.calls == []  # no run was made
    assert not missing.parent.exists()
    status, _, err = report(capsys, "--output", str(tmp_path))
    assert status == 1
    assert "is a directory" in err


def test_bad_configuration_is_one_line_and_writes_no_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("BASELINE_LOGIN_SESSION_DURATION", "25")
    target = tmp_path / "report.html"
    status, out, err = report(capsys, "--format", "html", "--output", str(target))
    assert (status, out) == (1, "")
    assert err.splitlines() == [
        "secpref-guard: error: BASELINE_LOGIN_SESSION_DURATION: expected an integer from 1 to 24, "
        "got 25"
    ]
    assert list(tmp_path.iterdir()) == []


def test_progress_is_throttled_per_second_and_per_tenth_and_silent_for_one() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress(out, clock=lambda: now[0])
    for done in range(1, 1001):
        now[0] += 0.01  # ten seconds for the run
        progress(None, done, 1000)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "report: 1000/1000 accounts"
    assert 5 <= len(lines) <= 11  # at most once a second, and never more often than per 10%
    first = int(lines[0].split()[1].split("/")[0])
    assert 100 <= first <= 110  # a second and a tenth of the accounts after the start

    quick = io.StringIO()
    progress = Progress(quick, clock=lambda: 0.0)
    for done in range(1, 26):
        progress(None, done, 25)
    assert quick.getvalue() == "report: 25/25 accounts\n"  # fast: only the end

    alone = io.StringIO()
    Progress(alone, clock=lambda: 0.0)(None, 1, 1)
    assert alone.getvalue() == ""


def test_a_long_report_shows_progress_on_stderr(
    directory: Directory, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, err = report(capsys)
    assert "report: 23/23 accounts" in err.splitlines()  # the 23 accounts in scope


# --- the README's examples are this code's output -----------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(language: str) -> str:
    section = README.read_text(encoding="utf-8").split("## Evidence for auditors", 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_readme_examples_are_what_report_prints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regenerate the README's blocks with the section's commands when this fails."""
    for name, value in {
        "GUARD_IMS_ENDPOINT": ENDPOINT,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-key-id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "test-key-secret",
        **DEMO_BASELINE,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_endpoint(Emulator.with_default_key(), ENDPOINT) as emulator:
        emulator.ims.put(DEFAULT_ACCOUNT, **DEMO_STATE)
        status, out, _ = report(capsys)
        assert status == 2
        shown = readme_block("csv")
        stamp = shown.split("\n")[1].split(",", 1)[0]
        lines = [stamp + line[line.index(",") :] for line in out.splitlines()[1:]]
        assert "\n".join([out.splitlines()[0], *lines]) + "\n" == shown

        status, out, _ = report(capsys, "--format", "ocsf")
    assert status == 2
    shown_finding = json.loads(readme_block("json"))
    finding = json.loads(out)[3]
    finding["time"] = shown_finding["time"]
    finding["finding_info"]["created_time"] = shown_finding["finding_info"]["created_time"]
    finding["metadata"]["correlation_uid"] = shown_finding["metadata"]["correlation_uid"]
    assert finding == shown_finding
