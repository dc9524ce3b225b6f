"""Concurrency: runs that overlap on one account converge to the baseline without oscillating,
and the guard's own writes never set it off again.

The emulator is served over loopback HTTP (BackgroundServer) so that concurrent invocations
really overlap on the wire, each with its own SDK client, as concurrent Function Compute
instances would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from secpref_guard import fields as F
from secpref_guard import handlers, logs
from secpref_guard.emulator import BackgroundServer, Emulator, ImsBackend
from secpref_guard.emulator.models import DEFAULT_ACCOUNT, Call
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler

ROOT = Path(__file__).resolve().parents[1]
SET = "SetSecurityPreference"
GUARD_ROLE = "secpref-guard-role"
GUARD_KEY = ("STS.guard-session", "guard-session-secret", "guard-session-token")
THREADS = 8
Handler = Callable[[bytes, Any], str]

SCHEDULED: Handler = load_handler("scheduled.handler", ROOT / "functions")
AUDIT: Handler = load_handler("audit_event.handler", ROOT / "functions")
TIMER_EVENT = (ROOT / "events" / "timer.json").read_bytes()
BASELINE = {
    "AllowUserToManageAccessKeys": False,
    "EnableSaveMFATicket": False,
    "MFAOperationForLogin": "mandatory",
    "MaxIdleDaysForUsers": 90,
}
# fields nobody's baseline owns, set by a person: every run must leave them as they are
KEPT = {"LoginNetworkMasks": frozenset({"10.0.0.0/8"}), "LoginSessionDuration": 12}
# what people keep doing to the account
DRIFTS: list[dict[str, Any]] = [
    {"AllowUserToManageAccessKeys": True},
    {"EnableSaveMFATicket": True, "MFAOperationForLogin": "independent"},
    {"MaxIdleDaysForUsers": 730},
    {"MFAOperationForLogin": "adaptive", "AllowUserToManageAccessKeys": True},
]


def context(request_id: str) -> LocalContext:
    return LocalContext(
        request_id=request_id,
        function=LocalFunction("secpref-guard", "x.handler"),
        credentials=LocalCredentials(*GUARD_KEY),
        account_id=DEFAULT_ACCOUNT,
    )


def person_event(number: int) -> bytes:
    """A SetSecurityPreference event by a RAM user (the content does not matter: a hint)."""
    document = json.loads((ROOT / "events" / "set-by-ram-user.json").read_bytes())
    document["id"] = f"burst-{number}"
    document["data"]["eventId"] = f"burst-record-{number}"
    return json.dumps(document).encode()


def guard_event(call: Call, sent: dict[str, Any], number: int) -> bytes:
    """The ActionTrail event a Set of the guard produces, as EventBridge would deliver it."""
    document = json.loads((ROOT / "events" / "set-by-guard.json").read_bytes())
    document["id"] = f"self-{number}"
    document["data"]["eventId"] = f"self-record-{number}"
    document["data"]["requestParameters"] = {
        name: F.field(name).render_param(value) for name, value in sent.items()
    }
    document["data"]["userIdentity"]["arn"] = f"acs:ram::{call.account}:{call.principal}"
    document["data"]["userIdentity"]["accessKeyId"] = GUARD_KEY[0]  # the key the guard signs with
    return json.dumps(document).encode()


@pytest.fixture(params=["reset", "keep"])
def server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BackgroundServer]:
    """The emulator on a loopback port, a drifted account, and the guard configured for it."""
    emulator = Emulator(ims=ImsBackend(omitted=request.param), latency_seconds=0.002)
    emulator.add_key(
        GUARD_KEY[0],
        GUARD_KEY[1],
        DEFAULT_ACCOUNT,
        GUARD_KEY[2],
        principal=f"assumed-role/{GUARD_ROLE}/fc-session",
    )
    emulator.ims.put(DEFAULT_ACCOUNT, **KEPT, **DRIFTS[0])
    with BackgroundServer(emulator) as background:
        monkeypatch.setenv("GUARD_IMS_ENDPOINT", background.endpoint)
        monkeypatch.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
        monkeypatch.setenv("BASELINE_ENABLE_SAVE_MFA_TICKET", "false")
        monkeypatch.setenv("BASELINE_MFA_OPERATION_FOR_LOGIN", "mandatory")
        monkeypatch.setenv("BASELINE_MAX_IDLE_DAYS_FOR_USERS", "90")
        monkeypatch.setenv("GUARD_SELF_ROLE", GUARD_ROLE)
        handlers.reset_instance()
        yield background
        handlers.reset_instance()


def ims(server: BackgroundServer) -> ImsBackend:
    return server.emulator.ims


def assert_converged(backend: ImsBackend) -> None:
    state = backend.state(DEFAULT_ACCOUNT)
    assert {name: state[name] for name in BASELINE} == BASELINE
    assert {name: state[name] for name in KEPT} == KEPT


def assert_no_set_fights_the_baseline(backend: ImsBackend) -> list[dict[str, Any]]:
    """Every Set writes the baseline for the baseline's fields and the kept values for the
    others: the writes are all the same, so there is nothing to oscillate between."""
    written = [
        {name: F.field(name).parse_param(text) for name, text in call.params.items()}
        for call in backend.calls_of(SET)
    ]
    for values in written:
        assert {name: values[name] for name in BASELINE} == BASELINE
        assert {name: values[name] for name in KEPT} == KEPT
    assert all(values == written[0] for values in written)
    return written


def invoke(handler: Handler, payload: bytes, request_id: str) -> dict[str, Any]:
    return json.loads(handler(payload, context(request_id)))


def invoke_async(
    handler: Handler, payload: bytes, request_id: str, failures: list[str]
) -> dict[str, Any] | None:
    """An asynchronous invocation: Function Compute retries a failed one, 3 tries in all.
    The only failure allowed is a verification that raced with a person's change."""
    for attempt in range(3):
        try:
            return invoke(handler, payload, f"{request_id}-{attempt}")
        except handlers.HandlerError as exc:
            failures.append(str(exc))
    return None  # failed loudly three times; the next timer run catches up


