"""Enforcement across an organisation: batches within the async payload limit, the worker's
bounded concurrency, failed accounts that are reported and stop nothing, and the run summary.
The RPC APIs go through aliyun-python-sdk-core, the invocations through ordinary requests, all
answered by one multi-account emulator whose Function Compute runs the worker."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from conftest import ENDPOINT
from org_support import NO_SLEEP, ONE_TRY, WORKER, Clock, serve
from secpref_guard import logs
from secpref_guard.batch import (
    ASYNC_PAYLOAD_LIMIT,
    DEFAULT_MAX_PAYLOAD,
    BatchError,
    make_batches,
    parse_batch,
)
from secpref_guard.client import RetryPolicy
from secpref_guard.config import GuardConfig, load_config
from secpref_guard.credentials import Credentials
from secpref_guard.directory import Directory, ResourceManagerClient
from secpref_guard.emulator.resourcemanager import MEMBER_ROLE, Organisation, organisation
from secpref_guard.member_access import MemberCredentials, role_arn
from secpref_guard.modes import batch_candidates, every_target
from secpref_guard.report import RunReport, Trigger
from secpref_guard.run import FanoutOptions, Services, enforce_account, run
from secpref_guard.scope import Candidate, Decision, decide


def make_config(**extra: str) -> GuardConfig:
    return load_config(
        {
            "GUARD_IMS_ENDPOINT": ENDPOINT,
            "GUARD_STS_ENDPOINT": ENDPOINT,
            "GUARD_RESOURCEMANAGER_ENDPOINT": ENDPOINT,
            "GUARD_TARGETS": "resource-directory",
            "BASELINE_LOGIN_SESSION_DURATION": "6",
            "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
            **extra,
        }
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def org(clock: Clock) -> Iterator[Organisation]:
    with serve(organisation(6, clock=clock.time)) as o:
        yield o


def guard(o: Organisation) -> Credentials:
    return Credentials(*o.guard_key)


def cache(o: Organisation, clock: Clock, **kwargs: Any) -> MemberCredentials:
    return MemberCredentials(
        ENDPOINT,
        guard(o),
        MEMBER_ROLE,
        own_account=o.management_account,
        clock=clock.now,
        retry=NO_SLEEP,
        **kwargs,
    )


def services(
    o: Organisation,
    config: GuardConfig,
    clock: Clock | None = None,
    *,
    retry: RetryPolicy = NO_SLEEP,
    concurrency: int = 10,
    access: MemberCredentials | None = None,
) -> Services:
    """What a handler would hand the run: the organisation's guard key, its directory."""
    base = guard(o)
    if access is None and clock is not None:
        access = cache(o, clock)
    directory = None
    if config.settings.targets == "resource-directory":
        directory = Directory(lambda: ResourceManagerClient(ENDPOINT, base, retry=retry))
    return Services(
        config=config,
        base=base,
        own_account=o.management_account,
        member_access=(lambda: access) if access is not None else None,
        directory=directory,
        retry=retry,
        concurrency=concurrency,
    )


def timer(
    o: Organisation,
    config: GuardConfig,
    clock: Clock | None = None,
    *,
    fanout: FanoutOptions | None = None,
    **kwargs: Any,
) -> RunReport:
    """The timer's mode: every target, through the one run."""
    svc = services(o, config, clock, **kwargs)
    targets, candidates = every_target(config.settings, svc.directory)
    return run(candidates, svc, trigger=Trigger("schedule"), targets=targets, fanout=fanout)


def worker_run(payload: bytes, o: Organisation, config: GuardConfig, **kwargs: Any) -> RunReport:
    """The worker's mode: the batch's ids, through the one run."""
    batch = parse_batch(payload)
    trigger, candidates = batch_candidates(batch)
    return run(
        candidates,
        services(o, config, **kwargs),
        trigger=trigger,
        targets=f"batch {batch.index}/{batch.total}",
        execution="worker",
    )


def drift(o: Organisation, *accounts: str) -> None:
    for account in accounts:
        o.emulator.ims.put(account, LoginSessionDuration=24, AllowUserToManageAccessKeys=True)


def add_worker(o: Organisation, config: GuardConfig, **options: Any) -> None:
    """The worker function, deployed in the management account with the guard's role."""

    def handler(event: bytes, context: Any) -> str:
        return json.dumps(worker_run(event, o, config, **options).as_dict())

    o.fc.add_function(o.management_account, WORKER, handler, credentials=guard(o))


