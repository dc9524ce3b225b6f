"""Property-based tests: random events, random configuration and random account states fed to
both handlers.

Whatever comes in, the invocation either returns a result or fails with a HandlerError that
names the cause; nothing is written unless the live state differs from a valid baseline; and
every value a Set sends is the baseline's or the one the account already had (nothing lost,
nothing clobbered), whether the API keeps or resets the fields a Set omits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from samples import env_text as as_env_text
from secpref_guard import fields as F
from secpref_guard import handlers
from secpref_guard.config import ConfigError, GuardConfig, load_config
from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator, ImsBackend, mock_endpoint
from secpref_guard.emulator.models import documented_defaults
from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "http://127.0.0.1:8765"
GUARD_ROLE = "secpref-guard-role"
OTHER_ACCOUNT = "9999999999999999"
STATUSES = {"compliant", "reverted", "drift", "skipped", "contested"}
CALL_ENV = {
    "GUARD_IMS_ENDPOINT": ENDPOINT,
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-key-id",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "test-key-secret",
}
BOUNDED = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SCHEDULED = load_handler("scheduled.handler", ROOT / "functions")
AUDIT = load_handler("audit_event.handler", ROOT / "functions")
TIMER_EVENT = (ROOT / "events" / "timer.json").read_bytes()
RELEVANT_EVENT = (ROOT / "events" / "set-by-ram-user.json").read_bytes()


def context() -> LocalContext:
    return LocalContext(
        request_id="req-property",
        function=LocalFunction("secpref-guard", "x.handler"),
        credentials=LocalCredentials("test-key-id", "test-key-secret"),
        account_id=DEFAULT_ACCOUNT,
    )


# --- strategies: values, states, baselines ---------------------------------------------------

FIELDS = F.FIELDS  # both settings: the security preference and the password policy
SP_NAMES = frozenset(f.api_name for f in F.SECURITY_PREFERENCE.fields)
SET_ACTIONS = tuple(s.set_action for s in F.SETTINGS)
MASKS = ["10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12", "203.0.113.0/24", "198.51.100.7/32"]


def value_of(f: F.Field) -> st.SearchStrategy[Any]:
    """Any canonical value the API accepts for the field."""
    if f.kind == "bool":
        return st.booleans()
    if f.bounds is not None:
        return st.integers(*f.bounds)
    if f.kind == "int":
        return st.sampled_from([90, 180, 365, 730])
    if f.kind == "enum":
        return st.sampled_from(["mandatory", "independent", "adaptive"])
    if f.kind == "masks":
        return st.frozensets(st.sampled_from(MASKS), max_size=3)
    return st.frozensets(st.sampled_from(["sms", "email"]))


@st.composite
def states(draw: st.DrawFn) -> dict[str, Any]:
    """An account's preference: every field at some valid value."""
    return {f.api_name: draw(value_of(f)) for f in FIELDS}


@st.composite
def baselines(draw: st.DrawFn) -> dict[str, Any]:
    """A valid baseline: at least one field, each at some valid value."""
    chosen = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=6, unique=True))
    return {f.api_name: draw(value_of(f)) for f in chosen}


def baseline_env(baseline: Mapping[str, Any]) -> dict[str, str]:
    return {F.field(name).env_var: as_env_text(F.field(name), v) for name, v in baseline.items()}


