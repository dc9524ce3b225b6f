"""The README's example outputs and the worker's sample event, produced by the code itself so
they cannot drift from it: a handler's result document, `secpref-guard check`'s table, and
`events/worker-batch.json` (what the scheduled function sends the worker).

    python tests/readme_examples.py           # exit 1 and show the difference when stale
    python tests/readme_examples.py --write   # rewrite the README's blocks and the event file

A result document carries values that differ on every run (request ids, the run id,
durations): `--write` puts a real run's values in the README and `normalised` blanks them on
both sides before the test compares.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from secpref_guard.batch import make_batches
from secpref_guard.emulator import DEFAULT_ACCOUNT, Emulator
from secpref_guard.emulator.mock import mock_endpoint

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EVENTS = ROOT / "events"
WORKER_BATCH = EVENTS / "worker-batch.json"
ENDPOINT = "http://127.0.0.1:8765"
KEY = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "test-key-id",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "test-key-secret",
}

# `make demo`'s emulator (its --set flags) and baseline, as the README's examples use them
DEMO_STATE = {
    "AllowUserToManageAccessKeys": "true",
    "EnableSaveMFATicket": "true",
    "LoginNetworkMasks": "192.168.0.0/16",
    "LoginSessionDuration": "24",
    "MinimumPasswordLength": "20",
    "MaxLoginAttemps": "0",
}
DEMO_BASELINE = {
    "BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false",
    "BASELINE_ENABLE_SAVE_MFA_TICKET": "false",
    "BASELINE_MFA_OPERATION_FOR_LOGIN": "mandatory",
    "BASELINE_LOGIN_SESSION_DURATION": "4",
    "BASELINE_LOGIN_NETWORK_MASKS": "10.0.0.0/8;192.168.0.0/16",
    "BASELINE_PASSWORD_MINIMUM_LENGTH": "14",
    "BASELINE_PASSWORD_REQUIRE_SYMBOLS": "true",
    "BASELINE_PASSWORD_MAX_LOGIN_ATTEMPTS": "5",
}
# the worker sample: the own account of the emulator's key and a second account, in one batch
WORKER_ACCOUNTS = (DEFAULT_ACCOUNT, "2345678901234567")
WORKER_RUN_ID = "5f0c9d3a7b2e4c18"

VOLATILE = ("request_ids", "run_id", "duration_ms")
_OURS = ("BASELINE_", "GUARD_", "ALIBABA_CLOUD_", "ALIYUN_")


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Exactly these guard variables for the block (none of the caller's), then restored."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith(_OURS)]:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def worker_batch() -> bytes:
    """What the scheduled function sends the worker for these accounts (one batch)."""
    (batch,) = make_batches(list(WORKER_ACCOUNTS), run_id=WORKER_RUN_ID)
    return batch.payload()


def audit_event_run(
    state: Mapping[str, str], baseline: Mapping[str, str]
) -> tuple[dict[str, Any], Any]:
    """The audit-event function, loaded as Function Compute loads it, on
    `events/set-by-ram-user.json` against the emulator's account in ``state``: its result
    document and the run report its notification channels were handed."""
    from secpref_guard import handlers
    from secpref_guard.local import LocalContext, LocalCredentials, LocalFunction, load_handler

    variables = {
        **KEY,
        "GUARD_IMS_ENDPOINT": ENDPOINT,
        "GUARD_SELF_ROLE": "secpref-guard-role",
        "GUARD_LOG_LEVEL": "ERROR",  # the function's log lines are not the example
        **baseline,
    }
    context = LocalContext(
        request_id="c0ffee00-0000-4000-8000-000000000001",
        function=LocalFunction("secpref-guard-audit-event", "audit_event.handler"),
        credentials=LocalCredentials("test-key-id", "test-key-secret"),
        account_id=DEFAULT_ACCOUNT,
    )
    handler = load_handler("audit_event.handler", ROOT / "functions")
    notified: list[Any] = []
    channels = handlers.notify
    handlers.notify = lambda config, context, report: notified.append(report)
    try:
        with environment(variables), mock_endpoint(Emulator.with_default_key(), ENDPOINT) as emu:
            emu.ims.put(DEFAULT_ACCOUNT, **state)
            handlers.reset_instance()
            document = json.loads(handler((EVENTS / "set-by-ram-user.json").read_bytes(), context))
    finally:
        handlers.notify = channels
        handlers.reset_instance()
    (report,) = notified
    return document, report


def result_document() -> dict[str, Any]:
    """The result for the event when the account lets RAM users manage their AccessKeys and
    the baseline is that one field."""
    document, _ = audit_event_run(
        {"AllowUserToManageAccessKeys": "true"},
        {"BASELINE_ALLOW_USER_TO_MANAGE_ACCESS_KEYS": "false"},
    )
    return document


def dingtalk_message() -> str:
    """The DingTalk text of the event's run when the console session was lengthened and the
    network masks narrowed, the masks being report-only."""
    from secpref_guard.notify.render import render_markdown

    _, report = audit_event_run(
        {"LoginSessionDuration": "24", "LoginNetworkMasks": "192.168.0.0/16"},
        {
            "BASELINE_LOGIN_SESSION_DURATION": "4",
            "BASELINE_LOGIN_NETWORK_MASKS": "10.0.0.0/8;192.168.0.0/16",
            "GUARD_REPORT_ONLY_FIELDS": "LoginNetworkMasks",
        },
    )
    return str(render_markdown(report)) + "\n"


def check_output() -> tuple[int, str]:
    """`secpref-guard check` against `make demo`'s emulator and baseline: exit status, stdout."""
    from secpref_guard import cli

    out = io.StringIO()
    variables = {**KEY, "GUARD_IMS_ENDPOINT": ENDPOINT, **DEMO_BASELINE}
    with environment(variables), mock_endpoint(Emulator.with_default_key(), ENDPOINT) as emulator:
        emulator.ims.put(DEFAULT_ACCOUNT, **DEMO_STATE)
        with contextlib.redirect_stdout(out):
            status = cli.main(["check"])
    return status, out.getvalue()