# --- batches --------------------------------------------------------------------------------


def test_batches_hold_at_most_the_batch_size_in_order() -> None:
    accounts = [str(10**15 + i) for i in range(120)]
    batches = make_batches(accounts, run_id="a1", max_accounts=50)
    assert [len(b.accounts) for b in batches] == [50, 50, 20]
    assert [a for b in batches for a in b.accounts] == accounts
    assert [(b.index, b.total) for b in batches] == [(1, 3), (2, 3), (3, 3)]


def test_batches_stay_within_the_async_payload_limit() -> None:
    accounts = [str(10**19 + i) for i in range(12_000)]  # 20-digit ids, the longest there are

    batches = make_batches(accounts, run_id="f" * 32, max_accounts=100_000)

    assert DEFAULT_MAX_PAYLOAD < ASYNC_PAYLOAD_LIMIT
    assert len(batches) > 1
    assert all(len(b.payload()) <= DEFAULT_MAX_PAYLOAD for b in batches)
    assert max(len(b.payload()) for b in batches) > DEFAULT_MAX_PAYLOAD - 30  # filled up
    assert [a for b in batches for a in b.accounts] == accounts
    tiny = make_batches(accounts[:50], run_id="a", max_bytes=200)
    assert all(len(b.payload()) <= 200 for b in tiny)
    with pytest.raises(ValueError, match="alone exceeds"):
        make_batches(accounts[:1], run_id="a", max_bytes=60)


def test_a_batch_payload_round_trips_and_a_foreign_one_is_refused() -> None:
    (batch,) = make_batches(["1", "22"], run_id="b7")
    assert parse_batch(batch.payload()) == batch
    for payload, field in [
        (b"not json", "JSON"),
        (b'{"type": "other"}', "field type"),
        (b'{"type": "secpref-guard.batch", "version": 2}', "field version"),
        (
            b'{"type": "secpref-guard.batch", "version": 1, "accounts": ["1; drop"]}',
            "field accounts",
        ),
    ]:
        with pytest.raises(BatchError, match=field):
            parse_batch(payload)


# --- enforcement of many accounts -----------------------------------------------------------


def test_an_account_whose_role_cannot_be_assumed_is_reported_and_the_others_enforced(
    org: Organisation, clock: Clock
) -> None:
    config = make_config()
    broken, drifted = org.members[1], org.members[3]
    org.sts.remove_role(broken, MEMBER_ROLE)
    drift(org, drifted, org.management_account)

    summary = timer(org, config, clock)

    by_account = {o.account: o for o in summary.accounts}
    assert by_account[broken].status == "error"
    assert by_account[broken].error.code == "EntityNotExist.Role"  # type: ignore[union-attr]
    assert by_account[drifted].status == "reverted"
    assert by_account[org.management_account].status == "reverted"
    assert summary.counts == {
        "accounts": 7,
        "compliant": 4,
        "reverted": 2,
        "drift": 0,
        "contested": 0,
        "failed": 1,
        "skipped": 0,
        "dispatched": 0,
    }
    assert org.emulator.ims.state(drifted)["LoginSessionDuration"] == 6
    result = summary.as_dict()
    assert result["status"] == "error"  # a failed account is never reported compliant
    assert broken in result["reason"]
    assert result["failed"] == [
        {
            "account": broken,
            "reason": by_account[broken].reason,
            "code": "EntityNotExist.Role",
            "stage": "assume-role",
        }
    ]
    assert {d["account"] for d in result["drift"]} == {drifted, org.management_account}
    # The member's write was made by the guard's session, recognisable in its audit trail.
    writes = [c for c in org.emulator.ims.calls_of("SetSecurityPreference") if c.account == drifted]
    assert writes[0].principal == f"assumed-role/{MEMBER_ROLE}/secpref-guard"


def test_a_clean_run_is_compliant_and_ok(org: Organisation, clock: Clock) -> None:
    summary = timer(org, make_config(), clock)
    assert (summary.status, summary.ok) == ("compliant", True)
    # One ListAccounts page, a Get per account, an AssumeRole per member.
    assert summary.as_dict()["api_calls"] == 1 + 7 + 6 == len(org.emulator.ims.calls)


