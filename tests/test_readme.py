"""The README's promises: its two commands come first, `make demo` works end to end, every `sh`
example runs as written against the examples' emulator, the outputs it shows are the code's,
and the files it lists are the files there are."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OURS = ("BASELINE_", "GUARD_", "ALIBABA_CLOUD_", "ALIYUN_")


def test_readme_starts_with_the_demo_and_test_commands() -> None:
    head = README.read_text().splitlines()[:20]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _clean_environment() -> dict[str, str]:
    """The caller's environment without a single guard variable: the README sets its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith(OURS)}


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


@pytest.mark.slow
def test_make_demo_on_a_taken_port_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = subprocess.run(
            ["make", "--no-print-directory", "demo", f"DEMO_PORT={port}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert completed.returncode != 0
    # make's own "make[1]: *** [Makefile:N: demo] Error 1" aside, the demo says one thing
    said = [
        line
        for line in completed.stderr.splitlines()
        if not re.match(r"make(\[\d+\])?: \*\*\*", line)
    ]
    assert said == [
        f"secpref-guard: error: cannot serve on 127.0.0.1:{port}: Address already in use (is "
        "another emulator running there? stop it, or run make demo DEMO_PORT=<another port>)"
    ], completed.stderr


def test_the_baseline_table_is_the_field_tables() -> None:
    """Every field of every setting is documented as the code has it (regenerate with
    `python tests/readme_tables.py --write`)."""
    from readme_tables import baseline_table, current_block

    assert current_block(README.read_text()) == baseline_table()


# --- the outputs the README shows are the code's ---------------------------------------------


def test_the_result_and_check_examples_are_what_the_code_prints() -> None:
    """Regenerate with `python tests/readme_examples.py --write` when this fails."""
    from readme_examples import stale

    assert stale(README.read_text(encoding="utf-8")) == []


def test_the_check_example_is_the_cli_of_check() -> None:
    """What the issue asked to be true of it: `self` when the id was not looked up, and "would
    revert" for what enforce would revert; exit 2."""
    from readme_examples import block, check_output

    status, out = check_output()
    assert status == 2
    assert out.startswith("account self (check): drift in 7 of 8 baseline fields\n")
    assert out.count("would revert") == 7
    assert "dry-run" not in out
    assert block(README.read_text(encoding="utf-8"), "check") == out


def test_the_worker_sample_is_what_the_scheduled_function_sends() -> None:
    from readme_examples import WORKER_BATCH, worker_batch
    from secpref_guard.batch import make_batches, parse_batch

    sent = WORKER_BATCH.read_bytes()
    batch = parse_batch(sent)
    assert batch.accounts == ("1234567890123456", "2345678901234567")
    assert make_batches(list(batch.accounts), run_id=batch.run_id)[0].payload() == sent
    assert worker_batch() == sent


def test_the_worker_accepts_its_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker, loaded as Function Compute loads it, runs the sample batch: the own account
    is enforced, the other one is out of scope under GUARD_TARGETS=self."""
    from readme_examples import ENDPOINT, KEY, WORKER_BATCH
    from secpref_guard import handlers
    from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator
    from secpref_guard.emulator.mock import mock_endpoint
    from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler

    for name in [n for n in os.environ if n.startswith(OURS)]:
        monkeypatch.delenv(name)
    for name, value in {
        **KEY,
        "GUARD_IMS_ENDPOINT": ENDPOINT,
        "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
    }.items():
        monkeypatch.setenv(name, value)
    context = LocalContext(
        request_id="req-worker",
        function=LocalFunction("secpref-guard-worker", "worker.handler"),
        credentials=LocalCredentials("test-key-id", "test-key-secret"),
        account_id=DEFAULT_ACCOUNT,
    )
    worker = load_handler("worker.handler", ROOT / "functions")
    handlers.reset_instance()
    with mock_endpoint(Emulator.with_default_key(), ENDPOINT) as emulator:
        emulator.ims.put(DEFAULT_ACCOUNT, AllowUserToManageAccessKeys="true")
        document = json.loads(worker(WORKER_BATCH.read_bytes(), context))
        assert emulator.ims.state(DEFAULT_ACCOUNT)["AllowUserToManageAccessKeys"] is False
    handlers.reset_instance()
    assert document["status"] == "reverted"
    assert document["trigger"] == {"type": "worker", "id": "5f0c9d3a7b2e4c18"}
    assert document["counts"]["reverted"] == 1
    assert [(s["account"], "GUARD_TARGETS=self" in s["reason"]) for s in document["skipped"]] == [
        ("2345678901234567", True)
    ]


# --- every sh example runs as written ----------------------------------------------------------


def test_every_sh_example_runs_as_written(tmp_path: Path) -> None:
    """The README's sh blocks in order, in one shell, against the examples' emulator on a free
    port (the endpoints' port is the one thing changed), each command exiting as its comment
    says; the working directory is a copy of the checkout's layout, so written files stay out
    of the repository."""
    from readme_commands import on_port, runnable, script

    emulator_command, run = runnable(README.read_text(encoding="utf-8"))
    assert len(run) >= 10
    venv = Path(sys.prefix)
    assert (venv / "bin" / "secpref-guard").exists(), "run the suite from its venv (make test)"
    work = tmp_path / "checkout"
    work.mkdir()
    (work / ".venv").symlink_to(venv)
    for name in ("events", "functions"):
        (work / name).symlink_to(ROOT / name)
    results = tmp_path / "results"
    results.mkdir()
    port = _free_port()
    env = _clean_environment()
    emulator = subprocess.Popen(
        ["bash", "-c", f"exec {emulator_command} --port {port}"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        ready, _, _ = select.select([emulator.stdout], [], [], 60)
        started = emulator.stdout.readline() if ready else "(nothing within 60 s)"
        assert f"serving http://127.0.0.1:{port}" in started, started
        (tmp_path / "examples.sh").write_text(script(run, port, str(results)))
        subprocess.run(
            ["bash", str(tmp_path / "examples.sh")], cwd=work, env=env, timeout=300, check=True
        )
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)

    failures = []
    for n, command in enumerate(run):
        status = int((results / f"{n}.rc").read_text())
        out = (results / f"{n}.out").read_text()
        err = (results / f"{n}.err").read_text()
        where = f"block {command.block}, `{on_port(command.first_line, port)}`"
        if status != command.exit_status:
            failures.append(f"{where}: exit {status}, the README says {command.exit_status}: {err}")
        elif command.status is not None:
            shown = json.loads(out).get("status")
            if shown != command.status:
                failures.append(f"{where}: status {shown!r}, the README says {command.status!r}")
        elif err.strip() and status == 0:
            failures.append(f"{where}: wrote to stderr: {err}")
    assert not failures, "\n".join(failures)
    assert (work / "report.html").stat().st_size > 0  # the report example wrote its files
    assert json.loads((work / "report.ocsf.json").read_text())


def test_the_runner_reads_the_comments_it_is_given() -> None:
    """The parts of the runner that decide what a command must do."""
    from readme_commands import commands, expectation, marker

    block = (
        "# a comment line\n"
        "export A=1 \\\n    B=2\n"
        "X='[1,\n  2]' \\\n    cmd   # exit 2: drift\n"
        "cmd invoke x   # reverted: five fields\n"
    )
    found = commands(block)
    assert found == [
        "export A=1 \\\n    B=2",
        "X='[1,\n  2]' \\\n    cmd   # exit 2: drift",
        "cmd invoke x   # reverted: five fields",
    ]
    assert [(c.exit_status, c.status) for c in (expectation(1, f) for f in found)] == [
        (0, None),
        (2, None),
        (0, "reverted"),
    ]
    assert marker("# needs an Alibaba Cloud account\ns deploy\n") is not None
    assert marker("make build\n") is None


# --- the files the README lists are the files ---------------------------------------------------


def _development_tree() -> str:
    section = README.read_text(encoding="utf-8").split("## Development\n", 1)[1]
    return section.split("```\n", 1)[1].split("```", 1)[0]


def test_the_development_tree_names_every_file() -> None:
    tree = _development_tree()
    named = set(re.findall(r"[\w.-]+(?:\.py|\.txt|\.yml|/)", tree))
    missing = []
    for path in sorted((ROOT / "functions").iterdir()):
        if path.name != "__pycache__" and path.name not in named:
            missing.append(f"functions/{path.name}")
    library = ROOT / "shared" / "secpref_guard"
    for path in sorted(library.rglob("*")):
        if "__pycache__" in path.parts or path.name == "__init__.py":
            continue
        name = path.name + ("/" if path.is_dir() else "")
        if (path.suffix == ".py" or path.is_dir()) and name not in named:
            missing.append(str(path.relative_to(library)))
    starts = {line.split()[0] for line in tree.splitlines() if line and not line[0].isspace()}
    for top in [ROOT, ROOT / "shared"]:
        for path in sorted(top.iterdir()):
            if not path.is_dir() or path.name.startswith(".") or path.name.endswith("egg-info"):
                continue
            if path.name in ("__pycache__", "build") or path == ROOT / "shared":
                continue
            if f"{path.relative_to(ROOT)}/" not in starts:
                missing.append(f"{path.relative_to(ROOT)}/")
    assert not missing, f"the README's Development tree does not name {missing}"


def test_the_readme_says_three_functions_as_the_template_does() -> None:
    import yaml

    template = yaml.safe_load((ROOT / "template.yml").read_text())
    handlers = sorted(
        r["props"]["handler"] for r in template["resources"].values() if r["component"] == "fc3"
    )
    assert handlers == ["audit_event.handler", "scheduled.handler", "worker.handler"]
    text = README.read_text(encoding="utf-8")
    assert "three Alibaba Cloud Function Compute functions" in text
    assert not re.search(r"\b(two|both) (Function Compute )?functions\b", text, re.I)
    for handler in handlers:
        assert f"`{handler}`" in text
    events = sorted(p.name for p in (ROOT / "events").glob("*.json"))
    try_section = text.split("## Try every event locally\n", 1)[1].split("\n## ", 1)[0]
    assert [e for e in events if f"`{e}`" not in try_section] == []
    assert [e for e in events if f"events/{e}" not in try_section] == []


def test_every_variable_the_guard_reads_is_documented() -> None:
    """A variable the configuration knows (and so accepts) has its own `NAME` in the README."""
    from secpref_guard.config import known_variables

    text = README.read_text(encoding="utf-8")
    assert sorted(v for v in known_variables() if f"`{v}`" not in text) == []
