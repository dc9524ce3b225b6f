"""`make build` produces code that runs in Function Compute's Python runtime: the handler files at
its root, the library, and pinned dependencies for manylinux x86_64 / CPython 3.10. A clean
interpreter with nothing installed imports both handlers from it and enforces a baseline."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from secpref_guard.emulator import DEFAULT_ACCOUNT, BackgroundServer, Emulator

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "build" / "code"
PINS = ROOT / "functions" / "requirements.txt"


def pins() -> dict[str, str]:
    result = {}
    for line in PINS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r} in {PINS.name} is not pinned with =="
            result[canonicalize_name(name)] = version
    return result


def test_pins_satisfy_the_package_dependencies() -> None:
    pinned = pins()
    runtime = [Requirement(r) for r in requires("secpref-guard") or [] if "extra ==" not in r]
    assert runtime
    for requirement in runtime:
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is a dependency but not pinned in {PINS.name}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{requirement.name}=={pinned[name]} does not satisfy {requirement.specifier}"
        )


@pytest.fixture(scope="module")
def built() -> Path:
    completed = subprocess.run(
        ["make", "build"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return CODE


def test_build_has_handlers_at_its_root_and_no_test_tooling(built: Path) -> None:
    assert (built / "scheduled.py").is_file()
    assert (built / "audit_event.py").is_file()
    assert (built / "secpref_guard" / "engine.py").is_file()
    assert not (built / "secpref_guard" / "emulator").exists()
    installed = {canonicalize_name(p.name.split("-")[0]) for p in built.glob("*.dist-info")}
    assert set(pins()) <= installed, set(pins()) - installed
    binaries = [p.name for p in built.rglob("*.so")]
    assert binaries
    assert all("cpython-310-x86_64-linux-gnu" in b or "abi3" in b for b in binaries), binaries


RUNTIME_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])

    import audit_event
    import scheduled

    class Credentials:
        access_key_id = "test-key-id"
        access_key_secret = "test-key-secret"
        security_token = None

    class Function:
        name = "secpref-guard-scheduled"

    class Context:
        request_id = "clean-runtime"
        account_id = sys.argv[2]
        credentials = Credentials()
        function = Function()

    result = json.loads(scheduled.handler(b'{"triggerName": "every-5-minutes"}', Context()))
    skipped = json.loads(audit_event.handler(b'{"eventName": "CreateUser"}', Context()))
    leaked = [m for m in ("responses", "pytest", "yaml") if m in sys.modules]
    print(json.dumps({"status": result["status"], "calls": result["api_calls"],
                      "skipped": skipped["status"], "leaked": leaked}))
    """
)


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 10) or platform.machine() != "x86_64",
    reason="the build targets CPython 3.10 on x86_64, the Function Compute runtime",
)
def test_clean_interpreter_runs_both_handlers_from_the_build(built: Path, tmp_path: Path) -> None:
    clean = tmp_path / "runtime"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(clean)], check=True, timeout=120
    )
    emulator = Emulator.with_default_key()
    emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GUARD_IMS_ENDPOINT": "",
        "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
    }
    with BackgroundServer(emulator) as server:
        env["GUARD_IMS_ENDPOINT"] = server.endpoint
        completed = subprocess.run(
            [
                str(clean / "bin" / "python"),
                "-I",
                "-c",
                RUNTIME_SCRIPT,
                str(built),
                DEFAULT_ACCOUNT,
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome == {"status": "reverted", "calls": 3, "skipped": "skipped", "leaked": []}
    assert emulator.ims.state(DEFAULT_ACCOUNT)["AllowUserToManageAccessKeys"] is False
