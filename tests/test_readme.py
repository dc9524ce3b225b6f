"""The README's promises: its two commands come first, and `make demo` works end to end."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_starts_with_the_demo_and_test_commands() -> None:
    head = (ROOT / "README.md").read_text().splitlines()[:20]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_make_demo_finds_reverts_and_verifies_drift() -> None:
    completed = subprocess.run(
        ["make", "demo", f"DEMO_PORT={_free_port()}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    # both settings drifted; the stricter minimum length (20 against 14) is not drift
    assert "drift in 7 of 8 baseline fields" in out
    assert "reverted 7 field(s); verified with a fresh read" in out
    assert "compliant: all 8 baseline fields are at least as strict" in out
    assert ",password-policy,MinimumPasswordLength,20,14,at least 14,compliant," in out
    assert "demo finished" in out


def test_the_baseline_table_is_the_field_tables() -> None:
    """Every field of every setting is documented as the code has it (regenerate with
    `python tests/readme_tables.py --write`)."""
    from readme_tables import README, baseline_table, current_block

    assert current_block(README.read_text()) == baseline_table()
