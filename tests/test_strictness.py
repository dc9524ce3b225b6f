"""At least as strict: a live value stricter than the baseline is compliant and stays; only a
weaker one is drift, reverted to the baseline; GUARD_EXACT_FIELDS restores equality. For every
field with a safer direction, of both settings, through the SDK's real HTTP path."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from conftest import ENDPOINT
from samples import env_text
from secpref_guard import engine
from secpref_guard import fields as F
from secpref_guard.config import load_config
from secpref_guard.emulator import DEFAULT_ACCOUNT

ACCOUNT = DEFAULT_ACCOUNT
TODAY = date(2026, 11, 25)
DIRECTIONAL = [f for f in F.FIELDS if f.direction is not None]
IDS = [f.api_name for f in DIRECTIONAL]


def ladder(f: F.Field) -> list[Any]:
    """Valid values of the field, weakest first."""
    if f.kind == "bool":
        values: list[Any] = [False, True]
    elif f.order:
        values = list(f.order)
    elif f.bounds is not None:
        low, high = f.bounds
        values = sorted({low, low + 1, (low + high) // 2, high - 1, high})
    else:
        values = [90, 180, 365, 730]
    return sorted(values, key=f.strictness)


def weaker_base_stricter(f: F.Field) -> tuple[Any, Any, Any]:
    values = ladder(f)
    if len(values) == 2:  # booleans: false, then true
        return values[0], values[1], values[1]
    return values[0], values[len(values) // 2], values[-1]


def run(emulator, client, f: F.Field, live: Any, baseline: Any, **guard: str):
    emulator.ims.put(ACCOUNT, **{f.api_name: live})
    config = load_config(
        {f.env_var: env_text(f, baseline), "GUARD_IMS_ENDPOINT": ENDPOINT, **guard}
    )
    return engine.run(client, config, account=ACCOUNT, today=TODAY)


def state(emulator, f: F.Field) -> Any:
    return emulator.ims.state(ACCOUNT, f.setting)[f.api_name]


def test_every_directional_field_has_three_distinct_ranks() -> None:
    assert len(DIRECTIONAL) >= 14
    for f in DIRECTIONAL:
        weaker, base, stricter = weaker_base_stricter(f)
        assert f.strictness(weaker) < f.strictness(base) <= f.strictness(stricter), f.api_name


@pytest.mark.parametrize("f", DIRECTIONAL, ids=IDS)
def test_a_stricter_live_value_is_compliant_and_stays(emulator, client, f) -> None:
    _, base, stricter = weaker_base_stricter(f)
    if f.kind == "bool":
        base = False  # the weakest: true is stricter
    assert f.satisfies(stricter, base)

    outcome = run(emulator, client, f, stricter, base)

    assert outcome.status == "compliant"
    assert outcome.api_calls == 1  # one read, nothing written
    assert state(emulator, f) == stricter
    assert [c.action for c in emulator.ims.calls] == [F.setting(f.setting).get_action]


@pytest.mark.parametrize("f", DIRECTIONAL, ids=IDS)
def test_a_weaker_live_value_is_drift_reverted_to_the_baseline(emulator, client, f) -> None:
    weaker, base, _ = weaker_base_stricter(f)

    outcome = run(emulator, client, f, weaker, base)

    assert outcome.status == "reverted"
    (drift,) = outcome.drift
    assert (drift.setting, drift.field, drift.actual, drift.expected) == (
        f.setting,
        f.api_name,
        weaker,
        base,
    )
    assert drift.rule == f.rule(base)
    assert state(emulator, f) == base


@pytest.mark.parametrize("f", DIRECTIONAL, ids=IDS)
def test_guard_exact_fields_restores_equality(emulator, client, f) -> None:
    _, base, stricter = weaker_base_stricter(f)
    if f.kind == "bool":
        base, stricter = False, True
    if stricter == base:
        pytest.skip("no value stricter than this baseline")

    outcome = run(emulator, client, f, stricter, base, GUARD_EXACT_FIELDS=f.api_name)

    assert outcome.status == "reverted"
    assert outcome.drift[0].rule.startswith("exactly ")
    assert state(emulator, f) == base  # equality asked for, equality written


@pytest.mark.parametrize(
    ("name", "baseline", "words"),
    [
        ("MinimumPasswordLength", 14, "at least 14"),
        ("LoginSessionDuration", 4, "at most 4"),
        ("MaxLoginAttemps", 5, "at most 5, not 0 (off)"),
        ("RequireSymbols", True, "true"),
        ("MFAOperationForLogin", "adaptive", "at least adaptive (adaptive or mandatory)"),
        ("MaxPasswordAge", 365, "exactly 365"),
        ("AllowUserToManageAccessKeys", False, "exactly false"),
    ],
)
def test_the_rule_is_said_in_words(name: str, baseline: Any, words: str) -> None:
    assert F.field(name).rule(baseline) == words


def test_off_is_the_weakest_lock_out_and_never_stricter(emulator, client) -> None:
    f = F.field("MaxLoginAttemps")
    outcome = run(emulator, client, f, 0, 5)  # 0: no lock-out at all
    assert outcome.status == "reverted"
    assert state(emulator, f) == 5
    emulator.ims.calls.clear()
    assert run(emulator, client, f, 3, 5).status == "compliant"  # 3 attempts is stricter


def test_the_case_that_started_it_a_4_hour_session_is_not_loosened_to_6(emulator, client) -> None:
    f = F.field("LoginSessionDuration")
    outcome = run(emulator, client, f, 4, 6)
    assert outcome.status == "compliant"
    assert state(emulator, f) == 4
    assert emulator.ims.calls_of("SetSecurityPreference") == []
