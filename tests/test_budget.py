"""The revert budget against the fake OSS, through oss2's real HTTP path."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import oss2
import pytest

from fake_oss import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    DEFAULT_BUCKET,
    DEFAULT_ENDPOINT,
    STS_KEY_ID,
    STS_KEY_SECRET,
    STS_TOKEN,
    FakeOss,
    crc64,
    mock_oss,
)
from secpref_guard import budget as budget_module
from secpref_guard.budget import (
    BudgetCheck,
    RevertBudget,
    open_bucket,
    period_days,
    region_from_endpoint,
)
from secpref_guard.client import RetryPolicy
from secpref_guard.credentials import Credentials
from secpref_guard.logs import get_logger

ACCOUNT = "1234567890123456"
# Appends retried at once: the tests below that look at waits give their own clock.
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda seconds: None)
T0 = datetime(2025, 6, 1, 10, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeOss]:
    with mock_oss() as oss:
        yield oss


@pytest.fixture
def clock() -> Clock:
    return Clock()


def new_budget(
    clock: Clock,
    max_reverts: int = 3,
    window_minutes: int = 60,
    credentials: Credentials | None = None,
) -> RevertBudget:
    """One guard instance: its own oss2.Bucket, its own budget object, the shared store."""
    bucket = open_bucket(
        credentials or Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET),
        DEFAULT_BUCKET,
        DEFAULT_ENDPOINT,
    )
    return RevertBudget(bucket, max_reverts, window_minutes, clock=clock, retry=NO_WAIT)


@pytest.fixture
def budget(fake: FakeOss, clock: Clock) -> RevertBudget:
    return new_budget(clock)


@pytest.fixture
def guard_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The guard's own log lines, whether or not logs.configure() stopped propagation."""
    logger = get_logger()
    propagate = logger.propagate
    logger.propagate = False
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger=logger.name)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = propagate


def lines_of(fake: FakeOss) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for data in fake.backend.objects(DEFAULT_BUCKET).values()
        for line in data.decode().splitlines()
    ]


# -- counting -------------------------------------------------------------------------------------


def test_an_account_never_reverted_is_allowed(budget: RevertBudget, fake: FakeOss) -> None:
    check = budget.check(ACCOUNT)

    assert check == BudgetCheck(True, [], None, None, check.store)
    assert check.store == (
        f"oss://{DEFAULT_BUCKET}/secpref-guard/revert-budget/{ACCOUNT}/2025-06-01.P1D.jsonl"
    )
    assert fake.count() == 1


def test_under_the_budget_the_guard_may_revert(budget: RevertBudget, clock: Clock) -> None:
    budget.record(ACCOUNT, actor="alice")
    first = clock.now
    second = clock.advance(minutes=5)
    budget.record(ACCOUNT, actor="bob")

    check = budget.check(ACCOUNT)

    assert check.allowed
    assert check.recent == [first, second]
    assert check.last_actor == "bob"
    assert check.error is None


def test_at_the_budget_the_guard_stops_with_the_recent_reverts_and_last_actor(
    budget: RevertBudget, clock: Clock
) -> None:
    times = []
    for actor in ("terraform", None, "ros-stack"):
        times.append(clock.now)
        budget.record(ACCOUNT, actor=actor)
        clock.advance(minutes=10)

    check = budget.check(ACCOUNT)

    assert not check.allowed
    assert check.recent == times
    assert check.last_actor == "ros-stack"
    assert check.as_dict() == {
        "allowed": False,
        "recent": ["2025-06-01T10:00:00Z", "2025-06-01T10:10:00Z", "2025-06-01T10:20:00Z"],
        "last_actor": "ros-stack",
        "store": check.store,
    }


def test_the_last_actor_is_the_latest_one_known(budget: RevertBudget, clock: Clock) -> None:
    budget.record(ACCOUNT, actor="terraform")
    clock.advance(minutes=1)
    budget.record(ACCOUNT, actor=None)

    assert budget.check(ACCOUNT).last_actor == "terraform"


