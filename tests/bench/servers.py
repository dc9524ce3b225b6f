"""The services a built guard talks to, in a process of their own, over loopback HTTP (for the
deployed-path benchmark and tests/test_build.py; not a test itself).

Serves, each on a free port, until stdin closes:
- the emulator of a Resource Directory (``emulator.resourcemanager.organisation``): the
  management account, where the guard runs with its function role's temporary key, and member
  accounts with the member-access role; IMS, STS, Resource Manager and Function Compute;
- the fake OSS of tests/fake_oss.py (path-style requests, OSS V4 signatures and the STS token
  checked), holding the revert-budget bucket, so the budget's requests are real round trips;
- an unsigned control door under ``/_bench/`` on the emulator's port: ``GET calls`` (every API
  request so far: action, account, parameters), ``POST compliant`` and ``POST drifted`` (an
  account, ``?account=`` or the management account, put on the baseline of this process's
  environment, the guard's own configuration, or drifted from it, its budget objects removed;
  no request recorded), the worker function ``secpref-guard-worker`` (invocations recorded
  under ``calls``, not run), ``POST sink/<name>`` (a notification channel's receiver: answers as a
  DingTalk robot does) and ``GET sink`` (what the channels received).

The first stdout line is ``ready`` and a JSON object: the endpoints, the guard's key (id,
secret, token), the management account and the members.

    python servers.py BUDGET_BUCKET [MEMBERS]
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: fake_oss

from fake_oss import FakeOss, OssBackend
from secpref_guard.config import load_config
from secpref_guard.emulator import BackgroundServer
from secpref_guard.emulator.resourcemanager import Organisation, organisation

# Someone loosened the account in the console: the same drift as the rest of the benchmark.
DRIFT = {
    "AllowUserToManageAccessKeys": "true",
    "EnableSaveMFATicket": "true",
    "LoginSessionDuration": "24",
    "MFAOperationForLogin": "independent",
}

CONTROL = "/_bench/"


def control_route(org: Organisation, fake: FakeOss, bucket: str) -> Any:
    """The benchmark's and the build test's door: calls so far, known states, a sink."""
    emulator = org.emulator
    baseline = load_config().baseline  # the guard's own configuration, from this environment
    received: list[dict[str, Any]] = []

    def reply(document: Any) -> Any:
        return 200, {"Content-Type": "application/json"}, json.dumps(document).encode()

    def route(method: str, url: str, headers: Any, body: bytes | str | None) -> Any:
        parts = urlsplit(url)
        if not parts.path.startswith(CONTROL):  # every other request: signed, or rejected
            return None
        what = parts.path[len(CONTROL) :]
        account = dict(parse_qsl(parts.query)).get("account", org.management_account)
        if method == "GET" and what == "calls":
            return reply(
                [
                    {"action": c.action, "account": c.account, "params": c.params}
                    for c in emulator.ims.calls
                ]
            )
        if method == "POST" and what in ("compliant", "drifted"):
            emulator.ims.put(account, **baseline)
            if what == "drifted":
                emulator.ims.put(account, **DRIFT)
                fake.backend = OssBackend(bucket)  # every drifted run is the window's first revert
            return reply({})
        if method == "POST" and what.startswith("sink/"):
            text = body.decode() if isinstance(body, bytes) else body or ""
            received.append({"name": what[len("sink/") :], "body": text})
            return reply({"errcode": 0, "errmsg": "ok"})
        if method == "GET" and what == "sink":
            return reply(received)
        return 404, {"Content-Type": "application/json"}, b'{"Code": "NotFound"}'

    return route


def oss_server(
    bucket: str, keys: dict[str, tuple[str, str | None]]
) -> tuple[ThreadingHTTPServer, FakeOss]:
    """The fake OSS on a free loopback port; its endpoint (which the fake must know to parse
    requests) is that port's address."""
    fakes: list[FakeOss] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake = fakes[0]
            status, headers, payload = fake.handle(
                self.command, fake.endpoint + self.path, dict(self.headers), body
            )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_HEAD = _serve

        def log_message(self, format: str, *args: object) -> None:
            return  # request lines carry signatures

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    fakes.append(FakeOss(OssBackend(bucket), f"http://{host}:{port}", keys=keys))
    return server, fakes[0]


def main() -> None:
    bucket = sys.argv[1]
    org = organisation(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    # The fan-out's worker function: its invocations are recorded, not run (no handler).
    org.fc.add_function(org.management_account, "secpref-guard-worker")
    key_id, secret, token = org.guard_key
    oss, fake = oss_server(bucket, {key_id: (secret, token)})
    org.emulator.routes.insert(0, control_route(org, fake, bucket))
    with BackgroundServer(org.emulator) as ims:
        threading.Thread(target=oss.serve_forever, daemon=True).start()
        ready = {
            "ims": ims.endpoint,
            "oss": fake.endpoint,
            "key": [key_id, secret, token],
            "account": org.management_account,
            "members": org.members,
        }
        print("ready", json.dumps(ready), flush=True)
        sys.stdin.read()  # until the parent closes the pipe
        oss.shutdown()


if __name__ == "__main__":
    main()
