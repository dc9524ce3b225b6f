"""template.yml as Serverless Devs renders it (`s preview`, offline), checked against the code:
handlers that exist, a configuration the guard accepts, a role that can do only its job, and
triggers that deliver exactly the events the handlers act on."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from secpref_guard.config import DEFAULT_BUDGET_PREFIX, Settings, load_config
from secpref_guard.events import SETTING_EVENTS, parse_audit_event
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


def render(home: Path, template: Path = ROOT / "template.yml") -> dict[str, Any]:
    """``s preview`` of a template (offline); the CLI is required on CI."""
    binary = _s_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("the Serverless Devs CLI is missing: `make tools` installs it")
        pytest.skip("the Serverless Devs CLI is not installed (make tools)")
    env = {**os.environ, "HOME": str(home)}
    completed = subprocess.run(
        [binary, "preview", "-t", str(template), "-o", "json"],
        cwd=template.parent,
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


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return render(tmp_path_factory.mktemp("s-home"))


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
        assert p["runtime"] == "python3.12"  # one vars entry: vars.runtime
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


def grants_of(policies: list[dict[str, Any]]) -> dict[str, Any]:
    """Action -> Resource over the policies' statements (every statement an Allow)."""
    grants: dict[str, Any] = {}
    for policy in policies:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                grants[action] = statement["Resource"]
    return grants