def test_budgets_of_accounts_are_separate(budget: RevertBudget) -> None:
    for _ in range(3):
        budget.record(ACCOUNT)

    assert not budget.check(ACCOUNT).allowed
    assert budget.check("9999999999999999").allowed


def test_reverts_older_than_the_window_stop_counting(budget: RevertBudget, clock: Clock) -> None:
    budget.record(ACCOUNT)
    clock.advance(minutes=10)
    budget.record(ACCOUNT)
    clock.advance(minutes=10)
    budget.record(ACCOUNT)
    assert not budget.check(ACCOUNT).allowed

    clock.now = T0 + timedelta(minutes=60)  # the first revert is exactly one window old

    check = budget.check(ACCOUNT)
    assert check.allowed
    assert check.recent == [T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)]


def test_a_revert_before_midnight_still_counts_after_it_from_one_read(
    budget: RevertBudget, clock: Clock, fake: FakeOss
) -> None:
    clock.now = datetime(2025, 6, 1, 23, 40, tzinfo=timezone.utc)
    budget.record(ACCOUNT, actor="terraform")
    assert sorted(fake.backend.objects(DEFAULT_BUCKET)) == [
        f"secpref-guard/revert-budget/{ACCOUNT}/2025-06-01.P1D.jsonl",
        f"secpref-guard/revert-budget/{ACCOUNT}/2025-06-02.P1D.jsonl",
    ]
    clock.now = datetime(2025, 6, 2, 0, 20, tzinfo=timezone.utc)
    fake.calls.clear()

    check = budget.check(ACCOUNT)

    assert check.recent == [datetime(2025, 6, 1, 23, 40, tzinfo=timezone.utc)]
    assert check.last_actor == "terraform"
    assert fake.count() == 1


def test_a_revert_far_from_midnight_is_written_once(
    budget: RevertBudget, clock: Clock, fake: FakeOss
) -> None:
    clock.now = datetime(2025, 6, 1, 22, 59, tzinfo=timezone.utc)
    budget.record(ACCOUNT)

    assert len(fake.backend.objects(DEFAULT_BUCKET)) == 1
    assert fake.count("AppendObject") == 1


@pytest.mark.parametrize(
    ("window", "days"), [(1, 1), (60, 1), (720, 1), (721, 2), (1440, 2), (10080, 14)]
)
def test_an_object_covers_at_least_twice_the_window(window: int, days: int) -> None:
    assert period_days(window) == days


def test_long_windows_count_across_days(fake: FakeOss, clock: Clock) -> None:
    budget = new_budget(clock, max_reverts=2, window_minutes=1440)
    budget.record(ACCOUNT)
    clock.advance(hours=20)
    budget.record(ACCOUNT)
    clock.advance(hours=3)

    assert not budget.check(ACCOUNT).allowed
    clock.advance(hours=2)  # the first is now 25 hours old
    assert budget.check(ACCOUNT).allowed


def test_naive_times_are_taken_as_utc(budget: RevertBudget) -> None:
    budget.record(ACCOUNT, now=datetime(2025, 6, 1, 10, 0))  # naive, on purpose

    assert budget.check(ACCOUNT, now=T0).recent == [T0]


# -- concurrency ----------------------------------------------------------------------------------


def test_two_instances_interleaving_lose_no_count(fake: FakeOss, clock: Clock) -> None:
    timer, audit_event = new_budget(clock), new_budget(clock)
    timer.record(ACCOUNT, actor="first")

    assert timer.check(ACCOUNT).allowed  # both read the same object: one revert so far
    assert audit_event.check(ACCOUNT).allowed
    timer.record(ACCOUNT, actor="terraform")
    fake.calls.clear()
    audit_event.record(ACCOUNT, actor="ros")  # its position is stale: 409, then appended

    assert [(c.operation, c.status) for c in fake.calls] == [
        ("AppendObject", 409),
        ("AppendObject", 200),
    ]
    check = new_budget(clock).check(ACCOUNT)
    assert not check.allowed
    assert len(check.recent) == 3
    assert {line["actor"] for line in lines_of(fake)} == {"first", "terraform", "ros"}


