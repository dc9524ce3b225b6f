"""The three deployed handlers (scheduled, audit_event, worker: the files in functions/) across
a Resource Directory emulated end to end: Resource Manager, STS, the IMS of every member and
Function Compute running the worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ENDPOINT
from org_support import WORKER, serve
from secpref_guard import handlers, instance
from secpref_guard.emulator.resourcemanager import MEMBER_ROLE, Organisation, organisation
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
TIMER = (ROOT / "events" / "timer.json").read_bytes()


@pytest.fixture
def org(monkeypatch: pytest.MonkeyPatch) -> Iterator[Organisation]:
    for name, value in {
        "GUARD_IMS_ENDPOINT": ENDPOINT,
        "GUARD_STS_ENDPOINT": ENDPOINT,
        "GUARD_RESOURCEMANAGER_ENDPOINT": ENDPOINT,
        "GUARD_FC_ENDPOINT": ENDPOINT,
        "GUARD_TARGETS": "resource-directory",
        "GUARD_SELF_ROLE": "secpref-guard-role",
        "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
        "BASELINE_LOGIN_SESSION_DURATION": "6",
    }.items():
        monkeypatch.setenv(name, value)
    handlers.reset_instance()
    with serve(organisation(4)) as o:
        yield o
    handlers.reset_instance()


def context(o: Organisation, name: str = "secpref-guard-scheduled") -> LocalContext:
    return LocalContext(
        request_id=f"req-{name}",
        function=LocalFunction(name, "x.handler"),
        credentials=LocalCredentials(*o.guard_key),
        account_id=o.management_account,
    )


def run(handler: str, payload: bytes, o: Organisation) -> dict[str, Any]:
    return json.loads(load_handler(handler, FUNCTIONS)(payload, context(o)))


def drift(o: Organisation, *accounts: str) -> None:
    for account in accounts:
        o.emulator.ims.put(account, AllowUserToManageAccessKeys=True, LoginSessionDuration=24)


def member_event(o: Organisation, account: str, **identity: Any) -> bytes:
    document = json.loads((ROOT / "events" / "set-by-ram-user.json").read_bytes())
    document["aliyunaccountid"] = account
    document["data"]["userIdentity"]["accountId"] = account
    document["data"]["userIdentity"].update(identity)
    return json.dumps(document).encode()


def test_timer_enforces_every_member_account_in_process(org: Organisation) -> None:
    drift(org, org.members[0], org.members[2])
    result = run("scheduled.handler", TIMER, org)

    assert result["status"] == "reverted"
    assert result["counts"]["reverted"] == 2
    assert result["counts"]["accounts"] == 5  # the management account and four members
    assert {d["account"] for d in result["drift"]} == {org.members[0], org.members[2]}
    for account in org.members:
        assert org.emulator.ims.state(account)["AllowUserToManageAccessKeys"] is False


def test_an_account_whose_role_cannot_be_assumed_fails_the_run_after_the_others(
    org: Organisation,
) -> None:
    drift(org, *org.members)
    org.sts.remove_role(org.members[1], MEMBER_ROLE)
    with pytest.raises(handlers.HandlerError, match=rf"1 of 5 accounts failed: {org.members[1]}"):
        run("scheduled.handler", TIMER, org)
    # the failed account hides nothing and stops nothing
    for account in org.members:
        expected = account == org.members[1]
        assert org.emulator.ims.state(account)["AllowUserToManageAccessKeys"] is expected


def test_past_the_threshold_the_worker_function_enforces_the_batches(
    org: Organisation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARD_WORKER_FUNCTION", WORKER)
    monkeypatch.setenv("GUARD_FANOUT_THRESHOLD", "2")
    monkeypatch.setenv("GUARD_BATCH_SIZE", "2")
    worker = load_handler("worker.handler", FUNCTIONS)
    guard_key = LocalCredentials(*org.guard_key)
    from secpref_guard.credentials import Credentials

    org.fc.add_function(
        org.management_account,
        WORKER,
        worker,
        credentials=Credentials(
            guard_key.access_key_id, guard_key.access_key_secret, guard_key.security_token
        ),
    )
    drift(org, org.members[0], org.members[3])

    result = run("scheduled.handler", TIMER, org)
    invocations = org.fc.drain()

    assert result["counts"]["dispatched"] == 5
    assert len(invocations) == 3  # 5 accounts in batches of 2
    assert {i.status for i in invocations} == {"succeeded"}
    reports = [json.loads(i.result) for i in invocations]
    assert sum(r["counts"]["reverted"] for r in reports) == 2
    for account in org.members:
        assert org.emulator.ims.state(account)["AllowUserToManageAccessKeys"] is False


def test_worker_rejects_a_malformed_batch_without_any_call(org: Organisation) -> None:
    with pytest.raises(handlers.HandlerError, match="malformed event: worker batch"):
        run("worker.handler", b'{"accounts": "not a list"}', org)
    assert org.emulator.ims.calls_of("SetSecurityPreference") == []


def test_an_event_in_a_member_account_is_enforced_in_that_account(org: Organisation) -> None:
    member = org.members[2]
    drift(org, member, org.members[0])
    result = run("audit_event.handler", member_event(org, member), org)

    assert result["status"] == "reverted"
    assert result["account"] == member
    assert org.emulator.ims.state(member)["AllowUserToManageAccessKeys"] is False
    # only the account the event named was touched
    assert org.emulator.ims.state(org.members[0])["AllowUserToManageAccessKeys"] is True


def test_the_guards_own_session_in_a_member_account_is_skipped(org: Organisation) -> None:
    member = org.members[1]
    drift(org, member)
    run("scheduled.handler", TIMER, org)  # this instance writes to the member: its session
    held = instance._member_access.cached(member).credentials.access_key_id
    org.emulator.ims.calls.clear()
    arn = f"acs:ram::{member}:assumed-role/{MEMBER_ROLE.lower()}/secpref-guard"
    payload = member_event(org, member, type="assumed-role", arn=arn, accessKeyId=held)
    result = run("audit_event.handler", payload, org)
    assert result["status"] == "skipped"
    assert "own session" in result["reason"]
    assert org.emulator.ims.calls == []


def test_a_session_only_named_like_the_guards_is_read(org: Organisation) -> None:
    """Whoever may assume the member role picks the session name: without the guard's own
    key the change is read (and found compliant, or reverted), never skipped unseen."""
    member = org.members[1]
    drift(org, member)
    arn = f"acs:ram::{member}:assumed-role/{MEMBER_ROLE.lower()}/secpref-guard"
    payload = member_event(org, member, type="assumed-role", arn=arn, accessKeyId="STS.someone")
    result = run("audit_event.handler", payload, org)
    assert result["status"] == "reverted"
    assert org.emulator.ims.state(member)["AllowUserToManageAccessKeys"] is False


def test_an_excluded_member_account_is_never_touched(
    org: Organisation, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = org.members[3]
    monkeypatch.setenv("GUARD_EXCLUDE_ACCOUNTS", member)
    drift(org, member)
    assert run("audit_event.handler", member_event(org, member), org)["status"] == "skipped"
    result = run("scheduled.handler", TIMER, org)
    assert member in [s["account"] for s in result["skipped"]]
    assert org.emulator.ims.state(member)["AllowUserToManageAccessKeys"] is True


def test_a_member_event_whose_role_cannot_be_assumed_fails_loudly(org: Organisation) -> None:
    member = org.members[0]
    org.sts.remove_role(member, MEMBER_ROLE)
    with pytest.raises(handlers.HandlerError, match=member):
        run("audit_event.handler", member_event(org, member), org)


# --- the CLI across the organisation ---------------------------------------------------------


@pytest.fixture
def cli_env(org: Organisation, monkeypatch: pytest.MonkeyPatch) -> Organisation:
    key_id, secret, token = org.guard_key
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", token)
    return org


def test_cli_check_covers_every_target_and_writes_nothing(
    cli_env: Organisation, capsys: pytest.CaptureFixture[str]
) -> None:
    from secpref_guard import cli

    drift(cli_env, cli_env.members[1])
    assert cli.main(["check"]) == 2
    out = capsys.readouterr().out
    assert f"account {cli_env.members[1]} (check): drift in 2 of 2 baseline fields" in out
    assert "5 accounts: 4 compliant, 1 drift" in out
    assert cli_env.emulator.ims.calls_of("SetSecurityPreference") == []


def test_cli_enforce_reverts_every_target_and_reports_a_failed_one(
    cli_env: Organisation, capsys: pytest.CaptureFixture[str]
) -> None:
    from secpref_guard import cli

    drift(cli_env, *cli_env.members)
    cli_env.sts.remove_role(cli_env.members[0], MEMBER_ROLE)
    assert cli.main(["enforce", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["reverted"] == 3
    assert [f["account"] for f in summary["failed"]] == [cli_env.members[0]]
    for account in cli_env.members[1:]:
        assert cli_env.emulator.ims.state(account)["AllowUserToManageAccessKeys"] is False


def test_cli_applies_exemptions_to_the_account_its_credentials_belong_to(
    cli_env: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from secpref_guard import cli

    monkeypatch.setenv("GUARD_TARGETS", "self")
    own = cli_env.management_account
    exemption = [
        {
            "account": own,
            "fields": ["AllowUserToManageAccessKeys"],
            "until": "2999-12-31",
            "reason": "CHG-7",
        }
    ]
    monkeypatch.setenv("GUARD_EXEMPTIONS", json.dumps(exemption))
    drift(cli_env, own)
    assert cli.main(["enforce", "--json"]) == 2  # exempt drift is left
    result = json.loads(capsys.readouterr().out)
    assert result["account"] == own
    actions = {d["field"]: d["action"] for d in result["drift"]}
    assert actions == {"AllowUserToManageAccessKeys": "exempt", "LoginSessionDuration": "revert"}
    assert cli_env.emulator.ims.state(own)["AllowUserToManageAccessKeys"] is True


def test_a_session_merely_named_like_the_guards_is_not_skipped(org: Organisation) -> None:
    """Anyone may call a session `secpref-guard`; only the member role's session is the guard."""
    member = org.members[1]
    drift(org, member)
    arn = f"acs:ram::{member}:assumed-role/any-admin-role/secpref-guard"
    result = run(
        "audit_event.handler", member_event(org, member, type="assumed-role", arn=arn), org
    )
    assert result["status"] == "reverted"
    assert org.emulator.ims.state(member)["AllowUserToManageAccessKeys"] is False


def test_a_run_out_of_time_reports_every_account_it_could_not_reach(org: Organisation) -> None:
    """Organisation-wide runs share the invocation's API time: past it, the remaining accounts
    fail at once with the reason, and the run still ends with its summary."""
    short = LocalContext(
        request_id="req-short",
        function=LocalFunction("secpref-guard-scheduled", "x.handler", timeout=1),
        credentials=LocalCredentials(*org.guard_key),
        account_id=org.management_account,
    )
    drift(org, *org.members)
    with pytest.raises(handlers.HandlerError, match=r"5 of 5 accounts failed.*TimeBudgetSpent"):
        load_handler("scheduled.handler", FUNCTIONS)(TIMER, short)
    assert org.emulator.ims.calls_of("SetSecurityPreference") == []