def condition_holds(template: dict[str, Any], name: str) -> bool:
    """The ROS condition, for the subset of functions the template uses (no parameters)."""

    def evaluate(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((function, argument),) = node.items()
            if function == "Fn::Not":
                return not evaluate(argument[0] if isinstance(argument, list) else argument)
            if function == "Fn::Equals":
                left, right = (evaluate(a) for a in argument)
                return left == right
            raise AssertionError(f"unexpected function {function}")
        return node

    return bool(evaluate(template["Conditions"][name]))


def effective_grants(rendered: dict[str, Any]) -> dict[str, Any]:
    """What the role may do once deployed: its inline policies, and each managed policy attached
    to it whose condition holds."""
    template = role_template(rendered)
    (role,) = resources_of_type(rendered, "ALIYUN::RAM::Role")
    policies = list(role["Properties"]["Policies"])
    for resource in template["Resources"].values():
        if resource["Type"] != "ALIYUN::RAM::ManagedPolicy":
            continue
        assert resource["Properties"]["Roles"] == [{"Fn::GetAtt": ["GuardRole", "RoleName"]}]
        if "Condition" not in resource or condition_holds(template, resource["Condition"]):
            policies.append(resource["Properties"])
    return grants_of(policies)


def vars_of(rendered: dict[str, Any]) -> dict[str, Any]:
    return rendered["vars"]


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
    grants = effective_grants(rendered)
    # A self-only deployment (the template's default): the preference actions and the budget
    # store's own actions on its own prefix, nothing for other accounts.
    assert vars_of(rendered)["targets"] == "self"
    assert set(grants) == GUARD_ACTIONS | {"oss:GetObject", "oss:PutObject"}
    for action in GUARD_ACTIONS:
        assert grants[action] == "*"
    (bucket,) = resources_of_type(rendered, "ALIYUN::OSS::Bucket")
    bucket_name = bucket["Properties"]["BucketName"]["Fn::Join"][1]
    for action in ("oss:GetObject", "oss:PutObject"):
        separator, parts = grants[action]["Fn::Join"]
        assert separator == ""
        assert parts[0] == "acs:oss:*:*:" + bucket_name[0]
        assert parts[1] == bucket_name[1]
        assert parts[2] == "/" + DEFAULT_BUDGET_PREFIX + "*"


def check_organisation_grants(rendered: dict[str, Any]) -> None:
    """With organisation-wide targets: exactly these, each on the resource the variables name."""
    variables = vars_of(rendered)
    grants = effective_grants(rendered)
    assert set(grants) == GUARD_ACTIONS | {
        "oss:GetObject",
        "oss:PutObject",
        "sts:AssumeRole",
        "resourcemanager:ListAccounts",
        "resourcemanager:GetAccount",
        "fc:InvokeFunction",
        "eventbridge:PutEvents",
    }
    assert grants["resourcemanager:ListAccounts"] == "*"
    assert grants["resourcemanager:GetAccount"] == "*"
    assert grants["sts:AssumeRole"] == f"acs:ram:*:*:role/{variables['memberRole'].lower()}"
    separator, parts = grants["fc:InvokeFunction"]["Fn::Join"]
    assert separator == ""
    assert parts[0] == "acs:fc:"
    assert parts[-1] == ":functions/" + worker_name(rendered)
    separator, parts = grants["eventbridge:PutEvents"]["Fn::Join"]
    assert separator == ""
    assert parts[0] == "acs:eventbridge:"
    assert parts[-1] == f":eventbus/{variables['failureBus']}"


def variant(tmp_path: Path, **values: str) -> Path:
    """template.yml with some ``vars`` entries changed, next to a copy of nothing else."""
    text = (ROOT / "template.yml").read_text()
    for name, value in values.items():
        text, count = re.subn(rf"(?m)^  {name}: .*$", f"  {name}: {value}", text)
        assert count == 1, name
    path = tmp_path / "template.yml"
    path.write_text(text)
    return path


def test_organisation_permissions_are_attached_only_for_organisation_targets(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    template = role_template(rendered)
    (policy,) = [
        r for r in template["Resources"].values() if r["Type"] == "ALIYUN::RAM::ManagedPolicy"
    ]
    assert policy["Condition"] == "Organisation"
    assert not condition_holds(template, "Organisation")

    organisation = render(tmp_path / "home", variant(tmp_path, targets="resource-directory"))

    assert condition_holds(role_template(organisation), "Organisation")
    check_organisation_grants(organisation)
    for p in functions(organisation).values():
        assert p["environmentVariables"]["GUARD_TARGETS"] == "resource-directory"


def test_the_variables_drive_both_the_environment_and_the_policy(tmp_path: Path) -> None:
    """Change the member role, the worker and the budget prefix in one place each: the functions'
    environment and the role's policy follow together."""
    changed = render(
        tmp_path / "home",
        variant(
            tmp_path,
            targets='"1234567890123456,2234567890123456"',
            memberRole="OrgGuardAccess",
            workerName="guard-worker-2",
            budgetPrefix="guard/budget/",
        ),
    )
    check_organisation_grants(changed)
    for p in functions(changed).values():
        env = p["environmentVariables"]
        assert env["GUARD_MEMBER_ROLE"] == "OrgGuardAccess"
        assert env["GUARD_WORKER_FUNCTION"] == "guard-worker-2"
        assert env["GUARD_BUDGET_PREFIX"] == "guard/budget/"
        assert env["GUARD_TARGETS"] == "1234567890123456,2234567890123456"
        settings = load_config(env).settings
        assert settings.member_role == "OrgGuardAccess"
        assert settings.budget_prefix == "guard/budget/"
    grants = effective_grants(changed)
    assert grants["sts:AssumeRole"] == "acs:ram:*:*:role/orgguardaccess"
    assert grants["oss:PutObject"]["Fn::Join"][1][-1] == "/guard/budget/*"
    (bucket,) = resources_of_type(changed, "ALIYUN::OSS::Bucket")
    (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rule"]
    assert rule["Prefix"] == "guard/budget/"


def test_a_failed_worker_batch_goes_to_the_failure_bus(rendered: dict[str, Any]) -> None:
    (worker,) = [p for p in functions(rendered).values() if p["handler"] == "worker.handler"]
    config = worker["asyncInvokeConfig"]
    bus = vars_of(rendered)["failureBus"]
    destination = config["destinationConfig"]["onFailure"]["destination"]
    assert destination.startswith(f"acs:eventbridge:{vars_of(rendered)['region']}:")
    assert destination.endswith(f":eventbus/{bus}")
    assert config["maxAsyncEventAgeInSeconds"] <= 86_400
    (event_bus,) = resources_of_type(rendered, "ALIYUN::EventBridge::EventBus")
    assert event_bus["Properties"]["EventBusName"] == bus


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
        if document["data"]["eventName"] not in SETTING_EVENTS:
            assert not delivered, path.name
    # every guarded setting's audit events are delivered, as API calls and console operations
    sample = json.loads((EVENTS / "set-in-console.json").read_bytes())
    for event_name in SETTING_EVENTS:
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
