"""Audit events name the setting they change: the event names come from the field tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secpref_guard import fields as F
from secpref_guard.events import SETTING_EVENTS, parse_audit_event

EVENTS = Path(__file__).resolve().parents[1] / "events"


def event_named(name: str, service: str | None = "Ims") -> bytes:
    document = json.loads((EVENTS / "set-in-console.json").read_bytes())
    document["data"]["eventName"] = name
    if service is None:
        document["data"].pop("serviceName", None)
    else:
        document["data"]["serviceName"] = service
    return json.dumps(document).encode()


def test_each_settings_audit_events_map_to_it():
    assert SETTING_EVENTS == {
        "SetSecurityPreference": "security-preference",
        "SetPasswordPolicy": "password-policy",
    }
    assert set(SETTING_EVENTS.values()) == {s.name for s in F.SETTINGS}


@pytest.mark.parametrize("service", ["Ims", "Ram", "ram", None])
def test_a_set_password_policy_event_is_a_password_policy_change(service):
    record = parse_audit_event(event_named("SetPasswordPolicy", service)).record

    assert record.changed_setting == "password-policy"


def test_a_set_security_preference_event_is_still_a_security_preference_change():
    record = parse_audit_event(event_named("SetSecurityPreference")).record

    assert record.changed_setting == "security-preference"


@pytest.mark.parametrize(
    ("name", "service"),
    [("GetPasswordPolicy", "Ims"), ("SetPasswordPolicy", "Ecs"), ("CreateUser", "Ram")],
)
def test_other_events_change_no_guarded_setting(name, service):
    record = parse_audit_event(event_named(name, service)).record
    assert record.changed_setting is None


def test_a_set_password_policy_event_proposes_a_run_of_the_password_policy_only():
    from secpref_guard.config import load_config
    from secpref_guard.modes import audit_proposal

    settings = load_config({"BASELINE_PASSWORD_MINIMUM_LENGTH": "14"}).settings
    for name, setting in (
        ("SetPasswordPolicy", "password-policy"),
        ("SetSecurityPreference", "security-preference"),
    ):
        proposal = audit_proposal(parse_audit_event(event_named(name)), settings, None)
        assert proposal.candidate is not None, proposal
        assert proposal.candidate.settings == (setting,)
