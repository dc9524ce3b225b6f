"""Findings of a sceptical review (scope, input, strictness), each a test that failed before
its fix: a secret in a URL is never quoted in a configuration error; a session merely named
like the guard's is read, not skipped; a value the API does not document is never taken for
stricter, and against the weakest baseline any value complies; a forged batch cannot bind an
unbounded run id to every log line; a TotalCount lower than the directory does not cut the
listing short; events/ holds a worker batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from secpref_guard import fields as F
from secpref_guard.batch import BatchError, parse_batch
from secpref_guard.config import ConfigError, load_config
from secpref_guard.directory import ResourceManagerClient
from secpref_guard.events import parse_audit_event
from secpref_guard.modes import audit_proposal

ROOT = Path(__file__).resolve().parent.parent
BASE = {"BASELINE_LOGIN_SESSION_DURATION": "4"}


@pytest.mark.parametrize(
    ("variable", "value", "secret"),
    [
        (
            "GUARD_DINGTALK_WEBHOOK",
            "https://oapi.dingtalk.com:99999/robot/send?access_token=TOKEN123",
            "TOKEN123",
        ),
        ("GUARD_WEBHOOK_URL", "https://user:PASSWORD9@hooks.example.com/x", "PASSWORD9"),
        ("GUARD_WEBHOOK_URL", "http://hooks.example.com/x?token=QUERY77", "QUERY77"),
    ],
)
def test_a_bad_webhook_url_is_named_without_its_secret(
    variable: str, value: str, secret: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, variable: value})
    assert variable in str(caught.value)
    assert secret not in str(caught.value)  # the handler logs this message at ERROR


def test_a_session_named_like_the_guards_is_not_proof_of_the_guard() -> None:
    # Anyone allowed to assume the member role picks the session name; this is not the guard's
    # AccessKey, so the change must at least be read (one call), not skipped unseen.
    record = {
        "id": "e1",
        "specversion": "1.0",
        "type": "ram:ActionTrail:ApiCall",
        "data": {
            "eventName": "SetSecurityPreference",
            "serviceName": "Ims",
            "recipientAccountId": "2000000000000002",
            "userIdentity": {
                "type": "assumed-role",
                "accountId": "2000000000000002",
                "accessKeyId": "STS.not-the-guards-key",
                "arn": "acs:ram::2000000000000002:assumed-role/"
                "resourcedirectoryaccountaccessrole/secpref-guard",
            },
        },
    }
    config = load_config({**BASE, "GUARD_TARGETS": "resource-directory"})
    proposal = audit_proposal(
        parse_audit_event(json.dumps(record).encode()), config.settings, "1000000000000001"
    )
    assert proposal.candidate is not None, proposal.skip_reason


@pytest.mark.parametrize(
    ("name", "live", "baseline"),
    [
        ("LoginSessionDuration", 0, 6),  # documented range 1..24
        ("LoginSessionDuration", -1, 6),
        ("MaxIdleDaysForUsers", 0, 90),  # documented choices 90, 180, 365, 730
        ("MaxLoginAttemps", -1, 5),  # 0..32, 0 = off
    ],
)
def test_an_integer_the_api_does_not_document_is_never_taken_for_stricter(
    name: str, live: int, baseline: int
) -> None:
    # as for an enum value the API adds later: unknown, so never compliant by direction
    assert not F.field(name).satisfies(live, baseline)


def test_a_rule_of_any_value_accepts_any_value() -> None:
    f = F.field("MFAOperationForLogin")
    assert f.rule("independent") == "any value"
    # a value the API adds later: the rule says it is compliant, so it must not be reverted
    # (to the weakest value of the order)
    assert f.satisfies("phishing-resistant", "independent")


def test_a_worker_batch_run_id_is_bounded() -> None:
    ids = [str(3000000000000000 + i) for i in range(1000)]
    payload = {
        "type": "secpref-guard.batch",
        "version": 1,
        "run_id": "R" * 100_000,  # bound into every log line of the run
        "batch": 1,
        "batches": 1,
        "accounts": ids,
    }
    with pytest.raises(BatchError, match="run_id"):
        parse_batch(json.dumps(payload).encode())


class _LyingListing:
    """250 members; every page says TotalCount 100."""

    calls = 0

    def call(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        self.calls += 1
        number, size = int(params["PageNumber"]), int(params["PageSize"])
        ids = [str(1000000000000000 + i) for i in range(250)][(number - 1) * size : number * size]
        accounts = [{"AccountId": a, "Status": "CreateSuccess"} for a in ids]
        return {"TotalCount": 100, "Accounts": {"Account": accounts}}


def test_a_full_last_page_is_not_taken_for_the_end_of_the_directory() -> None:
    client = ResourceManagerClient.__new__(ResourceManagerClient)
    client.rpc = _LyingListing()  # type: ignore[assignment]
    try:
        members = client.list_accounts()
    except Exception:  # an error naming the inconsistency is fine too
        return
    assert len(members) == 250


def test_events_holds_a_worker_batch_that_the_worker_reads() -> None:
    readable = []
    for path in sorted((ROOT / "events").glob("*.json")):
        try:
            parse_batch(path.read_bytes())
        except BatchError:
            continue
        readable.append(path.name)
    assert readable, "no file in events/ is a worker batch (README: run any handler with any)"