env_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=24,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | env_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(env_text, inner, max_size=4),
    max_leaves=12,
)


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any], one_in: int = 15) -> Any:
    """``usual`` most of the time, ``odd`` about once in ``one_in`` draws (and shrinking
    goes towards ``usual``)."""
    return st.integers(0, one_in - 1).flatmap(lambda n: odd if n == one_in // 2 else usual)


# --- strategies: configuration ----------------------------------------------------------------


def _baseline_text(f: F.Field) -> st.SearchStrategy[str]:
    """Valid text for the variable, a typo users make, or anything at all."""
    typos = {
        "bool": ["yes", "1", "flase", "True ", "TRUE", ""],
        "int": ["0", "25", "-1", "91", "six", "12.5", ""],
        "enum": ["Mandatory", "always", ""],
        "masks": ["10.0.0.0/33", "not-a-cidr", "10.0.0.0/8;;", "::1/128"],
        "types": ["sms,fax", "SMS", "email;sms", ""],
    }[f.kind]
    return st.one_of(value_of(f).map(lambda v: as_env_text(f, v)), st.sampled_from(typos), env_text)


def _exemptions() -> st.SearchStrategy[str]:
    names = [f.api_name for f in FIELDS]
    exemption = st.fixed_dictionaries(
        {
            "account": mostly(st.sampled_from([DEFAULT_ACCOUNT, OTHER_ACCOUNT]), st.just("abc")),
            "fields": st.lists(mostly(st.sampled_from(names), st.just("Bogus")), max_size=3),
            "until": st.sampled_from(["2999-01-01", "2000-01-01", "2999-01-01", "tomorrow"]),
            "reason": mostly(st.just("a reason"), st.just("")),
        }
    )
    return st.lists(exemption, max_size=2).map(json.dumps)


# variable -> (values that are valid, values that are not)
GUARD_VALUES: dict[str, tuple[st.SearchStrategy[str], st.SearchStrategy[str]]] = {
    "GUARD_MODE": (
        st.sampled_from(["enforce", "dry-run", "DRY-RUN", " enforce "]),
        st.sampled_from(["on", "dryrun", ""]),
    ),
    "GUARD_SELF_ROLE": (st.sampled_from([GUARD_ROLE, ""]), st.just("bad role name!")),
    "GUARD_PRESET": (st.sampled_from(["cis-2.0", ""]), st.just("cis-1.0")),
    "GUARD_TARGETS": (st.just("self"), st.sampled_from(["", "resource-directory x", "12ab"])),
    "GUARD_EXCLUDE_ACCOUNTS": (st.sampled_from([OTHER_ACCOUNT, ""]), st.just("x,y")),
    "GUARD_REPORT_ONLY_FIELDS": (
        st.lists(st.sampled_from([f.api_name for f in FIELDS]), max_size=3).map(",".join),
        st.just("Bogus,LoginSessionDuration"),
    ),
    "GUARD_EXEMPTIONS": (_exemptions(), st.sampled_from(["[", "{}", "null", "[1]"])),
    "GUARD_MAX_REVERTS": (st.sampled_from(["3", "1", "1000"]), st.sampled_from(["0", "-1", "x"])),
    "GUARD_REVERT_WINDOW_MINUTES": (st.sampled_from(["60", "1"]), st.sampled_from(["0", "x"])),
    "GUARD_LOG_LEVEL": (
        st.sampled_from(["DEBUG", "info", "WARNING", "error"]),
        st.sampled_from(["VERBOSE", "5", "warn"]),
    ),
}


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    """BASELINE_* and GUARD_* variables: some unset, most valid, and now and then one or two
    broken (a typo or anything at all). Channels that would leave the machine (webhooks, the
    budget bucket, other accounts) are not drawn."""
    env: dict[str, str] = {}
    for f in draw(st.lists(st.sampled_from(FIELDS), max_size=5, unique=True)):
        env[f.env_var] = draw(value_of(f).map(lambda v, f=f: as_env_text(f, v)))
    for name in draw(st.lists(st.sampled_from(sorted(GUARD_VALUES)), max_size=5, unique=True)):
        env[name] = draw(GUARD_VALUES[name][0])
    broken = draw(
        st.lists(
            st.sampled_from([f.env_var for f in FIELDS] + sorted(GUARD_VALUES)),
            max_size=2,
            unique=True,
        ).filter(lambda names: len(names) < 2 or draw(st.booleans()))
    )
    for name in broken:
        if name in GUARD_VALUES:
            env[name] = draw(st.one_of(GUARD_VALUES[name][1], env_text))
        else:
            env[name] = draw(_baseline_text(F.BY_ENV_VAR[name]))
    return env


# --- strategies: events -----------------------------------------------------------------------

GUARD_ARN = f"acs:ram::{DEFAULT_ACCOUNT}:assumed-role/{GUARD_ROLE}/fc-session"
ARNS = [
    GUARD_ARN,
    GUARD_ARN.upper(),
    f"acs:ram::{DEFAULT_ACCOUNT}:user/alice",
    f"acs:ram::{DEFAULT_ACCOUNT}:assumed-role/other-role/s",
    "acs:ram::1:assumed-role/",
]


@st.composite
def identities(draw: st.DrawFn) -> dict[str, Any]:
    return draw(
        st.fixed_dictionaries(
            {},
            optional={
                "type": mostly(
                    st.sampled_from(["ram-user", "assumed-role", "root-account", "system"]),
                    json_values,
                ),
                "arn": mostly(st.sampled_from(ARNS), json_values),
                "accountId": mostly(
                    st.sampled_from([DEFAULT_ACCOUNT, DEFAULT_ACCOUNT, int(DEFAULT_ACCOUNT)]),
                    st.just(OTHER_ACCOUNT) | json_values,
                ),
                "userName": mostly(st.just("alice"), json_values),
                "principalId": mostly(st.just("213456789012345678"), json_values),
            },
        )
    )


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """ActionTrail records with random names, services, errors and identities."""
    return draw(
        st.fixed_dictionaries(
            {
                "eventName": mostly(
                    st.sampled_from(
                        ["SetSecurityPreference", "SetSecurityPreference", "CreateUser"]
                    ),
                    json_values,
                ),
            },
            optional={
                "serviceName": mostly(
                    st.sampled_from(["Ims", "Ram", "ims", "RAM", "Sts"]), json_values
                ),
                "errorCode": mostly(st.sampled_from(["", "NoPermission"]), json_values),
                "eventType": mostly(st.sampled_from(["ApiCall", "ConsoleOperation"]), json_values),
                "eventVersion": mostly(st.sampled_from(["1", 1]), json_values),
                "recipientAccountId": mostly(st.just(DEFAULT_ACCOUNT), json_values),
                "requestParameters": mostly(
                    st.dictionaries(
                        st.sampled_from([f.api_name for f in FIELDS]), env_text, max_size=3
                    ),
                    json_values,
                ),
                "userIdentity": mostly(identities(), json_values),
                "unknownField": json_values,
            },
        )
    )


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(mostly(records() | records().map(json.dumps), json_values, 8))
    return draw(
        st.fixed_dictionaries(
            {
                "data": st.just(data),
                "id": mostly(st.uuids().map(str), json_values),
                "type": mostly(st.sampled_from(["ims:ActionTrail:ApiCall", "x"]), json_values),
            },
            optional={
                "specversion": mostly(st.sampled_from(["1.0", "2.0"]), json_values),
                "aliyunaccountid": mostly(st.just(DEFAULT_ACCOUNT), json_values),
                "extension": json_values,
            },
        )
    )


payloads = mostly(
    st.one_of(
        records().map(lambda v: json.dumps(v).encode()),
        envelopes().map(lambda v: json.dumps(v).encode()),
    ),
    st.one_of(st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode())),
    one_in=4,
)