def test_two_first_reverts_of_an_account_both_count(fake: FakeOss, clock: Clock) -> None:
    a, b = new_budget(clock), new_budget(clock)
    assert a.check(ACCOUNT).recent == b.check(ACCOUNT).recent == []  # both see no object

    a.record(ACCOUNT)
    b.record(ACCOUNT)  # also appends at position 0: 409 names the length, then appended

    assert len(new_budget(clock).check(ACCOUNT).recent) == 2


def test_many_instances_appending_at_once_lose_no_count(fake: FakeOss, clock: Clock) -> None:
    instances = [new_budget(clock, max_reverts=1000) for _ in range(8)]
    for instance in instances:
        instance.conflicts = 100
    start = threading.Barrier(len(instances))

    def fight(instance: RevertBudget) -> None:
        start.wait()
        for _ in range(5):
            instance.record(ACCOUNT)

    threads = [threading.Thread(target=fight, args=(i,)) for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(new_budget(clock, max_reverts=1000).check(ACCOUNT).recent) == 40
    assert len({line["id"] for line in lines_of(fake)}) == 40


def test_an_append_whose_reply_was_lost_counts_once(budget: RevertBudget, fake: FakeOss) -> None:
    fake.lose_response(operation="AppendObject")

    budget.record(ACCOUNT)

    assert [(c.operation, c.status) for c in fake.calls] == [
        ("AppendObject", 200),
        ("AppendObject", 409),
        ("AppendObject", 200),
    ]
    assert len(lines_of(fake)) == 2  # the same line twice ...
    assert len(budget.check(ACCOUNT).recent) == 1  # ... is one revert


def test_a_transient_append_failure_is_retried(budget: RevertBudget, fake: FakeOss) -> None:
    fake.fail(503, "ServiceUnavailable", operation="AppendObject")

    budget.record(ACCOUNT)

    assert fake.count("AppendObject") == 2
    assert len(budget.check(ACCOUNT).recent) == 1


# -- the baseline wins when the store fails -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "ServiceUnavailable"), (500, "InternalError"), (403, "AccessDenied")],
)
def test_an_unreadable_store_allows_the_revert_and_says_why(
    budget: RevertBudget, fake: FakeOss, status: int, code: str
) -> None:
    fake.fail(status, code, "it is down")

    check = budget.check(ACCOUNT)

    assert check.allowed
    assert check.recent == []
    assert check.error is not None
    assert f"{code}: it is down (HTTP {status}, request id " in check.error
    assert check.store in check.error
    assert fake.count() == 1


def test_an_unreachable_store_allows_the_revert(budget: RevertBudget, fake: FakeOss) -> None:
    fake.disconnect()

    check = budget.check(ACCOUNT)

    assert check.allowed
    assert check.error is not None
    assert "could not reach OSS (ConnectionError)" in check.error


def test_wrong_credentials_allow_the_revert_and_name_the_error(fake: FakeOss, clock: Clock) -> None:
    budget = new_budget(clock, credentials=Credentials(ACCESS_KEY_ID, "not-the-secret"))

    check = budget.check(ACCOUNT)

    assert check.allowed
    assert check.error is not None
    assert "SignatureDoesNotMatch" in check.error


@pytest.mark.parametrize(
    "content",
    [b"not json\n", b'{"at": "yesterday", "id": "x"}\n', b'["a list"]\n', b"\xff\xfe\x00"],
)
def test_a_corrupt_object_allows_the_revert_and_says_so(
    budget: RevertBudget, content: bytes
) -> None:
    budget.bucket.put_object(budget.key_for(ACCOUNT, T0), content)

    check = budget.check(ACCOUNT)

    assert check.allowed
    assert check.error is not None
    assert "not a budget entry" in check.error or "not UTF-8" in check.error


