"""Shared fixtures: a clean environment and the emulator on the SDK's real HTTP path."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from fake_oss import DEFAULT_BUCKET, DEFAULT_ENDPOINT, FakeOss, mock_oss
from secpref_guard import instance
from secpref_guard.client import RetryPolicy
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT,
    Emulator,
    ImsBackend,
    mock_endpoint,
)
from secpref_guard.ims import ImsClient

ENDPOINT = "http://127.0.0.1:8765"
ACCOUNT = DEFAULT_ACCOUNT
_PREFIXES = ("BASELINE_", "GUARD_", "ALIBABA_CLOUD_", "ALIYUN_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's or CI's cloud configuration or credentials."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES) or name == "DEBUG":
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def no_freezing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The handlers and the CLI run in this process too: they would freeze pytest's own heap
    (instance.freeze_imports), and later tests' garbage with it. Only tests marked ``freezes``
    let them; the build's tests run them in their own processes."""
    if request.node.get_closest_marker("freezes") is None:
        monkeypatch.setattr(instance, "freeze_imports", lambda: None)


@pytest.fixture(params=["reset", "keep"])
def omitted(request: pytest.FixtureRequest) -> str:
    """Both documented-or-not behaviours of SetSecurityPreference for omitted fields."""
    return request.param


@pytest.fixture
def emulator(omitted: str) -> Iterator[Emulator]:
    """The IMS emulator behind `responses`, in both Set semantics."""
    emu = Emulator.with_default_key(ims=ImsBackend(omitted=omitted))  # type: ignore[arg-type]
    with mock_endpoint(emu, ENDPOINT):
        yield emu


@pytest.fixture
def reset_emulator() -> Iterator[Emulator]:
    """The emulator with the realistic default only (omitted fields reset)."""
    with mock_endpoint(Emulator.with_default_key(), ENDPOINT) as emu:
        yield emu


@pytest.fixture
def credentials() -> Credentials:
    return Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)


@pytest.fixture
def no_sleep() -> RetryPolicy:
    """Retries without waiting, so fault tests run fast and deterministic."""
    return RetryPolicy(sleep=lambda seconds: None)


@pytest.fixture
def client(credentials: Credentials, no_sleep: RetryPolicy) -> ImsClient:
    return ImsClient(ENDPOINT, credentials, retry=no_sleep)


@pytest.fixture
def guard_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Environment for the CLI and handlers: the emulator's endpoint and key pair."""
    monkeypatch.setenv("GUARD_IMS_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", DEFAULT_ACCESS_KEY_SECRET)
    return monkeypatch


@pytest.fixture
def oss() -> Iterator[FakeOss]:
    """A fake OSS that accepts the emulator's key pair (the function role signs both)."""
    with mock_oss(FakeOss(keys={"test-key-id": ("test-key-secret", None)})) as fake:
        yield fake


@pytest.fixture
def budget_env(guard_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    guard_env.setenv("GUARD_BUDGET_BUCKET", DEFAULT_BUCKET)
    guard_env.setenv("GUARD_BUDGET_ENDPOINT", DEFAULT_ENDPOINT)
    guard_env.setenv("GUARD_MAX_REVERTS", "3")
    guard_env.setenv("GUARD_REVERT_WINDOW_MINUTES", "60")
    return guard_env