# --- running one example ----------------------------------------------------------------------


@dataclass
class Run:
    before: dict[str, Any]
    after: dict[str, Any]
    sets: list[dict[str, Any]]  # canonical values of each SetSecurityPreference
    calls: int
    result: dict[str, Any] | None
    error: str | None


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, {**CALL_ENV, **env}):
        handlers.reset_instance()
        try:
            yield
        finally:
            handlers.reset_instance()


def run(
    handler: Any,
    payload: bytes,
    env: Mapping[str, str],
    state: Mapping[str, Any],
    omitted: str = "reset",
    hidden: frozenset[str] = frozenset(),
) -> Run:
    emulator = Emulator.with_default_key(ims=ImsBackend(omitted=omitted))  # type: ignore[arg-type]
    emulator.ims.put(DEFAULT_ACCOUNT, **state)
    for name in hidden:
        emulator.ims.hide_field(DEFAULT_ACCOUNT, name)
    before = every_value(emulator)
    result = error = None
    with environment(env), mock_endpoint(emulator, ENDPOINT):
        try:
            result = json.loads(handler(payload, context()))
        except handlers.HandlerError as exc:
            error = str(exc)
    with suppress(InvalidArgument):  # outside a property (the parametrised test)
        event(f"status: {result['status'] if result else (error or '')[:40]}")
    sets = [
        {name: F.field(name).parse_param(text) for name, text in call.params.items()}
        for call in emulator.ims.calls
        if call.action in SET_ACTIONS
    ]
    return Run(before, every_value(emulator), sets, len(emulator.ims.calls), result, error)


