"""What the evidence tests share: an emulated Resource Directory of 25 accounts (the management
account and 24 members) with every case an auditor meets, and the `report` command run on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conftest import ENDPOINT
from org_support import serve
from secpref_guard import cli
from secpref_guard.emulator.resourcemanager import MEMBER_ROLE, Organisation, organisation

MARKUP = '<script>alert("x")</script><img src="http://evil.example/x.png"> CHG-7 & co'
EXEMPT_UNTIL = "2999-12-31"
BASELINE = (  # the field table's order: the rows' order within an account
    "LoginSessionDuration",
    "MFAOperationForLogin",
    "AllowUserToManageAccessKeys",
    "MaxIdleDaysForAccessKeys",
    "MaxIdleDaysForUsers",
    "MinimumPasswordLength",
)
COMPLIANT_STATE = {
    "MFAOperationForLogin": "mandatory",
    "MaxIdleDaysForUsers": 90,
    "MaxIdleDaysForAccessKeys": 180,
    "AllowUserToManageAccessKeys": False,
    "LoginSessionDuration": 6,
    "MinimumPasswordLength": 14,
}


@dataclass(frozen=True)
class Directory:
    org: Organisation
    drifted: str
    exempt: str
    report_only: str
    excluded: str
    unusable: str
    failing: str

    @property
    def accounts(self) -> list[str]:
        return [self.org.management_account, *self.org.members]


@pytest.fixture(name="directory")
def directory_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Directory]:
    with serve(organisation(24)) as o:
        drifted, exempt, report_only, excluded, unusable, failing = o.members[:6]
        key_id, secret, token = o.guard_key
        exemption = {
            "account": exempt,
            "fields": ["AllowUserToManageAccessKeys"],
            "until": EXEMPT_UNTIL,
            "reason": MARKUP,
        }
        for name, value in {
            "GUARD_IMS_ENDPOINT": ENDPOINT,
            "GUARD_STS_ENDPOINT": ENDPOINT,
            "GUARD_RESOURCEMANAGER_ENDPOINT": ENDPOINT,
            "GUARD_TARGETS": "resource-directory",
            "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
            "BASELINE_MFA_OPERATION_FOR_LOGIN": "mandatory",  # CIS 1.4's value: cited
            "BASELINE_MAX_IDLE_DAYS_FOR_USERS": "90",  # CIS 1.5's: cited
            "BASELINE_MAX_IDLE_DAYS_FOR_ACCESS_KEYS": "180",  # weaker than CIS 1.6: not cited
            "BASELINE_PASSWORD_MINIMUM_LENGTH": "14",  # the password policy, CIS 1.11's value
            "BASELINE_LOGIN_SESSION_DURATION": "6",
            "GUARD_REPORT_ONLY_FIELDS": "LoginSessionDuration",
            "GUARD_EXCLUDE_ACCOUNTS": excluded,
            "GUARD_EXEMPTIONS": json.dumps([exemption]),
            "ALIBABA_CLOUD_ACCESS_KEY_ID": key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret,
            "ALIBABA_CLOUD_SECURITY_TOKEN": token,
        }.items():
            monkeypatch.setenv(name, value)
        for account in [o.management_account, *o.members]:
            o.emulator.ims.put(account, **COMPLIANT_STATE)
        o.emulator.ims.put(
            drifted, AllowUserToManageAccessKeys=True, MFAOperationForLogin="adaptive"
        )
        o.emulator.ims.put(drifted, MinimumPasswordLength=8)
        o.emulator.ims.put(o.members[6], MinimumPasswordLength=16)  # stricter: compliant
        o.emulator.ims.put(exempt, AllowUserToManageAccessKeys=True)
        o.emulator.ims.put(report_only, LoginSessionDuration=24)
        o.directory.set_status(unusable, "CreateFailed")
        o.sts.remove_role(failing, MEMBER_ROLE)
        yield Directory(o, drifted, exempt, report_only, excluded, unusable, failing)


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["report", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err
