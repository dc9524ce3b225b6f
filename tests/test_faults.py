"""The fault matrix: every fault a user will meet, on every call of a run, through both
Function Compute handlers (timer and audit event) against the emulator in both Set semantics.

A transient fault is retried and the run succeeds; a persistent one fails the invocation after
the bounded number of attempts with the API's code, message and request id; permission and
parameter errors are never retried; a Set that fails half way or a verification read that
disagrees is an error, never a success; and the time an invocation spends on the API stays
well inside the function timeout, whatever the endpoint does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from aliyunsdkcore.retry.retry_policy import NO_RETRY_POLICY

from secpref_guard import handlers, instance
from secpref_guard import run as run_module
from secpref_guard.client import RetryPolicy
from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator
from secpref_guard.emulator.exceptions import EmulatedError
from secpref_guard.emulator.models import ImsBackend
from secpref_guard.ims import ImsClient
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler

ROOT = Path(__file__).resolve().parents[1]
GET, SET = "GetSecurityPreference", "SetSecurityPreference"
POLICY = RetryPolicy()  # the production numbers; tests swap only the clock and the sleep
Handler = Callable[[bytes, Any], str]

BASELINE = {
    "AllowUserToManageAccessKeys": False,
    "EnableSaveMFATicket": False,
    "MFAOperationForLogin": "mandatory",
}
# set by a person, owned by nobody's baseline: must survive every run
KEPT = {"LoginNetworkMasks": frozenset({"10.0.0.0/8"}), "LoginSessionDuration": 12}


# --- the handlers as Function Compute loads them -------------------------------------------


def _template_handlers() -> dict[str, str]:
    template = yaml.safe_load((ROOT / "template.yml").read_text())
    return {
        name: resource["props"]["handler"]
        for name, resource in template["resources"].items()
        if resource["component"] == "fc3"
    }


PATHS = {
    "timer": (_template_handlers()["guard-scheduled"], "timer.json"),
    "event": (_template_handlers()["guard-audit-event"], "set-by-ram-user.json"),
}


def invoke(path: str) -> dict[str, Any]:
    handler_name, event_file = PATHS[path]
    handler: Handler = load_handler(handler_name, ROOT / "functions")
    context = LocalContext(
        request_id=f"req-{path}",
        function=LocalFunction("secpref-guard", handler_name, timeout=60),
        credentials=LocalCredentials("test-key-id", "test-key-secret"),
        account_id=DEFAULT_ACCOUNT,
    )
    return json.loads(handler((ROOT / "events" / event_file).read_bytes(), context))


class FakeClock:
    """Time as the retry loop and the emulator's slow faults see it: nothing really waits."""

    def __init__(self) -> None:
        self.seconds = 1_000.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.seconds

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.seconds += seconds

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


@dataclass
class Guard:
    emulator: Emulator
    clock: FakeClock
    clients: list[ImsClient]
    replies: list[dict[str, Any]]

    @property
    def ims(self) -> ImsBackend:
        return self.emulator.ims

    def attempts(self, action: str) -> int:
        """Every try of ``action``: those the service received, and those lost on the wire
        before it (refused connections)."""
        never_arrived = sum(
            f.fired
            for f in self.ims.faults
            if f.action in (None, action) and f.kind in ("connection-error", "connect-timeout")
        )
        return len(self.ims.calls_of(action)) + never_arrived

    def sets(self) -> list[dict[str, str]]:
        return [c.params for c in self.ims.calls_of(SET)]

    def error_replies(self) -> list[dict[str, Any]]:
        return [r for r in self.replies if "Code" in r]


@pytest.fixture
def guard(emulator: Emulator, guard_env: pytest.MonkeyPatch) -> Iterator[Guard]:
    """A drifted account, the baseline, and handlers whose retries run on a fake clock."""
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    guard_env.setenv("BASELINE_ENABLE_SAVE_MFA_TICKET", "false")
    guard_env.setenv("BASELINE_MFA_OPERATION_FOR_LOGIN", "mandatory")
    guard_env.setenv("GUARD_SELF_ROLE", "secpref-guard-role")
    emulator.ims.put(
        DEFAULT_ACCOUNT,
        AllowUserToManageAccessKeys=True,
        EnableSaveMFATicket=True,
        **KEPT,
    )
    clock = FakeClock()
    emulator.ims.sleep = clock.advance
    clients: list[ImsClient] = []

    def client_factory(endpoint: str, credentials: Any, **kwargs: Any) -> ImsClient:
        kwargs["retry"] = replace(POLICY, clock=clock.now, sleep=clock.sleep)
        client = ImsClient(endpoint, credentials, **kwargs)
        clients.append(client)
        return client

    replies: list[dict[str, Any]] = []
    handle = emulator.handle

    def recording_handle(*args: Any) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = handle(*args)
        replies.append(json.loads(body))
        return status, headers, body

    guard_env.setattr(emulator, "handle", recording_handle)
    guard_env.setattr(run_module, "ImsClient", client_factory)
    handlers.reset_instance()
    yield Guard(emulator, clock, clients, replies)
    handlers.reset_instance()