def test_an_oversized_object_is_not_read(
    budget: RevertBudget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget_module, "MAX_OBJECT_BYTES", 100)
    budget.bucket.put_object(budget.key_for(ACCOUNT, T0), b"x" * 101)

    check = budget.check(ACCOUNT)

    assert check.allowed
    assert check.error is not None
    assert "more than 100 bytes (101)" in check.error


def test_a_failed_record_is_logged_and_not_raised(
    budget: RevertBudget, fake: FakeOss, guard_log: pytest.LogCaptureFixture
) -> None:
    fake.fail(403, "AccessDenied", "no oss:PutObject", times=None, operation="AppendObject")

    budget.record(ACCOUNT, actor="terraform")

    [record] = [r for r in guard_log.records if r.getMessage().startswith("revert not counted")]
    assert record.levelno == logging.ERROR
    assert "AccessDenied: no oss:PutObject (HTTP 403" in record.fields["error"]  # type: ignore[attr-defined]
    assert fake.count("AppendObject") == 1  # a 403 is not retried


def test_an_object_written_over_by_put_object_is_reported(
    budget: RevertBudget, guard_log: pytest.LogCaptureFixture
) -> None:
    budget.bucket.put_object(budget.key_for(ACCOUNT, T0), b"")

    budget.record(ACCOUNT)

    assert any(
        "ObjectNotAppendable" in r.fields["error"]  # type: ignore[attr-defined]
        for r in guard_log.records
        if r.getMessage().startswith("revert not counted")
    )


def test_a_bad_account_id_is_allowed_with_an_error(budget: RevertBudget, fake: FakeOss) -> None:
    check = budget.check("../other")

    assert check.allowed
    assert check.error is not None
    budget.record("../other")  # logged, not raised
    assert fake.count() == 0


# -- requests per path ----------------------------------------------------------------------------


def test_requests_per_path(fake: FakeOss, clock: Clock) -> None:
    budget = new_budget(clock)
    assert fake.count() == 0  # building the budget sends nothing: a compliant run costs 0

    assert budget.check(ACCOUNT).allowed  # drift, allowed: one read before the write ...
    budget.record(ACCOUNT)  # ... one append after it, at the position the read returned
    assert [c.operation for c in fake.calls] == ["GetObject", "AppendObject"]
    assert budget.requests == 2

    for _ in range(2):
        budget.check(ACCOUNT)
        budget.record(ACCOUNT)
    fake.calls.clear()
    assert not budget.check(ACCOUNT).allowed  # contested: one read, nothing written
    assert [c.operation for c in fake.calls] == ["GetObject"]

    fake.calls.clear()
    fake.fail(503)
    assert budget.check(ACCOUNT).error  # store down: one failed read
    assert fake.count() == 1


def test_record_in_the_background_overlaps_the_verification(
    budget: RevertBudget, fake: FakeOss
) -> None:
    budget.check(ACCOUNT)

    pending = budget.record_in_background(ACCOUNT, actor="terraform")

    assert pending.wait(10)
    assert budget.check(ACCOUNT).last_actor == "terraform"


def test_sts_credentials_sign_with_the_security_token(fake: FakeOss, clock: Clock) -> None:
    budget = new_budget(clock, credentials=Credentials(STS_KEY_ID, STS_KEY_SECRET, STS_TOKEN))

    budget.record(ACCOUNT)

    assert len(budget.check(ACCOUNT).recent) == 1
    assert all(c.status == 200 for c in fake.calls)


# -- building the bucket --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "region"),
    [
        ("https://oss-cn-hangzhou.aliyuncs.com", "cn-hangzhou"),
        ("https://oss-cn-hangzhou-internal.aliyuncs.com", "cn-hangzhou"),
        ("oss-ap-southeast-1.aliyuncs.com", "ap-southeast-1"),
    ],
)
def test_the_region_comes_from_the_endpoint(endpoint: str, region: str) -> None:
    assert region_from_endpoint(endpoint) == region


