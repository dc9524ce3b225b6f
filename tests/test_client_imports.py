"""What the IMS client imports and builds, and when (issue 13: a cold start pays for each import).

- importing the client module imports no SDK; a successful call imports neither the retry
  machinery (tenacity) nor ``cryptography`` (the SDK's RSA signer, which the guard never uses),
  and neither does oss2's import of the SDK;
- a failure that is retried brings tenacity in and is retried as before;
- every RpcClient of a thread shares one AcsClient (one endpoint-data parse, one HTTP session),
  and each call is still signed with its own client's key; another thread has its own.

The import checks run in a fresh interpreter against the emulator served over loopback HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

from secpref_guard.client import RetryPolicy, RpcClient
from secpref_guard.credentials import Credentials
from secpref_guard.emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT,
    BackgroundServer,
    Emulator,
)
from secpref_guard.emulator.mock import DEFAULT_ENDPOINT
from secpref_guard.ims import ImsClient

OTHER_KEY = ("other-account-key", "other-account-secret", "1000000000000777")

CHILD = textwrap.dedent(
    """
    import json, sys
    from secpref_guard.client import RetryPolicy
    from secpref_guard.ims import ImsClient
    from secpref_guard.credentials import Credentials

    seen = {"after_import": sorted(m for m in ("aliyunsdkcore", "tenacity", "cryptography")
                                   if m in sys.modules)}
    client = ImsClient(sys.argv[1], Credentials(sys.argv[2], sys.argv[3]),
                       retry=RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.01))
    client.get_security_preference()
    seen["after_call"] = sorted(m for m in ("tenacity", "cryptography") if m in sys.modules)
    seen["calls"] = client.log.calls
    try:
        client.get_security_preference()
    except Exception as exc:
        seen["error"] = str(exc)
    seen["after_failure"] = sorted(m for m in ("tenacity", "cryptography") if m in sys.modules)
    seen["calls_after_failure"] = client.log.calls
    print(json.dumps(seen))
    """
)


def test_a_successful_call_imports_no_retry_machinery_and_no_rsa_signer() -> None:
    emulator = Emulator.with_default_key()
    with BackgroundServer(emulator) as server:
        original = emulator.handle
        answered = 0

        def first_then_throttle(*args: object, **kwargs: object) -> object:
            nonlocal answered
            answered += 1
            if answered > 1:  # every call after the first one: throttled, retried
                return (
                    503,
                    {"Content-Type": "application/json"},
                    json.dumps(
                        {"Code": "ServiceUnavailable", "Message": "busy", "RequestId": "R"}
                    ).encode(),
                )
            return original(*args, **kwargs)

        emulator.handle = first_then_throttle  # type: ignore[method-assign]
        completed = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                server.endpoint,
                DEFAULT_ACCESS_KEY_ID,
                DEFAULT_ACCESS_KEY_SECRET,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen["after_import"] == []
    assert seen["after_call"] == []
    assert seen["calls"] == 1
    assert "ServiceUnavailable" in seen["error"]
    assert "after 3 attempts" in seen["error"]
    assert seen["after_failure"] == ["tenacity"]
    assert seen["calls_after_failure"] == 4


def test_the_sdk_imported_by_oss2_first_does_not_import_cryptography_either() -> None:
    """The budget's oss2 imports the SDK too, and may be first (the CLI imports it before any
    client is made): the lazy RSA signer module holds whoever imports the SDK."""
    script = (
        "import sys; import secpref_guard.client; import oss2; import aliyunsdkcore.client; "
        "print('cryptography' in sys.modules, 'aliyunsdkcore' in sys.modules)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["False", "True"]


def test_the_rsa_signer_module_still_loads_when_used() -> None:
    RpcClient(DEFAULT_ENDPOINT, "2019-08-15", Credentials("k", "s"))
    from aliyunsdkcore.auth.algorithm import sha_hmac256

    assert sha_hmac256.get_signer_name() == "SHA256withRSA"
    assert "cryptography" in sys.modules


def test_clients_of_one_thread_share_one_sdk_client_and_sign_with_their_own_key(
    emulator: Emulator,
) -> None:
    emulator.add_key(*OTHER_KEY)
    emulator.ims.put(OTHER_KEY[2], LoginSessionDuration=3)
    emulator.ims.put(DEFAULT_ACCOUNT, LoginSessionDuration=7)
    policy = RetryPolicy(attempts=1)
    own = ImsClient(
        DEFAULT_ENDPOINT,
        Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET),
        retry=policy,
    )
    other = ImsClient(DEFAULT_ENDPOINT, Credentials(*OTHER_KEY[:2]), retry=policy)

    assert own.rpc._acs is other.rpc._acs
    for _ in range(2):  # interleaved: the shared client never keeps the previous key
        assert own.get_security_preference().values["LoginSessionDuration"] == 7
        assert other.get_security_preference().values["LoginSessionDuration"] == 3
    assert [c.account for c in emulator.ims.calls] == [DEFAULT_ACCOUNT, OTHER_KEY[2]] * 2

    elsewhere: list[object] = []
    thread = threading.Thread(target=lambda: elsewhere.append(own.rpc._acs))
    thread.start()
    thread.join()
    assert elsewhere
    assert elsewhere[0] is not own.rpc._acs


TIMER_CHILD = textwrap.dedent(
    """
    import json, os, sys
    from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler
    from pathlib import Path

    handler = load_handler("scheduled.handler", Path(sys.argv[2]))
    context = LocalContext("req", LocalFunction("f", "scheduled.handler"),
                           LocalCredentials(sys.argv[3], sys.argv[4]), account_id=sys.argv[5])
    result = json.loads(handler(b"{}", context))
    print(json.dumps({"status": result["status"],
                      "loaded": sorted(m for m in ("oss2", "requests") if m in sys.modules)}))
    """
)


def test_a_compliant_timer_run_with_a_budget_never_imports_the_budget_store(tmp_path) -> None:
    """The revert budget is consulted only before a write: a compliant run (most of them)
    imports neither oss2 nor the requests library it brings."""
    from pathlib import Path

    emulator = Emulator.with_default_key()
    emulator.ims.put(DEFAULT_ACCOUNT, LoginSessionDuration=4)
    functions = Path(__file__).resolve().parents[1] / "functions"
    with BackgroundServer(emulator) as server:
        env = {
            "PATH": "/usr/bin:/bin",
            "GUARD_IMS_ENDPOINT": server.endpoint,
            "BASELINE_LOGIN_SESSION_DURATION": "4",
            "GUARD_BUDGET_BUCKET": "secpref-guard-budget-1",
            "GUARD_MAX_REVERTS": "3",
        }
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                TIMER_CHILD,
                "x",
                str(functions),
                DEFAULT_ACCESS_KEY_ID,
                DEFAULT_ACCESS_KEY_SECRET,
                DEFAULT_ACCOUNT,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"status": "compliant", "loaded": []}
