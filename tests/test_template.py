"""template.yml as Serverless Devs renders it (`s preview`, offline), checked against the code:
handlers that exist, a configuration the guard accepts, a role that can do only its job, and
triggers that deliver exactly the events the handlers act on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from secpref_guard.config import DEFAULT_BUDGET_PREFIX, Settings, load_config
from secpref_guard.events import SETTING_OF_EVENT, parse_audit_event
from secpref_guard.fields import BY_ENV_VAR, SETTINGS
from secpref_guard.modes import audit_proposal

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
# the Get and the Set of every guarded setting (security preference, password policy)
GUARD_ACTIONS = {f"ram:{a}" for s in SETTINGS for a in (s.get_action, s.set_action)}


def _s_binary() -> str | None:
    local = ROOT / "build" / "tools" / "node_modules" / ".bin" / "s"
    if local.exists():
        return str(local)
    return shutil.which("s")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    binary = _s_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("the Serverless Devs CLI is missing: `make tools` installs it")
        pytest.skip("the Serverless Devs CLI is not installed (make tools)")
    home = tmp_path_factory.mktemp("s-home")
    env = {**os.environ, "HOME": str(home)}
    completed = subprocess.run(
        [binary, "preview", "-t", "template.yml", "-o", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr + completed.stdout
    # s prints warnings (e.g. about running as root) before the document
    text = completed.stdout
    start = text.find("\n{") + 1 if not text.startswith("{") else 0
    return json.loads(text[start:])


def worker_name(rendered: dict[str, Any]) -> str:
    (worker,) = [p for p in functions(rendered).values() if p["handler"] == "worker.handler"]
    assert worker["environmentVariables"]["GUARD_WORKER_FUNCTION"] == worker["functionName"]
    return str(worker["functionName"])


def functions(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["props"]
        for name, resource in rendered["resources"].items()
        if resource["component"] == "fc3"
    }


def role_template(rendered: dict[str, Any]) -> dict[str, Any]:
    (role,) = [r for r in rendered["resources"].values() if r["component"] == "ros"]
    return role["props"]["template"]


def test_template_is_serverless_devs_3_with_its_three_functions(rendered: dict[str, Any]) -> None:
    assert rendered["edition"] == "3.0.0"
    props = functions(rendered)
    assert {p["handler"] for p in props.values()} == {
        "scheduled.handler",
        "audit_event.handler",
        "worker.handler",
    }
    for p in props.values():
        assert p["runtime"] == "python3.10"
        assert p["code"] == "./build/code"
        assert p["timeout"] >= 30
        assert p["logConfig"] == "auto"


def test_every_handler_file_exists_at_the_code_root(rendered: dict[str, Any]) -> None:
    for p in functions(rendered).values():
        module, function = p["handler"].split(".")
        source = (ROOT / "functions" / f"{module}.py").read_text()
        assert f"def {function}(event" in source


def test_environment_is_a_valid_configuration(rendered: dict[str, Any]) -> None:
    known = (
        set(BY_ENV_VAR) | {f.alias for f in Settings.model_fields.values()} | {"GUARD_LOG_LEVEL"}
    )
    for p in functions(rendered).values():
        env = p["environmentVariables"]
        assert set(env) <= known, set(env) - known
        assert all(isinstance(v, str) for v in env.values())
        config = load_config(env)
        assert config.settings.mode == "enforce"
        assert config.baseline["MFAOperationForLogin"] == "mandatory"
        assert config.baseline["AllowUserToManageAccessKeys"] is False


def resources_of_type(rendered: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in role_template(rendered)["Resources"].values() if r["Type"] == kind]


def test_role_is_trusted_by_function_compute_and_allowed_only_its_job(
    rendered: dict[str, Any],
) -> None:
    (role,) = resources_of_type(rendered, "ALIYUN::RAM::Role")
    props = role["Properties"]
    trust = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": ["fc.aliyuncs.com"]},
        }
    ]
    grants: dict[str, Any] = {}
    for policy in props["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                grants[action] = statement["Resource"]
    # the preference actions; the budget store's own actions on its own prefix only; and for
    # many accounts: entering members through the member-access role, listing them, and
    # invoking the worker function (nothing else)
    assert set(grants) == GUARD_ACTIONS | {
        "oss:GetObject",
        "oss:PutObject",
        "sts:AssumeRole",
        "resourcemanager:ListAccounts",
        "fc:InvokeFunction",
    }
    for action in GUARD_ACTIONS:
        assert grants[action] == "*"
    assert grants["resourcemanager:ListAccounts"] == "*"
    assert grants["sts:AssumeRole"] == "acs:ram:*:*:role/resourcedirectoryaccountaccessrole"
    separator, parts = grants["fc:InvokeFunction"]["Fn::Join"]
    assert parts[0] == "acs:fc:"
    assert parts[-1] == ":functions/" + worker_name(rendered)
    (bucket,) = resources_of_type(rendered, "ALIYUN::OSS::Bucket")
    bucket_name = bucket["Properties"]["BucketName"]["Fn::Join"][1]
    for action in ("oss:GetObject", "oss:PutObject"):
        separator, parts = grants[action]["Fn::Join"]
        assert separator == ""
        assert parts[0] == "acs:oss:*:*:" + bucket_name[0]
        assert parts[1] == bucket_name[1]
        assert parts[2] == "/" + DEFAULT_BUDGET_PREFIX + "*"


def test_budget_bucket_is_private_and_expires_old_counts(rendered: dict[str, Any]) -> None:
    (bucket,) = resources_of_type(rendered, "ALIYUN::OSS::Bucket")
    props = bucket["Properties"]
    assert props["AccessControl"] == "private"
    (rule,) = props["LifecycleConfiguration"]["Rule"]
    assert rule["Prefix"] == DEFAULT_BUDGET_PREFIX
    assert rule["Status"] == "Enabled"
    assert rule["Expiration"]["Days"] >= 21
    for p in functions(rendered).values():
        env = p["environmentVariables"]
        assert env["GUARD_BUDGET_BUCKET"].startswith(
            bucket["Properties"]["BucketName"]["Fn::Join"][1][0]
        )


def test_functions_run_as_the_role_the_template_creates(rendered: dict[str, Any]) -> None:
    (role,) = resources_of_type(rendered, "ALIYUN::RAM::Role")
    name = role["Properties"]["RoleName"]
    for p in functions(rendered).values():
        assert p["role"] == name
        # the audit handler recognises the guard's own writes by this role
        assert p["environmentVariables"]["GUARD_SELF_ROLE"] == name


def test_timer_fires_every_five_minutes(rendered: dict[str, Any]) -> None:
    triggers = [t for p in functions(rendered).values() for t in p.get("triggers", [])]
    (timer,) = [t for t in triggers if t["triggerType"] == "timer"]
    assert timer["triggerConfig"]["cronExpression"] == "0 */5 * * * *"
    assert timer["triggerConfig"]["enable"] is True


def _matches(pattern: Any, value: Any) -> bool:
    """The EventBridge pattern subset the template uses: value lists, prefix and suffix."""
    operators = {"prefix": str.startswith, "suffix": str.endswith}
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            _matches(sub, value.get(key)) for key, sub in pattern.items()
        )
    assert isinstance(pattern, list)
    for option in pattern:
        if isinstance(option, dict):
            ((op, operand),) = option.items()
            if isinstance(value, str) and operators[op](value, operand):
                return True
        elif option == value:
            return True
    return False


def test_event_rule_delivers_exactly_the_changes_the_handler_acts_on(
    rendered: dict[str, Any],
) -> None:
    (props,) = [p for p in functions(rendered).values() if p["handler"] == "audit_event.handler"]
    (trigger,) = props["triggers"]
    assert trigger["triggerType"] == "eventbridge"
    config = trigger["triggerConfig"]
    assert config["eventSourceConfig"]["eventSourceType"] == "Default"
    pattern = json.loads(config["eventRuleFilterPattern"])
    settings_env = props["environmentVariables"]
    guard_config = load_config(settings_env)

    for path in sorted(EVENTS.glob("*.json")):
        if path.name == "timer.json":
            continue
        document = json.loads(path.read_bytes())
        if "data" not in document:
            continue  # a bare record never comes through EventBridge
        delivered = _matches(pattern, document)
        audit = parse_audit_event(path.read_bytes())
        acted_on = audit_proposal(audit, guard_config.settings, None).candidate is not None
        # the rule may deliver more than the handler acts on (the handler decides), never less
        assert delivered or not acted_on, path.name
        if document["data"]["eventName"] not in SETTING_OF_EVENT:
            assert not delivered, path.name
    # every guarded setting's audit events are delivered, as API calls and console operations
    sample = json.loads((EVENTS / "set-in-console.json").read_bytes())
    for event_name in SETTING_OF_EVENT:
        for kind in ("ApiCall", "ConsoleOperation"):
            document = {
                **sample,
                "type": f"ram:ActionTrail:{kind}",
                "data": {**sample["data"], "eventName": event_name},
            }
            assert _matches(pattern, document), (event_name, kind)


def test_cli_invoke_accepts_the_template_handler_names(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    from secpref_guard.local import find_functions_dir, load_handler

    for p in functions(rendered).values():
        assert callable(load_handler(p["handler"], find_functions_dir(None)))