def test_a_timer_run_and_an_event_run_at_the_same_time_converge(server: BackgroundServer) -> None:
    backend = ims(server)
    start = threading.Barrier(2)

    def at_once(handler: Handler, payload: bytes, name: str) -> dict[str, Any]:
        start.wait()
        return invoke(handler, payload, name)

    for round_ in range(10):
        backend.put(DEFAULT_ACCOUNT, **DRIFTS[round_ % len(DRIFTS)])
        sets_before = len(backend.calls_of(SET))
        with ThreadPoolExecutor(2) as pool:
            timer = pool.submit(at_once, SCHEDULED, TIMER_EVENT, f"timer-{round_}")
            audit = pool.submit(at_once, AUDIT, person_event(round_), f"event-{round_}")
            statuses = {timer.result()["status"], audit.result()["status"]}

        assert "reverted" in statuses
        assert statuses <= {"reverted", "compliant"}
        assert len(backend.calls_of(SET)) - sets_before <= 2
        assert_converged(backend)
    assert_no_set_fights_the_baseline(backend)


def test_a_burst_of_fifty_events_with_drift_in_between_converges_without_oscillation(
    server: BackgroundServer,
) -> None:
    backend = ims(server)
    drifted = [0]  # the fixture's initial drift
    failures: list[str] = []  # tries whose verification raced with a change: retried
    lock = threading.Lock()

    def one_event(number: int) -> dict[str, Any] | None:
        if number % 5 == 2:  # someone changes the account again while the burst is processed
            with lock:
                drifted.append(number)
            backend.put(DEFAULT_ACCOUNT, **DRIFTS[number % len(DRIFTS)])
        return invoke_async(AUDIT, person_event(number), f"burst-{number}", failures)

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(one_event, range(50)))

    # a verification that raced with a person's change is the only failure allowed
    assert all("still differs in" in failure for failure in failures), failures
    done = [r for r in results if r is not None]
    assert {r["status"] for r in done} <= {"reverted", "compliant"}
    assert_converged(backend)
    written = assert_no_set_fights_the_baseline(backend)
    # a Set needs a read that saw drift, and each thread reads at most once between a change
    # of the account and the revert that ends it
    assert 1 <= len(written) <= len(drifted) * THREADS
    # every write is accounted for: a reverted result, or a try that failed its verification
    assert len(written) == sum(r["status"] == "reverted" for r in done) + len(failures)

    # and it stays put: the next run reads once and writes nothing
    calls_before = len(backend.calls)
    assert invoke(SCHEDULED, TIMER_EVENT, "after")["status"] == "compliant"
    assert [c.action for c in backend.calls[calls_before:]] == ["GetSecurityPreference"]