def assert_on_baseline(guard: Guard) -> None:
    state = guard.ims.state(DEFAULT_ACCOUNT)
    assert {name: state[name] for name in BASELINE} == BASELINE
    assert {name: state[name] for name in KEPT} == KEPT


def assert_exponential_with_jitter(waits: list[float]) -> None:
    """tenacity's wait_exponential_jitter: initial * 2**n plus up to `initial` of jitter,
    capped at max_wait."""
    for n, wait in enumerate(waits):
        low = min(POLICY.initial_wait * 2**n, POLICY.max_wait)
        assert low <= wait <= min(low + POLICY.initial_wait, POLICY.max_wait), (n, waits)


# --- the faults -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str
    code: str  # what the guard reports
    inject: Callable[[ImsBackend, str, int], object]
    message: str = ""  # part of the message the guard must pass on
    status: int | None = None  # the HTTP status of an API error

    @property
    def on_the_wire(self) -> bool:
        return self.code.startswith("SDK.")


def _api_error(code: str, status: int, message: str) -> Fault:
    return Fault(
        f"{code}-{status}",
        code,
        lambda ims, action, times: ims.inject_fault(
            code, status, action=action, times=times, message=message
        ),
        message,
        status,
    )


def _transport(kind: str, message: str) -> Fault:
    return Fault(
        kind,
        "SDK.HttpError",
        lambda ims, action, times: ims.inject_transport_fault(
            kind,  # type: ignore[arg-type]
            action=action,
            times=times,
        ),
        message,
    )


TRANSIENT = [
    _api_error("Throttling.User", 400, "Request was denied due to user flow control."),
    _api_error("Throttling", 503, "Request was denied due to request throttling."),
    _api_error("Throttling.Api", 429, "Request was denied due to api flow control."),
    _api_error("ServiceUnavailable", 503, "The request has failed due to a temporary failure."),
    _api_error("InternalError", 500, "The request processing has failed due to some unknown"),
    _transport("connection-error", "Connection refused"),
    _transport("read-timeout", "Read timed out."),
]
NOT_RETRIED = [
    _api_error("NoPermission", 403, "You are not authorized to do this action."),
    _api_error("Forbidden.RAM", 403, "User not authorized to operate on the specified resource."),
    _api_error("InvalidParameter.LoginSessionDuration", 400, "The parameter is invalid."),
]
# Which call of a run fails: the first read, the write, or the verification read after it.
CALLS = ["read", "write", "verification"]


def arm(guard: Guard, fault: Fault, call: str, times: int) -> None:
    if call == "read":
        fault.inject(guard.ims, GET, times)
    elif call == "write":
        fault.inject(guard.ims, SET, times)
    else:  # the next Get after the write

        def after_set(account: str, sent: dict[str, Any]) -> None:
            if not armed:
                armed.append(True)
                fault.inject(guard.ims, GET, times)

        armed: list[bool] = []
        guard.ims.after_set.append(after_set)


def normal_attempts(action: str) -> int:
    """Tries of ``action`` in a reverting run without faults: read, write, verification."""
    return 2 if action == GET else 1


def failing_action(call: str) -> str:
    return SET if call == "write" else GET


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("fault", TRANSIENT, ids=lambda f: f.name)
def test_a_transient_fault_is_retried_once_and_the_run_succeeds(
    guard: Guard, fault: Fault, call: str, path: str
) -> None:
    arm(guard, fault, call, times=1)

    result = invoke(path)

    assert result["status"] == "reverted"
    assert_on_baseline(guard)
    failing = failing_action(call)
    assert guard.attempts(failing) == normal_attempts(failing) + 1
    other = GET if failing == SET else SET
    # a Set tried again after its wait is planned on a fresh read: one more Get
    replanned = 1 if failing == SET else 0
    assert guard.attempts(other) == normal_attempts(other) + replanned
    assert len(guard.clock.waits) == 1
    assert_exponential_with_jitter(guard.clock.waits)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("fault", TRANSIENT, ids=lambda f: f.name)