def test_the_worker_enforces_with_bounded_concurrency(clock: Clock) -> None:
    o = organisation(24, clock=clock.time, latency_seconds=0.02)
    in_flight, peak = 0, 0
    lock = threading.Lock()
    handle = o.emulator.handle

    def counting(*args: Any) -> Any:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return handle(*args)
        finally:
            with lock:
                in_flight -= 1

    o.emulator.handle = counting  # type: ignore[method-assign]
    with serve(o):
        started = time.perf_counter()
        svc = services(o, make_config(), clock, concurrency=4)
        report = run(
            [Candidate(a) for a in o.members], svc, trigger=Trigger("worker"), targets="batch"
        )
        elapsed = time.perf_counter() - started

    outcomes = report.accounts
    assert [x.account for x in outcomes] == o.members
    assert {x.status for x in outcomes} == {"compliant"}
    assert peak == 4
    calls = len(o.emulator.ims.calls)
    assert calls == 1 + 48  # one listing for scope, AssumeRole and GetSecurityPreference each
    assert elapsed >= 48 * 0.02 / 4


def test_an_expired_credential_fails_its_account_once_then_is_assumed_afresh(
    org: Organisation, clock: Clock
) -> None:
    """The guard's clock runs behind the service's: its cached key expires while it still
    trusts it. The account is reported, the cache forgets the key, the next run recovers."""
    skewed = Clock()
    access = cache(org, skewed, duration_seconds=900)
    member = Decision(org.members[0], True)
    config = make_config()
    assert enforce_account(member, services(org, config, access=access)).status == "compliant"

    clock.value += 900  # the service's clock: the key has expired
    failed = enforce_account(member, services(org, config, access=access, retry=ONE_TRY))
    recovered = enforce_account(member, services(org, config, access=access))

    assert failed.status == "error"
    assert failed.error.code == "InvalidSecurityToken.Expired"  # type: ignore[union-attr]
    assert recovered.status == "compliant"
    assert recovered.api_calls == 2  # a fresh AssumeRole, then the Get
    assert len(org.emulator.ims.calls_of("AssumeRole")) == 2


def test_an_audit_event_of_a_member_account_is_enforced_in_that_account(
    org: Organisation, clock: Clock
) -> None:
    config = make_config()
    member = org.members[2]
    drift(org, member)
    svc = services(org, config, clock)
    (decision,) = decide(
        [Candidate(member)],
        config.settings,
        own_account=org.management_account,
        directory=svc.directory,
    )
    assert decision.in_scope

    outcome = enforce_account(decision, svc)

    assert outcome.status == "reverted"
    assert outcome.role_arn == role_arn(member, MEMBER_ROLE)
    assert org.emulator.ims.state(member)["AllowUserToManageAccessKeys"] is False
    assert org.emulator.ims.state(org.members[0])["LoginSessionDuration"] == 6  # untouched


# --- fan-out through Function Compute -------------------------------------------------------


def test_below_the_threshold_the_scheduled_run_enforces_in_process(
    org: Organisation, clock: Clock
) -> None:
    options = FanoutOptions(worker_function=WORKER, fc_endpoint=ENDPOINT, in_process_threshold=7)
    summary = timer(org, make_config(), clock, fanout=options)
    assert summary.execution == "in-process"
    assert org.emulator.ims.calls_of("InvokeFunction") == []


def test_past_the_threshold_batches_go_to_the_worker_which_enforces_them(clock: Clock) -> None:
    with serve(organisation(23, clock=clock.time)) as o:
        config = make_config(GUARD_EXCLUDE_ACCOUNTS="1000000000000023")
        add_worker(o, config, concurrency=3)
        drift(o, o.members[0], o.members[10], o.members[22])
        o.sts.remove_role(o.members[5], MEMBER_ROLE)
        options = FanoutOptions(
            worker_function=WORKER, fc_endpoint=ENDPOINT, in_process_threshold=10, batch_size=5
        )

        summary = timer(o, config, fanout=options)
        invocations = o.fc.drain()

    assert summary.execution == "fan-out"
    assert summary.counts["dispatched"] == 23  # the management account and 22 members
    assert [s.account for s in summary.skipped] == ["1000000000000023"]
    assert summary.status == "skipped"  # nothing enforced here: the worker does it
    assert len(invocations) == 5
    assert all(
        i.status == "succeeded" and len(i.payload) <= DEFAULT_MAX_PAYLOAD for i in invocations
    )
    results = [json.loads(i.result) for i in invocations]
    outcomes = {a["account"]: a["status"] for r in results for a in r["accounts"]}
    assert len(outcomes) == 23
    assert outcomes[o.members[0]] == outcomes[o.members[10]] == "reverted"
    assert outcomes[o.members[5]] == "error"
    assert o.members[22] not in outcomes
    failed = [f for r in results for f in r["failed"]]
    assert [(f["account"], f["code"]) for f in failed] == [(o.members[5], "EntityNotExist.Role")]
    assert o.emulator.ims.state(o.members[22])["LoginSessionDuration"] == 24  # excluded


