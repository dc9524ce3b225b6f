"""What the multi-account tests share: a clock both the emulated STS and the guard's credential
cache read, retry policies that do not wait, and an emulated organisation served on both
SDKs' HTTP paths."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from conftest import ENDPOINT
from secpref_guard.client import RetryPolicy
from secpref_guard.emulator import mock_endpoint
from secpref_guard.emulator.resourcemanager import Organisation

REQUESTS_SEND = "requests.adapters.HTTPAdapter.send"  # fc invocations use ordinary requests
NO_SLEEP = RetryPolicy(sleep=lambda seconds: None)
ONE_TRY = RetryPolicy(attempts=1, sleep=lambda seconds: None)
WORKER = "secpref-guard-worker"


class Clock:
    """One clock for the emulated STS (epoch seconds) and the guard's cache (datetime)."""

    def __init__(self) -> None:
        self.value = 1_800_000_000.0

    def time(self) -> float:
        return self.value

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.value, timezone.utc)

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta).total_seconds()


@contextmanager
def serve(o: Organisation) -> Iterator[Organisation]:
    """Both SDKs' HTTP paths answered by the organisation's emulator."""
    with mock_endpoint(o.emulator, ENDPOINT), mock_endpoint(o.emulator, ENDPOINT, REQUESTS_SEND):
        try:
            yield o
        finally:
            o.fc.close()
