"""The README's official-SDK example runs, as written there, against `secpref-guard emulator`."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- official-sdk-example -->"
SCRIPT = Path(sys.executable).with_name("secpref-guard")


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    assert MARKER in text, "the README lost its official SDK example"
    after = text.split(MARKER, 1)[1]
    match = re.match(r"\s*```python\n(.*?)\n```", after, re.DOTALL)
    assert match is not None, "the marker must be followed by a python code block"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_example_changes_only_endpoint_and_protocol_from_a_live_script() -> None:
    code = readme_example()
    assert 'endpoint="127.0.0.1:8765"' in code
    assert 'protocol="http"' in code
    # credentials come from the environment, as in production; no emulator import
    assert "secpref_guard" not in code
    assert "test-key" not in code


@pytest.mark.slow
def test_the_readme_example_runs_against_the_emulator_command() -> None:
    port = free_port()
    code = readme_example().replace("127.0.0.1:8765", f"127.0.0.1:{port}")
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-key-id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "test-key-secret",
    }
    emulator = subprocess.Popen(
        [str(SCRIPT), "emulator", "--port", str(port), "--json", "--set", "LoginSessionDuration=6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert emulator.stdout is not None
        first = emulator.stdout.readline()
        assert json.loads(first)["status"] == "serving", first + emulator.stderr.read()
        completed = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.splitlines() == [
        "login session hours: 6",
        "minimum password length: 14",
    ]
