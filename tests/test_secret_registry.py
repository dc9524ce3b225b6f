"""The secret-masking registry: bounded however long an instance lives, fast with thousands of
secrets, the same masking whichever way it searches, and safe to share between threads.

Member-account credentials are refreshed every hour for up to thousands of accounts; each
registration adds up to four masked forms of the secret and of the token. A scope (the
credentials' source) replaces its old values, unscoped values are capped, and redact() costs a
fixed amount per character of text instead of one search per registered string.
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secpref_guard import logs
from secpref_guard.credentials import Credentials

FORMS_PER_VALUE = 3  # raw, percent-encoded once, and twice (quote never encodes "~")


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> logs._SecretRegistry:
    """A registry of this test's own: no test here floods or empties the process's one."""
    fresh = logs._SecretRegistry()
    monkeypatch.setattr(logs, "_registry", fresh)
    return fresh


def secret_value(length: int = 40) -> str:
    """A secret with characters that percent-encoding changes: three distinct masked forms."""
    return secrets.token_urlsafe(length)[: length - 4] + "/+=~"


def forms(value: str) -> list[str]:
    once = quote(value, safe="~")
    return [value, once, quote(once, safe="~"), quote(value, safe="")]


def force_index(monkeypatch: pytest.MonkeyPatch, registry: logs._SecretRegistry) -> None:
    """Make redact() search through the prefix index even with few secrets."""
    monkeypatch.setattr(logs, "FEW_SECRETS", 0)
    registry._refresh_few()


def median_ms(call, runs: int = 20) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def kilobyte_line(*embedded: str) -> str:
    """A 1 KB JSON log line, as the formatter writes them, with these strings inside."""
    head = (
        '{"time": "2026-11-25T04:00:00.123Z", "level": "WARNING", "logger": "secpref_guard", '
        '"message": "account reverted", "account": "1234567890123456", "reason": "'
    )
    body = " ".join(embedded) + " reverted LoginSessionDuration; " * 30
    return (head + body)[:1022] + '"}'


# --- bounded --------------------------------------------------------------------------------


def test_a_scope_registering_10000_times_keeps_a_bounded_registry():
    history = []
    for _ in range(10_000):
        history.append((secret_value(), secret_value(400)))
        logs.register_secrets(history[-1], scope="assumed role acs:ram::1234:role/guard")

    bound = logs.SCOPE_GENERATIONS * 2 * FORMS_PER_VALUE
    assert logs.registered_secret_count() <= bound
    current_secret, current_token = history[-1]
    for value in (current_secret, current_token):
        for form in forms(value):  # raw, encoded once and twice: all masked
            assert logs.redact(f"x {form} y") == "x *** y"
    replaced_secret, _ = history[-1 - logs.SCOPE_GENERATIONS]
    assert replaced_secret not in logs._registry._holders  # gone, not piling up


def test_refreshed_member_credentials_replace_their_old_ones():
    arns = [f"acs:ram::{10**15 + i}:role/secpref-guard-member" for i in range(50)]
    for _hour in range(48):  # two days of hourly refreshes
        issued = [
            Credentials("STS.key", secret_value(), secret_value(300), source=f"assumed role {arn}")
            for arn in arns
        ]

    assert logs.registered_secret_count() <= len(arns) * logs.SCOPE_GENERATIONS * 8
    for creds in issued:
        token = quote(creds.security_token or "", safe="~")
        text = f"token={token}&secret={creds.access_key_secret}"
        assert logs.redact(text) == "token=***&secret=***"


def test_the_same_credentials_built_again_change_nothing():
    value = secret_value()
    for _ in range(5):
        Credentials("key-id", value, source="function context")
    assert logs.registered_secret_count() == FORMS_PER_VALUE
    assert logs._registry._scopes["function context"] == [frozenset(forms(value))]


def test_the_previous_registration_of_a_scope_stays_masked_until_the_next():
    """A call made with credentials just refreshed away may still be running."""
    old, new, newer = secret_value(), secret_value(), secret_value()
    logs.register_secret(old, scope="s")
    logs.register_secret(new, scope="s")
    assert logs.redact(f"{old} {new}") == "*** ***"
    logs.register_secret(newer, scope="s")
    assert logs.redact(f"{old} {new} {newer}") == f"{old} *** ***"


def test_a_value_held_by_two_scopes_stays_masked_while_either_holds_it():
    shared = secret_value()
    logs.register_secret(shared, scope="a")
    logs.register_secret(shared, scope="b")
    logs.forget_secrets("a")
    assert logs.redact(shared) == "***"
    logs.forget_secrets("b")
    assert logs.redact(shared) == shared
    assert logs.registered_secret_count() == 0


def test_unscoped_values_are_capped_least_recently_registered_first(monkeypatch):
    monkeypatch.setattr(logs, "MAX_UNSCOPED_SECRETS", 100)
    webhook_token = secret_value()
    logs.register_secret(webhook_token)
    for i in range(1_000):  # a DingTalk signature per message
        logs.register_secret(secret_value())
        if i % 50 == 0:
            logs.register_secret(webhook_token)  # in use: registered again per invocation

    assert logs.registered_secret_count() <= 100 * FORMS_PER_VALUE
    assert logs.redact(webhook_token) == "***"


def test_short_and_empty_values_are_not_secrets():
    for value in (None, "", "abcde"):
        logs.register_secret(value)
        logs.register_secret(value, scope="x")
    assert logs.registered_secret_count() == 0
    assert logs.redact("abcde") == "abcde"


# --- masking: the same whichever way redact searches ----------------------------------------


@pytest.mark.parametrize("search", ["few", "index"])
def test_a_secret_that_contains_another_is_masked_whole(monkeypatch, registry, search):
    if search == "index":
        force_index(monkeypatch, registry)
    logs.register_secret("abcdef")
    logs.register_secret("xxabcdefyy")
    logs.register_secret("123456789")
    logs.register_secret("789xyz")  # overlaps the one above in "123456789xyz"

    assert logs.redact("a xxabcdefyy b abcdef c") == "a *** b *** c"
    assert logs.redact("123456789xyz") == "***"
    assert logs.redact("abcdefabcdef") == "******"
    assert logs.redact("nothing here") == "nothing here"


@pytest.mark.parametrize("search", ["few", "index"])
def test_current_values_are_masked_raw_and_percent_encoded_once_and_twice(
    monkeypatch, registry, search
):
    if search == "index":
        force_index(monkeypatch, registry)
    token = "CAIS+abc/def=ghi~jkl"
    logs.register_secrets((token,), scope="environment")
    once = quote(token, safe="~")
    twice = quote(once, safe="~")
    assert once != token
    assert twice != once
    text = f"SecurityToken={once}&x; sign {twice}; raw {token}; {quote(token, safe='')}"
    assert logs.redact(text) == "SecurityToken=***&x; sign ***; raw ***; ***"


@given(
    values=st.lists(st.text(alphabet="ab/", min_size=6, max_size=10), min_size=1, max_size=8),
    text=st.text(alphabet="ab/ %2F", max_size=80),
)
def test_both_searches_mask_exactly_the_same_characters(values, text):
    registry = logs._SecretRegistry()
    registry.register(values, None)
    masked = set(registry._holders)
    few = logs._find_each(text, masked)
    indexed = logs._find_indexed(text, registry._index)
    expected = logs._mask(text, few) if few else text
    assert (logs._mask(text, indexed) if indexed else text) == expected
    for secret in masked:  # nothing of any secret is left in the clear
        assert secret not in expected


# --- fast with many secrets -----------------------------------------------------------------


def test_redact_of_a_1kb_line_with_8000_secrets_takes_under_2_ms():
    values = []
    for account in range(1_334):  # members' STS credentials: secret and token, 3 forms each
        pair = (secret_value(), secret_value(300))
        values.append(pair)
        logs.register_secrets(pair, scope=f"assumed role acs:ram::{account}:role/m")
    assert logs.registered_secret_count() >= 8_000
    clean = kilobyte_line()
    leaky = kilobyte_line(values[17][0], quote(values[1333][1], safe="~"), values[500][0])
    assert len(clean) == len(leaky) == 1024

    assert logs.redact(leaky).count("***") == 3
    assert logs.redact(clean) == clean
    assert median_ms(lambda: logs.redact(clean)) < 2.0
    assert median_ms(lambda: logs.redact(leaky)) < 2.0


def test_redact_with_few_secrets_stays_well_under_a_tenth_of_a_millisecond():
    for i in range(16):  # 48 masked strings: the function's credentials and a few tokens
        logs.register_secret(secret_value(), scope=f"s{i}")
    assert logs.registered_secret_count() < 50
    line = kilobyte_line()
    assert median_ms(lambda: logs.redact(line)) < 0.1


# --- threads --------------------------------------------------------------------------------


def test_register_and_redact_are_safe_under_concurrency(monkeypatch):
    monkeypatch.setattr(logs, "MAX_UNSCOPED_SECRETS", 64)
    stable = [secret_value() for _ in range(4)]
    for i, value in enumerate(stable):
        logs.register_secret(value, scope=f"stable {i}")
    line = " | ".join(stable)
    expected = " | ".join(["***"] * len(stable))
    errors: list[BaseException] = []
    leaks: list[str] = []
    start = threading.Barrier(8)
    latest: dict[str, tuple[str, str]] = {}

    def writer(n: int) -> None:
        start.wait()
        try:
            for i in range(400):  # the count crosses FEW_SECRETS up and down
                pair = (secret_value(), secret_value(100))
                logs.register_secrets(pair, scope=f"account {n}-{i % 25}")
                latest[f"account {n}-{i % 25}"] = pair
                logs.register_secret(secret_value())  # unscoped, capped
                if i % 40 == 19:
                    for j in range(25):
                        logs.forget_secrets(f"account {n}-{j}")
                        latest.pop(f"account {n}-{j}", None)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    def reader() -> None:
        start.wait()
        try:
            for _ in range(2_000):
                redacted = logs.redact(line)
                if redacted != expected:
                    leaks.append(redacted)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert leaks == []
    registry = logs._registry
    indexed = {s for bucket in registry._index.values() for s in bucket}
    assert indexed == set(registry._holders)  # the index and the holders agree
    for scope, (secret, token) in latest.items():
        assert logs.redact(f"{secret} {token}") == "*** ***", scope
    assert logs.registered_secret_count() <= (
        4 * FORMS_PER_VALUE
        + 4 * 25 * logs.SCOPE_GENERATIONS * 2 * FORMS_PER_VALUE
        + 64 * FORMS_PER_VALUE
    )