def every_value(emulator: Emulator) -> dict[str, Any]:
    """The account's fields of every setting."""
    values: dict[str, Any] = {}
    for setting in F.SETTINGS:
        values.update(emulator.ims.state(DEFAULT_ACCOUNT, setting.name))
    return values


def complies(config: GuardConfig, name: str, live: Any) -> bool:
    return F.field(name).satisfies(live, config.baseline[name], config.is_exact(name))


def config_of(env: Mapping[str, str]) -> GuardConfig | ConfigError:
    try:
        config = load_config({**CALL_ENV, **env})
        handlers_level = env.get("GUARD_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if handlers_level not in handlers.LOG_LEVELS:
            raise ConfigError("GUARD_LOG_LEVEL", "invalid")
        return config
    except ConfigError as exc:
        return exc


def revertible(
    config: GuardConfig, state: Mapping[str, Any], fields: frozenset[str] | None = None
) -> set[str]:
    """Baseline fields (of ``fields``, when given) the live state breaks, that is, whose live
    value is not at least as strict as the baseline, and the policy lets the guard write."""
    if config.dry_run:
        return set()
    settings_ = config.settings
    exempt = {
        name
        for e in settings_.exemptions
        if e.account == DEFAULT_ACCOUNT and e.active_on(datetime.now(timezone.utc).date())
        for name in e.fields
    }
    return {
        name
        for name in config.baseline
        if (fields is None or name in fields)
        and not complies(config, name, state.get(name))
        and name not in settings_.report_only_fields
        and name not in exempt
    }


def assert_writes_only_baseline_or_live(
    run: Run, baseline: Mapping[str, Any], hidden: frozenset[str] = frozenset()
) -> None:
    """Every value sent is the baseline's or the live one, and for a field with a safer
    direction never weaker than the live one the guard could read: it never loosens a
    setting. (A field the account does not return is unknown, so the baseline is written.)"""
    for sent in run.sets:
        for name, value in sent.items():
            allowed = [baseline.get(name, run.before.get(name))]
            if name in run.before:
                allowed.append(run.before[name])
            assert value in allowed, (name, value, allowed)
            f = F.field(name)
            if f.direction is not None and name in run.before and name not in hidden:
                assert f.satisfies(value, run.before[name]), ("loosened", name, value)


def settings_written(config: GuardConfig, names: set[str]) -> int:
    return len({F.setting_of(name).name for name in names})


# --- the properties ---------------------------------------------------------------------------


@BOUNDED
@given(payload=payloads, state=states())
def test_any_audit_event_gives_a_result_or_a_clear_error_and_writes_only_on_drift(
    payload: bytes, state: dict[str, Any]
) -> None:
    baseline = {"AllowUserToManageAccessKeys": False, "MFAOperationForLogin": "mandatory"}
    env = {**baseline_env(baseline), "GUARD_SELF_ROLE": GUARD_ROLE}
    outcome = run(AUDIT, payload, env, state)

    if outcome.error is not None:
        assert outcome.error.startswith("malformed event: audit event"), outcome.error
        assert "\n" not in outcome.error
        assert outcome.calls == 0
        return
    assert outcome.result is not None
    assert outcome.result["status"] in STATUSES
    if outcome.result["status"] == "skipped":
        assert outcome.calls == 0
        assert outcome.result["reason"]
        return
    drifted = any(
        not F.field(name).satisfies(state[name], value) for name, value in baseline.items()
    )
    assert outcome.result["status"] == ("reverted" if drifted else "compliant")
    assert len(outcome.sets) == (1 if drifted else 0)
    assert_writes_only_baseline_or_live(outcome, baseline)


@BOUNDED
@given(env=environments(), state=states(), timer=st.booleans())
def test_any_configuration_gives_a_result_or_an_error_naming_the_variable(
    env: dict[str, str], state: dict[str, Any], timer: bool
) -> None:
    handler, payload = (SCHEDULED, TIMER_EVENT) if timer else (AUDIT, RELEVANT_EVENT)
    config = config_of(env)
    outcome = run(handler, payload, env, state)

    if isinstance(config, ConfigError):
        assert outcome.error is not None, "an invalid configuration must fail the invocation"
        assert outcome.error.startswith(f"configuration error: {config.variable}"), (
            outcome.error,
            config.variable,
        )
        # the variable at fault is set, or the one a set variable needs (a budget needs a bucket)
        missing_bucket = config.variable == "GUARD_BUDGET_BUCKET" and (
            "GUARD_MAX_REVERTS" in env or "GUARD_REVERT_WINDOW_MINUTES" in env
        )
        assert config.variable in env or config.variable == "BASELINE_*" or missing_bucket
        assert outcome.calls == 0
        assert outcome.after == outcome.before
        return
    assert outcome.error is None, outcome.error
    assert outcome.result is not None
    assert outcome.result["status"] in STATUSES
    # an audit event of SetSecurityPreference runs the security preference only
    to_write = revertible(config, outcome.before, None if timer else SP_NAMES)
    if outcome.result["status"] == "skipped":
        assert outcome.calls == 0
    elif to_write:
        assert outcome.result["status"] == "reverted"
        assert len(outcome.sets) == settings_written(config, to_write)
    else:
        assert outcome.sets == []
        assert outcome.after == outcome.before
    assert_writes_only_baseline_or_live(outcome, config.baseline)


@BOUNDED
@given(
    baseline=baselines(),
    state=states(),
    omitted=st.sampled_from(["reset", "keep"]),
    hidden=st.frozensets(st.sampled_from([f.api_name for f in FIELDS]), max_size=2),
    timer=st.booleans(),
)
def test_nothing_lost_nothing_clobbered(
    baseline: dict[str, Any],
    state: dict[str, Any],
    omitted: str,
    hidden: frozenset[str],
    timer: bool,
) -> None:
    """Every value a Set sends is the baseline's or the live one, and a field the baseline
    does not own ends as it was, whether the API keeps or resets what a Set omits."""
    handler, payload = (SCHEDULED, TIMER_EVENT) if timer else (AUDIT, RELEVANT_EVENT)
    outcome = run(handler, payload, baseline_env(baseline), state, omitted, hidden)
    # the timer runs every setting the baseline pins; an audit event the one it names
    enforced = frozenset(F.BY_API_NAME) if timer else SP_NAMES
    config = load_config({**CALL_ENV, **baseline_env(baseline)})

    unverifiable = sorted(hidden & set(baseline) & enforced)
    if unverifiable:  # pinned but never returned: written, and loudly not confirmed
        assert outcome.error is not None
        assert "still differs in" in outcome.error
        assert any(name in outcome.error for name in unverifiable)
    else:
        assert outcome.error is None, outcome.error
    assert_writes_only_baseline_or_live(outcome, baseline, hidden)
    visible = {name: v for name, v in outcome.before.items() if name not in hidden}
    written: set[str] = set()
    for sent in outcome.sets:
        # the complete desired state of its setting: every field of it the account returned,
        # and the baseline's
        setting = F.setting_of(next(iter(sent)))
        own = set(setting.by_api_name)
        assert set(sent) == (set(visible) | set(baseline)) & own
        written.add(setting.name)
    if unverifiable:
        return  # the run stopped at the write that did not stick
    for name, value in visible.items():
        kept = name not in baseline or name not in enforced or complies(config, name, value)
        assert outcome.after[name] == (value if kept else baseline[name])
    for name in hidden - set(baseline):
        if F.setting_of(name).name in written and omitted == "reset":  # unknown: the default
            assert outcome.after[name] == documented_defaults(F.setting_of(name).name)[name]
        else:
            assert outcome.after[name] == outcome.before[name]


@pytest.mark.parametrize("name", [f.env_var for f in F.FIELDS])
def test_every_baseline_variable_with_a_bad_value_is_named_and_nothing_is_called(
    name: str,
) -> None:
    env = {"BASELINE_MFA_OPERATION_FOR_LOGIN": "mandatory", name: "definitely not valid"}
    for handler, payload in ((SCHEDULED, TIMER_EVENT), (AUDIT, RELEVANT_EVENT)):
        outcome = run(handler, payload, env, {"MFAOperationForLogin": "independent"})
        assert outcome.error is not None
        assert outcome.error.startswith(f"configuration error: {name}: ")
        assert outcome.calls == 0