@pytest.mark.parametrize("self_role", [GUARD_ROLE, None], ids=["GUARD_SELF_ROLE", "unset"])
def test_the_guards_own_writes_never_retrigger_it(
    server: BackgroundServer, monkeypatch: pytest.MonkeyPatch, self_role: str | None
) -> None:
    """Every Set becomes an ActionTrail event by whoever signed it, fed back to the audit
    handler as EventBridge would: the guard's own events are skipped without a call, and
    without GUARD_SELF_ROLE they cost one read and no write."""
    if self_role is None:
        monkeypatch.delenv("GUARD_SELF_ROLE")
    backend = ims(server)
    feedback: list[bytes] = []

    def to_actiontrail(account: str, sent: dict[str, Any]) -> None:
        call = next(c for c in reversed(backend.calls) if c.action == SET)
        feedback.append(guard_event(call, sent, len(feedback)))

    backend.after_set.append(to_actiontrail)
    first = invoke(AUDIT, person_event(0), "person")
    assert first["status"] == "reverted"
    assert len(feedback) == 1

    rounds = 0
    while feedback and rounds < 10:  # a loop would never drain
        payload = feedback.pop(0)
        calls_before = len(backend.calls)
        result = invoke(AUDIT, payload, f"self-{rounds}")
        actions = [c.action for c in backend.calls[calls_before:]]
        if self_role:
            assert result["status"] == "skipped"
            assert f"the guard's own role {GUARD_ROLE}" in result["reason"]
            assert actions == []
        else:
            assert result["status"] == "compliant"
            assert actions == ["GetSecurityPreference"]
        rounds += 1

    assert feedback == []
    assert rounds == 1
    assert len(backend.calls_of(SET)) == 1
    assert_converged(backend)


def test_concurrent_cold_starts_configure_logging_once(
    server: BackgroundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instances that take several requests at once (instance concurrency) must not attach
    the log handler twice: every line would then be written twice for the instance's life."""
    configured: list[str] = []
    configure = handlers.configure

    def slow_configure(level: str) -> None:
        configured.append(level)
        time.sleep(0.05)  # widen the window two cold invocations could share
        configure(level)

    monkeypatch.setattr(handlers, "configure", slow_configure)
    monkeypatch.setattr(handlers, "_logging_ready", False)
    start = threading.Barrier(THREADS)

    def cold(number: int) -> str:
        start.wait()
        return invoke(SCHEDULED, TIMER_EVENT, f"cold-{number}")["status"]

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = list(pool.map(cold, range(THREADS)))

    assert set(statuses) <= {"reverted", "compliant"}
    assert configured == ["INFO"]
    guard_handlers = [h for h in logs.get_logger().handlers if getattr(h, "_secpref_guard", 0)]
    assert len(guard_handlers) == 1
    assert_converged(ims(server))