def test_a_persistent_fault_fails_the_invocation_after_the_bounded_attempts(
    guard: Guard, fault: Fault, call: str, path: str
) -> None:
    arm(guard, fault, call, times=1_000)
    before = dict(guard.ims.state(DEFAULT_ACCOUNT))

    with pytest.raises(handlers.HandlerError) as raised:
        invoke(path)

    message = str(raised.value)
    action = failing_action(call)
    tries = guard.attempts(action) - (1 if call == "verification" else 0)
    if fault.name == "read-timeout":
        # each try waits out its read timeout: the time bound ends the tries before the count
        assert 2 <= tries <= POLICY.attempts
    else:
        assert tries == POLICY.attempts
    assert message.startswith(f"{action} failed: {fault.code}: ")
    assert fault.message in message
    if fault.on_the_wire:  # it never reached the service: no status, no request id
        assert message.endswith(f"(after {tries} attempts)")
    else:
        last = guard.error_replies()[-1]
        assert message.endswith(
            f"(HTTP {fault.status}, request id {last['RequestId']}, after {tries} attempts)"
        )
    assert len(guard.clock.waits) == tries - 1
    assert_exponential_with_jitter(guard.clock.waits)
    assert sum(guard.clock.waits) < POLICY.total_seconds

    state = guard.ims.state(DEFAULT_ACCOUNT)
    if call == "read":  # nothing was written
        assert guard.sets() == []
        assert state == before
    elif call == "write" and fault.name != "read-timeout":  # every write was refused
        assert state == before
    else:  # the write went through but could not be confirmed: still an error, not a success
        assert_on_baseline(guard)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("fault", NOT_RETRIED, ids=lambda f: f.name)
def test_permission_and_parameter_errors_are_not_retried(
    guard: Guard, fault: Fault, call: str, path: str
) -> None:
    arm(guard, fault, call, times=1_000)

    with pytest.raises(handlers.HandlerError) as raised:
        invoke(path)

    action = failing_action(call)
    reply = guard.error_replies()[-1]
    status = {"NoPermission": 403, "Forbidden.RAM": 403}.get(fault.code, 400)
    assert str(raised.value) == (
        f"{action} failed: {fault.code}: {fault.message} "
        f"(HTTP {status}, request id {reply['RequestId']})"
    )
    assert guard.attempts(action) == 1 + (1 if call == "verification" else 0)
    assert guard.clock.waits == []
    if call == "read":
        assert guard.sets() == []


def test_the_sdks_hidden_retry_is_off_and_ours_does_not_double_up(guard: Guard) -> None:
    refused = guard.ims.inject_transport_fault("connection-error", action=GET, times=1_000)
    with pytest.raises(handlers.HandlerError, match="Connection refused"):
        invoke("timer")
    refused.times = 0
    guard.ims.inject_fault("InternalError", 500, action=GET, times=1_000)
    with pytest.raises(handlers.HandlerError, match="InternalError"):
        invoke("event")

    for client in guard.clients:
        acs = client.rpc._acs
        assert acs.is_auto_retry() is False
        assert acs._retry_policy is NO_RETRY_POLICY
    # each fault met exactly as many HTTP requests as our loop made tries, not one more
    assert refused.fired == POLICY.attempts
    assert len(guard.ims.calls_of(GET)) == POLICY.attempts
    assert len(guard.clock.waits) == 2 * (POLICY.attempts - 1)


# --- nothing lost, nothing clobbered ---------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_a_set_that_fails_half_way_is_retried_with_the_complete_state(
    guard: Guard, path: str
) -> None:
    """The service applied part of the write, then failed: the retry sends the whole desired
    state again, and the verification read confirms it."""
    half_way = _fail_half_way(guard, times=1)

    result = invoke(path)

    assert result["status"] == "reverted"
    assert half_way == [1]
    assert len(guard.sets()) == 2
    assert guard.sets()[0] == guard.sets()[1]
    assert_on_baseline(guard)


@pytest.mark.parametrize("path", PATHS)
def test_a_set_that_keeps_failing_half_way_is_an_error_never_a_success(
    guard: Guard, path: str
) -> None:
    _fail_half_way(guard, times=1_000)

    with pytest.raises(handlers.HandlerError, match=r"SetSecurityPreference failed: InternalError"):
        invoke(path)

    assert len(guard.sets()) == POLICY.attempts


