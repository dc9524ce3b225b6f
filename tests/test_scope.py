"""One scope decision for every trigger.

The same six accounts (the guard's own, a listed member, an excluded member, a member in an
unusable state, a former member and an account that never was one, the last two with a member
role that still trusts the management account) go through the timer, the audit event, the
worker batch and the CLI. Each trigger reaches the same decision for each account, and an
account out of scope gets no API call at all: no AssumeRole, no read, no write.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import ENDPOINT
from org_support import serve
from secpref_guard import cli, handlers
from secpref_guard.batch import MAX_BATCH_ACCOUNTS, make_batches
from secpref_guard.config import Settings
from secpref_guard.emulator.resourcemanager import MEMBER_ROLE, Organisation, organisation
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler
from secpref_guard.scope import Candidate, decide

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
TIMER = (ROOT / "events" / "timer.json").read_bytes()
BARE = json.loads((ROOT / "events" / "bare-record.json").read_bytes())
EVENT = json.loads((ROOT / "events" / "set-by-ram-user.json").read_bytes())


@dataclass(frozen=True)
class Accounts:
    own: str
    listed: str
    excluded: str
    unusable: str
    former: str
    never: str

    @property
    def in_scope(self) -> set[str]:
        return {self.own, self.listed}

    @property
    def out_of_scope(self) -> set[str]:
        return {self.excluded, self.unusable, self.former, self.never}


# the rule each out-of-scope account is skipped by, whichever trigger proposed it
RULES = {
    "excluded": "GUARD_EXCLUDE_ACCOUNTS",
    "unusable": "resource-directory",
    "former": "resource-directory",
    "never": "resource-directory",
}


@pytest.fixture
def org(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Organisation, Accounts]]:
    with serve(organisation(4)) as o:
        listed, excluded, unusable, former = o.members
        never = "1999999999999999"
        o.directory.set_status(unusable, "CreateFailed")
        o.directory.remove_member(former)  # it left; its role still trusts the management
        o.sts.add_role(never, MEMBER_ROLE, trusted_accounts={o.management_account})
        accounts = Accounts(o.management_account, listed, excluded, unusable, former, never)
        for account in (accounts.own, *o.members, never):
            o.emulator.ims.put(account, AllowUserToManageAccessKeys=True)
        for name, value in {
            "GUARD_IMS_ENDPOINT": ENDPOINT,
            "GUARD_STS_ENDPOINT": ENDPOINT,
            "GUARD_RESOURCEMANAGER_ENDPOINT": ENDPOINT,
            "GUARD_TARGETS": "resource-directory",
            "GUARD_EXCLUDE_ACCOUNTS": excluded,
            "GUARD_SELF_ROLE": "secpref-guard-role",
            "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
        }.items():
            monkeypatch.setenv(name, value)
        handlers.reset_instance()
        yield o, accounts
        handlers.reset_instance()


def context(o: Organisation) -> LocalContext:
    return LocalContext(
        request_id="req-scope",
        function=LocalFunction("secpref-guard", "x.handler"),
        credentials=LocalCredentials(*o.guard_key),
        account_id=o.management_account,
    )


def invoke(handler: str, payload: bytes, o: Organisation) -> dict[str, Any]:
    handlers.reset_instance()
    return json.loads(load_handler(handler, FUNCTIONS)(payload, context(o)))


def event_for(account: str | None) -> bytes:
    document = json.loads(json.dumps(EVENT))
    if account is None:
        document.pop("aliyunaccountid", None)
        document["data"].pop("recipientAccountId", None)
    else:
        document["aliyunaccountid"] = account
        document["data"]["recipientAccountId"] = account
    return json.dumps(document).encode()


def touched(o: Organisation) -> set[str]:
    """Every account the guard made a call for: entered with AssumeRole, or read or written."""
    accounts = set()
    for call in o.emulator.ims.calls:
        if call.action == "AssumeRole":
            accounts.add(call.params["RoleArn"].split(":")[3])
        elif call.action in ("GetSecurityPreference", "SetSecurityPreference"):
            accounts.add(call.account)
    return accounts


def decisions(result: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {a["account"]: (a["status"], a.get("rule")) for a in result["accounts"]}


def assert_same_decisions(
    found: dict[str, tuple[str, str | None]], accounts: Accounts, proposed: set[str]
) -> None:
    expected = {accounts.own: ("reverted", None), accounts.listed: ("reverted", None)}
    for name, rule in RULES.items():
        account = getattr(accounts, name)
        if account in proposed:
            expected[account] = ("skipped", rule)
    assert found == expected


def test_the_timer_enforces_members_in_scope_and_skips_the_rest(org: Any) -> None:
    o, accounts = org
    result = invoke("scheduled.handler", TIMER, o)
    # the timer proposes what the directory lists: a former member or a stranger is not there
    assert_same_decisions(decisions(result), accounts, {accounts.excluded, accounts.unusable})
    assert touched(o) == accounts.in_scope


@pytest.mark.parametrize("name", ["own", "listed", "excluded", "unusable", "former", "never"])
def test_an_audit_event_reaches_the_same_decision_for_each_account(org: Any, name: str) -> None:
    o, accounts = org
    account = getattr(accounts, name)
    result = invoke("audit_event.handler", event_for(account), o)
    if account in accounts.in_scope:
        assert (result["status"], result["account"]) == ("reverted", account)
        assert touched(o) == {account}
    else:
        assert decisions(result) == {account: ("skipped", RULES[name])}
        assert touched(o) == set()
        assert o.emulator.ims.state(account)["AllowUserToManageAccessKeys"] is True
    # membership of one account is one GetAccount, never a listing
    assert [
        c.action for c in o.emulator.ims.calls if c.action in ("GetAccount", "ListAccounts")
    ] == ([] if account == accounts.excluded else ["GetAccount"])


def test_a_worker_batch_reaches_the_same_decisions_whatever_it_claims(org: Any) -> None:
    o, accounts = org
    everyone = [accounts.own, accounts.listed, accounts.excluded, accounts.unusable]
    everyone += [accounts.former, accounts.never]
    (batch,) = make_batches(everyone, run_id="f0")
    result = invoke("worker.handler", batch.payload(), o)
    assert_same_decisions(decisions(result), accounts, set(everyone))
    assert touched(o) == accounts.in_scope


def test_the_cli_reaches_the_same_decisions(
    org: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    o, accounts = org
    key_id, secret, token = o.guard_key
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", token)
    assert cli.main(["enforce", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert_same_decisions(decisions(result), accounts, {accounts.excluded, accounts.unusable})
    assert touched(o) == accounts.in_scope


def test_a_worker_batch_of_unknown_ids_costs_one_listing_and_no_assume_role(org: Any) -> None:
    o, _ = org
    unknown = [str(3_000_000_000_000_000 + i) for i in range(MAX_BATCH_ACCOUNTS)]
    (batch,) = make_batches(unknown, run_id="f1", max_accounts=MAX_BATCH_ACCOUNTS)
    result = invoke("worker.handler", batch.payload(), o)

    assert result["counts"]["skipped"] == MAX_BATCH_ACCOUNTS
    # the bound: one ListAccounts page per 100 members of the directory, nothing else
    assert [c.action for c in o.emulator.ims.calls] == ["ListAccounts"]
    assert result["api_calls"] == 1


def test_a_batch_over_the_limit_is_refused_before_any_call(org: Any) -> None:
    o, _ = org
    payload = json.dumps(
        {
            "type": "secpref-guard.batch",
            "version": 1,
            "run_id": "f1",
            "batch": 1,
            "batches": 1,
            "accounts": [str(3_000_000_000_000_000 + i) for i in range(5000)],
        }
    ).encode()
    with pytest.raises(handlers.HandlerError, match="5000 accounts, more than a batch may carry"):
        invoke("worker.handler", payload, o)
    assert o.emulator.ims.calls == []


def test_skipped_accounts_do_not_flood_the_log(
    org: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    o, _ = org
    unknown = [str(3_000_000_000_000_000 + i) for i in range(MAX_BATCH_ACCOUNTS)]
    (batch,) = make_batches(unknown, run_id="f1", max_accounts=MAX_BATCH_ACCOUNTS)
    capsys.readouterr()
    invoke("worker.handler", batch.payload(), o)
    err = capsys.readouterr().err
    assert len(err.splitlines()) <= 30
    assert len(err) < 20_000


# --- self and list deployments: an event that names no account means the own one -----------


@pytest.mark.parametrize(
    ("targets", "exclude"),
    [("self", "own"), ("list", "own"), ("list-without-own", None)],
)
def test_an_event_naming_no_account_is_the_own_account_and_only_if_in_scope(
    org: Any, monkeypatch: pytest.MonkeyPatch, targets: str, exclude: str | None
) -> None:
    o, accounts = org
    monkeypatch.setenv(
        "GUARD_TARGETS",
        {"self": "self", "list": f"{accounts.own},{accounts.listed}"}.get(targets, accounts.listed),
    )
    monkeypatch.setenv("GUARD_EXCLUDE_ACCOUNTS", accounts.own if exclude else accounts.excluded)
    bare = dict(BARE)
    bare.pop("recipientAccountId", None)
    result = invoke("audit_event.handler", json.dumps(bare).encode(), o)

    assert result["status"] == "skipped"
    assert result["account"] == accounts.own
    assert result["rule"] == ("GUARD_EXCLUDE_ACCOUNTS" if exclude else "GUARD_TARGETS")
    assert o.emulator.ims.calls == []
    # the timer says the same
    timer = invoke("scheduled.handler", TIMER, o)
    assert accounts.own not in touched(o)
    assert timer["counts"]["reverted"] == (1 if targets != "self" else 0)


def test_the_own_role_of_another_account_is_not_the_guard(
    org: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without userIdentity.accountId the ARN's account decides whose role it was."""
    o, accounts = org
    monkeypatch.setenv("GUARD_TARGETS", "self")
    document = json.loads(event_for(accounts.own))
    identity = document["data"]["userIdentity"]
    identity.pop("accountId", None)
    identity["accessKeyId"] = o.guard_key[0]  # made with the guard's own key
    identity["type"] = "assumed-role"
    identity["arn"] = f"acs:ram::{accounts.never}:assumed-role/secpref-guard-role/x"
    result = invoke("audit_event.handler", json.dumps(document).encode(), o)
    assert result["status"] == "reverted"  # someone else's role changed our account

    identity["arn"] = f"acs:ram::{accounts.own}:assumed-role/secpref-guard-role/x"
    o.emulator.ims.calls.clear()
    result = invoke("audit_event.handler", json.dumps(document).encode(), o)
    assert result["status"] == "skipped"
    assert "own role" in result["reason"]
    assert o.emulator.ims.calls == []