def test_an_endpoint_without_a_region_needs_one_given() -> None:
    with pytest.raises(ValueError, match="region"):
        region_from_endpoint("https://oss.example.com")
    bucket = open_bucket(
        Credentials("id", "secret"), DEFAULT_BUCKET, "https://oss.example.com", region="cn-shanghai"
    )
    assert bucket.region == "cn-shanghai"


def test_plain_http_is_refused_except_to_this_machine() -> None:
    with pytest.raises(ValueError, match="https"):
        open_bucket(
            Credentials("id", "secret"), DEFAULT_BUCKET, "http://oss-cn-hangzhou.aliyuncs.com"
        )
    open_bucket(
        Credentials("id", "secret"), DEFAULT_BUCKET, "http://127.0.0.1:9000", region="cn-hangzhou"
    )


def test_oss2_logs_nothing_of_the_request(fake: FakeOss) -> None:
    open_bucket(
        Credentials(STS_KEY_ID, STS_KEY_SECRET, STS_TOKEN), DEFAULT_BUCKET, DEFAULT_ENDPOINT
    )

    assert not logging.getLogger("oss2").isEnabledFor(logging.CRITICAL)


def test_the_budget_signs_with_v4_which_new_buckets_require(fake: FakeOss) -> None:
    legacy = oss2.Bucket(
        oss2.Auth(ACCESS_KEY_ID, ACCESS_KEY_SECRET), DEFAULT_ENDPOINT, DEFAULT_BUCKET
    )
    with pytest.raises(oss2.exceptions.AccessDenied):
        legacy.get_object("anything")


# -- the fake itself ------------------------------------------------------------------------------


def test_the_fake_reports_crc64_as_oss_does() -> None:
    assert crc64(b"123456789") == 0x995DC9BBDF1939FA  # CRC-64/XZ check value


def test_the_fake_answers_like_oss(fake: FakeOss) -> None:
    bucket = open_bucket(
        Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET), DEFAULT_BUCKET, DEFAULT_ENDPOINT
    )
    with pytest.raises(oss2.exceptions.NoSuchKey) as missing:
        bucket.get_object("a/missing key")
    assert missing.value.request_id

    bucket.put_object("a/normal", b"v1")  # oss2 checks the CRC-64 the fake returns
    with pytest.raises(oss2.exceptions.ServerError) as exists:
        bucket.put_object("a/normal", b"v2", headers={"x-oss-forbid-overwrite": "true"})
    assert (exists.value.status, exists.value.code) == (409, "FileAlreadyExists")
    bucket.put_object("a/normal", b"v3", headers={"If-Match": '"NOT-THE-ETAG"'})
    assert bucket.get_object("a/normal").read() == b"v3"  # PutObject ignores If-Match

    assert bucket.append_object("a/log", 0, b"one\n").next_position == 4
    with pytest.raises(oss2.exceptions.PositionNotEqualToLength) as stale:
        bucket.append_object("a/log", 0, b"two\n")
    assert stale.value.next_position == 4
    with pytest.raises(oss2.exceptions.ObjectNotAppendable):
        bucket.append_object("a/normal", 2, b"x")
    result = bucket.get_object("a/log")
    assert (result.read(), result.object_type) == (b"one\n", "Appendable")
    assert result.headers["x-oss-next-append-position"] == "4"


# -- the append's retry is the project's one mechanism (issue 14, finding 6) ---------------------


