"""The ``secpref-guard`` command line: exit codes, output, and one-line errors.

Commands run in-process (``cli.main``) against the emulator on the SDK's HTTP path; one test
starts the real ``secpref-guard emulator`` command and checks the account over loopback HTTP.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ENDPOINT
from secpref_guard import cli, logs
from secpref_guard.emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, DEFAULT_ACCOUNT

ACCOUNT = DEFAULT_ACCOUNT  # the emulator's default key belongs to it (see conftest)
BASELINE = {
    "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
    "BASELINE_LOGIN_SESSION_DURATION": "4",
    "BASELINE_LOGIN_NETWORK_MASKS": "10.0.0.0/8;192.168.0.0/16",
}
SET = "SetSecurityPreference"


@pytest.fixture(autouse=True)
def restore_guard_logger() -> Iterator[None]:
    """main() points the guard's log handler at this test's stderr: put the old one back."""
    logger = logging.getLogger(logs.LOGGER_NAME)
    saved = (logger.level, logger.propagate, list(logger.handlers))
    yield
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


@pytest.fixture
def baseline_env(guard_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in BASELINE.items():
        guard_env.setenv(name, value)
    return guard_env


@pytest.fixture
def compliant(emulator):
    emulator.ims.put(
        ACCOUNT,
        AllowUserToManageAccessKeys="false",
        LoginSessionDuration="4",
        LoginNetworkMasks="192.168.0.0/16;10.0.0.0/8",
    )
    return emulator


@pytest.fixture
def drifted(compliant):
    compliant.ims.put(ACCOUNT, AllowUserToManageAccessKeys="true", LoginSessionDuration="24")
    return compliant


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- check and enforce -----------------------------------------------------------------------


@pytest.mark.usefixtures("baseline_env")
def test_check_of_a_compliant_account_exits_0(compliant, capsys):
    code, out, err = run(["check"], capsys)

    assert code == 0
    assert "compliant: all 3 baseline fields are at least as strict" in out
    assert err == ""
    assert compliant.ims.calls_of(SET) == []


@pytest.mark.usefixtures("baseline_env")
def test_check_of_a_drifted_account_exits_2_and_shows_actual_and_expected(drifted, capsys):
    code, out, _ = run(["check"], capsys)

    assert code == 2
    assert "drift in 2 of 3 baseline fields" in out
    rows = {
        line.split()[1]: line.split()
        for line in out.splitlines()
        if line.strip().startswith("security-preference")
    }
    # setting, field, actual, the rule it is held to, what enforce would do
    assert rows["AllowUserToManageAccessKeys"][2:6] == ["true", "exactly", "false", "would"]
    assert rows["LoginSessionDuration"][2:6] == ["24", "at", "most", "4"]
    assert "would revert" in out
    assert drifted.ims.calls_of(SET) == []


@pytest.mark.usefixtures("baseline_env")
def test_check_json_has_status_drift_and_reason(drifted, capsys):
    code, out, _ = run(["check", "--json"], capsys)

    document = json.loads(out)
    assert code == 2
    assert document["status"] == "drift"
    assert document["reason"] == "check only: nothing is written"
    drift = {d["field"]: (d["actual"], d["expected"]) for d in document["drift"]}
    assert drift == {"AllowUserToManageAccessKeys": (True, False), "LoginSessionDuration": (24, 4)}
    assert document["api_calls"] == 1


@pytest.mark.usefixtures("baseline_env")
def test_enforce_reverts_the_drift_exits_0_and_a_check_afterwards_is_compliant(drifted, capsys):
    code, out, _ = run(["enforce", "--json"], capsys)

    document = json.loads(out)
    assert code == 0
    assert document["status"] == "reverted"
    assert document["api_calls"] == 3
    assert {d["field"] for d in document["drift"]} == {
        "AllowUserToManageAccessKeys",
        "LoginSessionDuration",
    }
    assert len(drifted.ims.calls_of(SET)) == 1

    code, out, _ = run(["check", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["status"] == "compliant"


@pytest.mark.usefixtures("baseline_env")
def test_enforce_of_a_compliant_account_exits_0_and_writes_nothing(compliant, capsys):
    code, out, _ = run(["enforce"], capsys)
    assert code == 0
    assert "compliant" in out
    assert compliant.ims.calls_of(SET) == []


@pytest.mark.usefixtures("baseline_env")
def test_an_absent_field_is_shown_as_absent(compliant, capsys):
    compliant.ims.hide_field(ACCOUNT, "LoginSessionDuration")

    code, out, _ = run(["check"], capsys)

    assert code == 2
    assert "(absent)" in out


# --- errors: one line naming the cause, no traceback unless --debug ---------------------------


def assert_one_line_error(code: int, err: str, *names: str) -> None:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("secpref-guard: error: ")
    for name in names:
        assert name in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BASELINE_ENABLE_SAVE_MFA_TICKET", "yes"),
        ("BASELINE_LOGIN_SESSION_DURATION", "48"),
        ("GUARD_MODE", "revert"),
        ("GUARD_IMS_ENDPOINT", "http://ims.example.com"),
        ("GUARD_TARGETS", "everyone"),
        ("GUARD_REPORT_ONLY_FIELDS", "LoginNetworkMask"),
        ("GUARD_EXEMPTIONS", "[{}]"),
        ("GUARD_MAX_REVERTS", "many"),
    ],
)
@pytest.mark.parametrize("command", ["check", "enforce"])
def test_a_configuration_error_is_one_line_naming_the_variable(
    compliant, baseline_env, capsys, command, variable, value
):
    baseline_env.setenv(variable, value)

    code, out, err = run([command], capsys)

    assert_one_line_error(code, err, variable)
    assert out == ""
    assert compliant.ims.calls == []


def test_no_baseline_is_one_line_naming_the_baseline_variables(compliant, guard_env, capsys):
    code, _, err = run(["check"], capsys)
    assert_one_line_error(code, err, "BASELINE_*")


def test_missing_credentials_are_one_line_naming_the_variables(compliant, baseline_env, capsys):
    baseline_env.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    code, _, err = run(["check"], capsys)
    assert_one_line_error(code, err, "ALIBABA_CLOUD_ACCESS_KEY_SECRET")


@pytest.mark.usefixtures("baseline_env")
def test_an_api_error_is_one_line_naming_the_code(drifted, capsys):
    drifted.ims.inject_fault(
        "NoPermission", 403, action=SET, message="You are not authorized to do this action."
    )

    code, _, err = run(["enforce"], capsys)

    assert_one_line_error(code, err, "NoPermission", "SetSecurityPreference", "HTTP 403")
    assert drifted.ims.state(ACCOUNT)["AllowUserToManageAccessKeys"] is True


@pytest.mark.usefixtures("baseline_env")
def test_an_api_error_with_json_is_a_document_on_stdout(drifted, capsys):
    drifted.ims.inject_fault("NoPermission", 403, action="GetSecurityPreference")

    code, out, err = run(["check", "--json"], capsys)

    document = json.loads(out)
    assert code == 1
    assert document["status"] == "error"
    assert document["error"]["code"] == "NoPermission"
    assert document["error"]["http_status"] == 403
    assert document["error"]["request_id"]
    assert_one_line_error(code, err, "NoPermission")


@pytest.mark.usefixtures("baseline_env")
def test_a_configuration_error_with_json_names_the_variable(compliant, baseline_env, capsys):
    baseline_env.setenv("GUARD_MODE", "revert")
    code, out, _ = run(["check", "--json"], capsys)
    assert code == 1
    assert json.loads(out)["error"]["variable"] == "GUARD_MODE"


@pytest.mark.usefixtures("baseline_env")
def test_a_write_that_does_not_stick_is_one_line_naming_the_fields(drifted, capsys):
    drifted.ims.ignored_sets = 1
    code, _, err = run(["enforce"], capsys)
    assert_one_line_error(code, err, "AllowUserToManageAccessKeys", "LoginSessionDuration")


@pytest.mark.usefixtures("baseline_env")
def test_debug_shows_the_traceback(drifted, capsys):
    drifted.ims.inject_fault("NoPermission", 403, action=SET)

    code, _, err = run(["enforce", "--debug"], capsys)

    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert "ApiError" in err
    assert err.strip().splitlines()[-1].startswith("secpref-guard: error: ")


def test_debug_output_never_shows_the_token_or_the_secret(drifted, baseline_env, capsys):
    token, secret = "CAIS+cli/debug=token", "cli-sts-secret-value"
    drifted.add_key("STS.cli", secret, ACCOUNT, security_token=token)
    baseline_env.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "STS.cli")
    baseline_env.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret)
    baseline_env.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", token)
    baseline_env.setenv("DEBUG", "sdk")
    drifted.ims.inject_fault("InternalError", 500, action=SET, times=1)

    code, out, err = run(["enforce", "--debug", "--json"], capsys)

    assert code == 0
    assert "retrying API call" in err
    for text in (token, secret, "CAIS%2Bcli%2Fdebug%3Dtoken"):
        assert text not in out + err


# --- the emulator command, over loopback HTTP -------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_check_over_http_against_the_emulator_command():
    executable = Path(sys.executable).with_name("secpref-guard")
    port = free_port()
    server = subprocess.Popen(
        [
            str(executable),
            "emulator",
            "--port",
            str(port),
            "--json",
            "--set",
            "AllowUserToManageAccessKeys=true",
            "--set",
            "LoginSessionDuration=12",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        announced = json.loads(server.stdout.readline())  # printed once it is listening
        assert announced["endpoint"] == f"http://127.0.0.1:{port}"
        environ = {
            **os.environ,
            **BASELINE,
            "GUARD_IMS_ENDPOINT": announced["endpoint"],
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
        }

        result = subprocess.run(
            [str(executable), "check", "--json"],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode == 2, result.stderr
        document = json.loads(result.stdout)
        assert document["status"] == "drift"
        drift = {d["field"]: (d["actual"], d["expected"]) for d in document["drift"]}
        assert drift == {
            "AllowUserToManageAccessKeys": (True, False),
            "LoginSessionDuration": (12, 4),
            "LoginNetworkMasks": ([], ["10.0.0.0/8", "192.168.0.0/16"]),
        }
        assert DEFAULT_ACCESS_KEY_SECRET not in result.stdout + result.stderr
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
        server.stderr.close()
    assert server.returncode == 0  # SIGTERM stops it cleanly


def test_invalid_log_level_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GUARD_LOG_LEVEL", "loud")
    assert cli.main(["check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "GUARD_LOG_LEVEL" in err
    assert "Traceback" not in err


def test_json_works_before_the_command_too(
    emulator, guard_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    guard_env.setenv("BASELINE_ENABLE_SAVE_MFA_TICKET", "false")
    assert cli.main(["--json", "check"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "compliant"


def test_a_usage_error_exits_1_not_the_drift_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["check", "--jsn"])
    assert raised.value.code == 1
    assert "unrecognized arguments: --jsn" in capsys.readouterr().err


def test_enforce_exits_2_when_report_only_drift_is_left_beside_a_revert(
    emulator, guard_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    guard_env.setenv("BASELINE_LOGIN_SESSION_DURATION", "4")
    guard_env.setenv("GUARD_REPORT_ONLY_FIELDS", "LoginSessionDuration")
    emulator.ims.put(ACCOUNT, AllowUserToManageAccessKeys=True)
    assert cli.main(["enforce", "--json"]) == 2
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "reverted"
    assert {d["action"] for d in result["drift"]} == {"revert", "report-only"}


def test_the_cli_never_touches_its_own_account_when_excluded(
    emulator, guard_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    guard_env.setenv("BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS", "false")
    guard_env.setenv("GUARD_EXCLUDE_ACCOUNTS", ACCOUNT)
    guard_env.setenv("GUARD_STS_ENDPOINT", ENDPOINT)  # GetCallerIdentity: the emulator answers
    emulator.ims.put(ACCOUNT, AllowUserToManageAccessKeys=True)
    assert cli.main(["enforce", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "skipped"
    assert [c.action for c in emulator.ims.calls] == ["GetCallerIdentity"]


# --- errors that name their cause, not Python's (one line, no exception class) ----------------


def assert_no_python(err: str) -> None:
    for word in ("Error:", "Exception", "Traceback", "errno", "Errno"):
        assert word not in err, err


def test_an_emulator_on_a_taken_port_names_the_port(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(["emulator", "--port", str(port)], capsys)
    assert_one_line_error(code, err, f"127.0.0.1:{port}", "--port")
    assert_no_python(err)


def test_an_emulator_port_out_of_range_is_a_usage_error_naming_the_option(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["emulator", "--port", "99999"])
    err = capsys.readouterr().err
    assert raised.value.code == 1
    assert "--port: expected a port number from 0 to 65535, got '99999'" in err
    assert_no_python(err)


@pytest.mark.parametrize(
    ("item", "names"),
    [
        ("Foo=1", ["--set 'Foo=1'", "Foo", "known"]),
        ("LoginSessionDuration=99", ["--set 'LoginSessionDuration=99'", "1 to 24"]),
        ("LoginSessionDuration", ["FIELD=VALUE"]),
    ],
)
def test_a_bad_emulator_set_is_one_line_naming_the_field(capsys, item, names):
    code, _, err = run(["emulator", "--port", "0", "--set", item], capsys)
    assert_one_line_error(code, err, *names)
    assert_no_python(err)


def test_control_policy_into_a_closed_pipe_exits_0_quietly(tmp_path: Path):
    script = "import sys; from secpref_guard import cli; sys.exit(cli.main(sys.argv[1:]))"
    shell = f"{sys.executable} -c '{script}' control-policy --indent 2 | head -2"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 2


def test_control_policy_guard_account_without_guard_role_is_refused(capsys):
    code, out, err = run(["control-policy", "--guard-account", "1234567890123456"], capsys)
    assert_one_line_error(code, err, "--guard-account", "--guard-role")
    assert out == ""


def test_invoke_of_a_failing_handler_prints_one_line(drifted, baseline_env, capsys):
    drifted.ims.inject_fault("NoPermission", 403, action=SET)
    code, _, err = run(["invoke", "scheduled.handler", "events/timer.json"], capsys)
    assert_one_line_error(code, err, "NoPermission", "SetSecurityPreference")


def test_invoke_of_a_missing_event_file_names_the_file(compliant, baseline_env, capsys):
    code, _, err = run(["invoke", "scheduled.handler", "events/no-such.json"], capsys)
    assert_one_line_error(code, err, "events/no-such.json", "No such file")
    assert_no_python(err)


def test_nothing_listening_at_the_endpoint_is_one_short_line():
    from secpref_guard.client import ApiError, RetryPolicy
    from secpref_guard.credentials import Credentials
    from secpref_guard.ims import ImsClient

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client = ImsClient(
        f"http://127.0.0.1:{port}",
        Credentials("test-key-id", "test-key-secret"),
        retry=RetryPolicy(attempts=2, sleep=lambda seconds: None),
    )
    with pytest.raises(ApiError) as raised:
        client.get_security_preference()
    message = str(raised.value)
    assert f"cannot reach http://127.0.0.1:{port}: Connection refused" in message
    for noise in ("HTTPConnection", "object at 0x", "Max retries", "urllib3", "Caused by"):
        assert noise not in message, message