# --- the rules, one by one ---------------------------------------------------------------------


def settings(**values: str) -> Settings:
    return Settings.model_validate(values)


@pytest.mark.parametrize(
    ("values", "candidate", "own", "in_scope", "rule"),
    [
        ({}, None, "1", True, None),
        ({}, "1", "1", True, None),
        ({}, "2", "1", False, "GUARD_TARGETS"),
        ({}, "2", None, False, "own-account-unknown"),
        ({}, None, None, True, None),  # a self deployment that does not know its id: "self"
        ({"GUARD_EXCLUDE_ACCOUNTS": "1"}, None, "1", False, "GUARD_EXCLUDE_ACCOUNTS"),
        ({"GUARD_EXCLUDE_ACCOUNTS": "9"}, None, None, False, "own-account-unknown"),
        ({"GUARD_TARGETS": "2,3"}, "3", "1", True, None),
        ({"GUARD_TARGETS": "2,3"}, "4", "1", False, "GUARD_TARGETS"),
        ({"GUARD_TARGETS": "2,3"}, None, "1", False, "GUARD_TARGETS"),
        ({"GUARD_TARGETS": "2,3"}, None, None, False, "own-account-unknown"),
        (
            {"GUARD_TARGETS": "2,3", "GUARD_EXCLUDE_ACCOUNTS": "3"},
            "3",
            "1",
            False,
            "GUARD_EXCLUDE_ACCOUNTS",
        ),
        ({}, "1; drop", "1", False, "invalid-account"),
    ],
)
def test_each_rule(
    values: dict[str, str], candidate: str | None, own: str | None, in_scope: bool, rule: str | None
) -> None:
    (decision,) = decide([Candidate(candidate)], settings(**values), own_account=own)
    assert (decision.in_scope, decision.rule) == (in_scope, rule)
    assert decision.reason or in_scope


def test_a_candidate_proposed_twice_is_decided_once_with_every_setting_it_was_asked_for() -> None:
    found = decide(
        [Candidate("1", ("password-policy",)), Candidate("1", ("security-preference",))],
        settings(),
        own_account="1",
    )
    assert len(found) == 1
    assert found[0].settings == ("password-policy", "security-preference")
    (everything,) = decide(
        [Candidate("1", ("password-policy",)), Candidate(None)], settings(), own_account="1"
    )
    assert everything.settings is None