def test_a_batch_that_cannot_be_dispatched_is_reported_and_the_others_go_out(
    org: Organisation, clock: Clock
) -> None:
    org.fc.add_function(org.management_account, WORKER)
    org.emulator.ims.inject_fault("AccessDenied", 403, action="InvokeFunction", times=1)
    options = FanoutOptions(
        worker_function=WORKER, fc_endpoint=ENDPOINT, in_process_threshold=1, batch_size=3
    )

    summary = timer(org, make_config(), fanout=options, retry=ONE_TRY)

    failed = [d for d in summary.dispatches if d.error is not None]
    assert len(summary.dispatches) == 3
    assert len(failed) == 1
    assert summary.counts["failed"] == 3
    assert summary.counts["dispatched"] == 4
    assert {f.stage for f in summary.failures} == {"dispatch"}
    assert {f.account for f in summary.failures} == set(failed[0].accounts)
    assert summary.status == "error"
    assert len(org.fc.drain()) == 2


def test_the_worker_does_not_trust_its_payload(org: Organisation, clock: Clock) -> None:
    config = make_config(GUARD_EXCLUDE_ACCOUNTS=org.members[0])
    (batch,) = make_batches([org.members[0], org.members[1]], run_id="c0")
    summary = worker_run(batch.payload(), org, config, access=cache(org, clock))
    assert [o.account for o in summary.accounts if o.status != "skipped"] == [org.members[1]]
    assert summary.skipped[0].account == org.members[0]
    assert summary.skipped[0].rule == "GUARD_EXCLUDE_ACCOUNTS"
    assert summary.targets == "batch 1/1"
    with pytest.raises(BatchError):
        worker_run(b"{}", org, config, access=cache(org, clock))


def test_per_account_results_are_logged_and_no_secret_is(org: Organisation, clock: Clock) -> None:
    stream = io.StringIO()
    logger = logs.get_logger()
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logs.configure("INFO", stream)
    try:
        org.sts.remove_role(org.members[0], MEMBER_ROLE)
        access = cache(org, clock)
        summary = timer(org, make_config(), access=access)
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    per_account = {line["account"] for line in lines if "account" in line}
    assert per_account == {o.account for o in summary.accounts}
    failure = next(line for line in lines if line.get("status") == "error")
    assert failure["account"] == org.members[0]
    assert failure["code"] == "EntityNotExist.Role"
    assert failure["message"] == summary.failures[0].reason
    assert lines[-1]["message"] == "run summary"
    assert lines[-1]["counts"]["failed"] == 1
    text = stream.getvalue()
    for member in org.members[1:]:
        temporary = access.cached(member)
        assert temporary is not None
        assert temporary.credentials.access_key_secret not in text
        assert temporary.credentials.security_token not in text  # type: ignore[operator]
    assert org.guard_key[1] not in text


def test_member_credentials_from_settings_use_the_configured_role_and_endpoint(
    org: Organisation,
) -> None:
    config = make_config(GUARD_MEMBER_ROLE="GuardAccess")
    org.sts.add_role(org.members[0], "GuardAccess", trusted_accounts={org.management_account})
    access = MemberCredentials.from_settings(
        config.settings, guard(org), retry=NO_SLEEP, refresh_margin=timedelta(minutes=1)
    )
    assert access.for_account(org.members[0]).access_key_id.startswith("STS.")
    assert org.emulator.ims.calls_of("AssumeRole")[-1].params["RoleArn"] == role_arn(
        org.members[0], "GuardAccess"
    )
