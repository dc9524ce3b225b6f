"""Network front door: the emulator over HTTP, for the ``emulator`` command and the demo."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .responses import Emulator


def make_server(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 8765
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "secpref-guard-emulator"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, payload = emulator.handle(
                self.command, self.path, dict(self.headers), body
            )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            # Request lines carry signatures and tokens in their query: never printed.
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


class BackgroundServer:
    """The HTTP emulator on a free loopback port in a thread (tests, benchmark, demo)."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self._server = make_server(emulator, host, port)
        self.host, self.port = self._server.server_address[:2]
        # a short poll: shutdown() waits for the loop to look, 0.5 s by default (per test)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