def normalised(value: Any) -> Any:
    """The document with what changes on every run blanked (request ids, run id, durations)."""
    if isinstance(value, dict):
        return {
            key: (_blank(item) if key in VOLATILE else normalised(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value


def _blank(value: Any) -> Any:
    if isinstance(value, list):
        return ["..."] * len(value)
    return "..."


# --- the README's generated blocks -----------------------------------------------------------


def begin(name: str) -> str:
    return f"<!-- example {name}: generated by tests/readme_examples.py, do not edit by hand -->"


END = "<!-- end of the example -->"


def block(text: str, name: str) -> str:
    """The fenced block between an example's markers (without the fences)."""
    start = text.index(begin(name)) + len(begin(name))
    inner = text[start : text.index(END, start)].strip("\n")
    fence, _, rest = inner.partition("\n")
    assert fence.startswith("```"), name
    assert rest.endswith("```"), name
    return rest[: -len("```")]


def fresh_blocks() -> dict[str, tuple[str, str]]:
    """name -> (fence language, content) as the code produces them now."""
    _, check = check_output()
    return {
        "result": ("json", json.dumps(result_document(), indent=2) + "\n"),
        "check": ("text", check),
        "dingtalk": ("", dingtalk_message()),
    }


def stale(text: str) -> list[str]:
    """The README's examples that differ from the code's output (volatile values aside)."""
    fresh = fresh_blocks()
    names = []
    if normalised(json.loads(block(text, "result"))) != normalised(json.loads(fresh["result"][1])):
        names.append("result")
    names += [name for name in ("check", "dingtalk") if block(text, name) != fresh[name][1]]
    return names


def rewritten(text: str) -> str:
    for name, (language, content) in fresh_blocks().items():
        start = text.index(begin(name))
        end = text.index(END, start) + len(END)
        text = text[:start] + f"{begin(name)}\n```{language}\n{content}```\n{END}" + text[end:]
    return text


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    if "--write" in argv:
        README.write_text(rewritten(text), encoding="utf-8")
        WORKER_BATCH.write_bytes(worker_batch())
        return 0
    problems = stale(text)
    if problems:
        fresh = rewritten(text)
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), fresh.splitlines(True)))
    if WORKER_BATCH.read_bytes() != worker_batch():
        problems.append(str(WORKER_BATCH.relative_to(ROOT)))
    for name in problems:
        print(f"stale: {name}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