def _fail_half_way(guard: Guard, times: int) -> list[int]:
    """The next ``times`` Sets apply only their first half of fields (the rest keep the drifted
    values) and then fail with a 500."""
    failed: list[int] = []
    ims = guard.ims
    drifted = dict(ims.state(DEFAULT_ACCOUNT))

    def half_way(account: str, sent: dict[str, Any]) -> None:
        if len(failed) >= times:
            return
        failed.append(1)
        with ims.lock:
            state = ims.state(account)
            for name in sorted(sent)[len(sent) // 2 :]:
                state[name] = drifted[name]
        raise EmulatedError("The request processing has failed due to some unknown error.")

    ims.after_set.append(half_way)
    return failed


@pytest.mark.parametrize("path", PATHS)
def test_a_set_the_service_silently_ignores_fails_verification(guard: Guard, path: str) -> None:
    guard.ims.ignored_sets = 1

    with pytest.raises(handlers.HandlerError) as raised:
        invoke(path)

    message = str(raised.value)
    assert "SetSecurityPreference was accepted but a fresh GetSecurityPreference" in message
    for name in ("AllowUserToManageAccessKeys", "EnableSaveMFATicket", "MFAOperationForLogin"):
        assert name in message
    assert (len(guard.ims.calls_of(GET)), len(guard.sets())) == (2, 1)


@pytest.mark.parametrize("path", PATHS)
def test_a_verification_read_that_disagrees_is_an_error(guard: Guard, path: str) -> None:
    """Someone changed a baseline field again between the guard's write and its check."""
    guard.ims.after_set.append(
        lambda account, sent: guard.ims.put(account, MFAOperationForLogin="adaptive")
    )

    with pytest.raises(handlers.HandlerError, match="still differs in MFAOperationForLogin"):
        invoke(path)


# --- time ------------------------------------------------------------------------------------


def test_retry_waits_grow_exponentially_with_jitter(guard: Guard) -> None:
    guard.ims.inject_fault("Throttling", 503, action=GET, times=1_000)
    runs: list[list[float]] = []
    for _ in range(20):
        guard.clock.waits.clear()
        with pytest.raises(handlers.HandlerError):
            invoke("timer")
        runs.append(list(guard.clock.waits))

    for waits in runs:
        assert len(waits) == POLICY.attempts - 1
        assert_exponential_with_jitter(waits)
        assert waits == sorted(waits)
        assert sum(waits) < POLICY.total_seconds
    assert len({waits[0] for waits in runs}) > 1, "no jitter"


SLOW_ENDPOINTS = {
    # every try hangs until the client's read timeout
    "hangs": lambda ims: ims.inject_transport_fault("read-timeout", times=1_000),
    # every try cannot connect until the connect timeout
    "unreachable": lambda ims: ims.inject_transport_fault("connect-timeout", times=1_000),
    # every reply takes 6 s: under the read timeout, but three calls add up
    "slow": lambda ims: ims.inject_transport_fault("slow", delay=6.0, times=1_000),
    # the first try of the read and of the write times out, the second answers at once
    "flaky": lambda ims: [
        ims.inject_transport_fault("read-timeout", action=action, times=1) for action in (GET, SET)
    ],
    # the first try of every call times out, the second answers after 4 s: each call alone
    # stays inside its own bound, three of them would not stay inside the function's
    "degraded": lambda ims: [
        ims.inject_transport_fault(kind, action=action, times=1, delay=delay)  # type: ignore[arg-type]
        for action in (GET, SET, GET)
        for kind, delay in (("read-timeout", None), ("slow", 4.0))
    ],
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("endpoint", SLOW_ENDPOINTS)
def test_an_invocation_spends_at_most_half_the_function_timeout_on_the_api(
    guard: Guard, endpoint: str, path: str
) -> None:
    SLOW_ENDPOINTS[endpoint](guard.ims)
    started = guard.clock.now()

    try:
        result: dict[str, Any] | str = invoke(path)["status"]
    except handlers.HandlerError as exc:
        result = str(exc)  # a loud failure naming the cause, in time for the logs to show it
        assert "SDK.HttpError" in result or "Guard.TimeBudgetSpent" in result

    spent = guard.clock.now() - started
    assert spent <= 60 * instance.API_TIME_SHARE, (spent, result)
    if endpoint in ("slow", "flaky"):
        assert result == "reverted", "a slow but working endpoint still gets the job done"