class MonotonicClock:
    """The retry clock of client.with_retries, advanced only by its own sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def budget_on(
    clock: Clock, monotonic: MonotonicClock, *, deadline: float | None = None, attempts: int = 5
) -> RevertBudget:
    bucket = open_bucket(
        Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET), DEFAULT_BUCKET, DEFAULT_ENDPOINT
    )
    policy = RetryPolicy(
        attempts=attempts,
        total_seconds=30.0,
        initial_wait=0.2,
        max_wait=4.0,
        sleep=monotonic.sleep,
        clock=monotonic,
    )
    return RevertBudget(bucket, 3, 60, clock=clock, retry=policy, deadline=deadline)


def test_append_retries_back_off_with_jitter_on_the_retry_clock(
    fake: FakeOss, clock: Clock
) -> None:
    rounds = []
    for _ in range(6):
        monotonic = MonotonicClock()
        fake.fail(503, "ServiceUnavailable", times=3, operation="AppendObject")
        budget_on(clock, monotonic).record(ACCOUNT)
        rounds.append(monotonic.waits)

    for waits in rounds:
        assert len(waits) == 3  # three failures, three waits, the fourth try lands
        # exponential from 0.2 s (0.2, 0.4, 0.8), plus up to 0.2 s of random jitter each
        for wait, base in zip(waits, (0.2, 0.4, 0.8), strict=True):
            assert base <= wait <= base + 0.2
    assert len({tuple(waits) for waits in rounds}) > 1  # jitter: not the same waits every time
    assert len(budget_on(clock, MonotonicClock()).check(ACCOUNT).recent) == 6


def test_the_append_gives_up_at_the_policys_attempts(
    fake: FakeOss, clock: Clock, guard_log: pytest.LogCaptureFixture
) -> None:
    fake.fail(503, "ServiceUnavailable", times=None, operation="AppendObject")

    budget_on(clock, MonotonicClock(), attempts=2).record(ACCOUNT)

    assert fake.count("AppendObject") == 2
    (line,) = [
        r for r in guard_log.records if r.getMessage() == "revert not counted in the revert budget"
    ]
    assert "after 2 attempts" in line.fields["error"]  # type: ignore[attr-defined]
    assert "ServiceUnavailable" in line.fields["error"]  # type: ignore[attr-defined]


def test_no_append_starts_past_the_invocations_deadline(
    fake: FakeOss, clock: Clock, guard_log: pytest.LogCaptureFixture
) -> None:
    monotonic = MonotonicClock()
    budget = budget_on(clock, monotonic, deadline=monotonic.now + 0.5)

    budget.record(ACCOUNT)

    assert fake.count("AppendObject") == 0
    (line,) = [
        r for r in guard_log.records if r.getMessage() == "revert not counted in the revert budget"
    ]
    assert "time budget" in line.fields["error"]  # type: ignore[attr-defined]


def test_no_retry_waits_past_the_invocations_deadline(fake: FakeOss, clock: Clock) -> None:
    """The old loop slept 0.2 s, 0.4 s whatever the invocation had left."""
    monotonic = MonotonicClock()
    fake.fail(503, "ServiceUnavailable", times=None, operation="AppendObject")
    deadline = monotonic.now + 2.0

    budget_on(clock, monotonic, deadline=deadline).record(ACCOUNT)

    assert 1 <= fake.count("AppendObject") < 5
    assert monotonic.now <= deadline


def test_a_permanent_append_failure_is_not_retried(fake: FakeOss, clock: Clock) -> None:
    monotonic = MonotonicClock()
    fake.fail(403, "AccessDenied", "no oss:PutObject", times=None, operation="AppendObject")

    budget_on(clock, monotonic).record(ACCOUNT)

    assert fake.count("AppendObject") == 1
    assert monotonic.waits == []


def test_from_settings_binds_the_appends_to_the_given_retry_and_deadline(fake: FakeOss) -> None:
    from secpref_guard.config import load_config

    settings = load_config(
        {
            "BASELINE_ENABLE_SAVE_MFA_TICKET": "false",
            "GUARD_BUDGET_BUCKET": DEFAULT_BUCKET,
            "GUARD_BUDGET_ENDPOINT": DEFAULT_ENDPOINT,
        }
    ).settings
    monotonic = MonotonicClock()
    policy = RetryPolicy(sleep=monotonic.sleep, clock=monotonic)

    budget = budget_module.from_settings(
        settings,
        Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET),
        retry=policy,
        deadline=monotonic.now + 0.5,
    )

    assert budget is not None
    assert budget.retry is policy
    assert budget.deadline == monotonic.now + 0.5
    budget.record(ACCOUNT)
    assert fake.count("AppendObject") == 0  # the deadline had passed
