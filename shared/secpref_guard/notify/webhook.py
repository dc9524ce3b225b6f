"""The generic webhook channel: an HTTPS endpoint that receives each report as JSON.

The body is render.render_webhook_body: the run's result document plus ``summary`` and
``guard``. The URL's query values (a token) are registered as secrets; logs show only
``scheme://host/...``.
"""

from __future__ import annotations

import json

import requests

from ..report import RunReport
from ..scrub import register_url_secrets, safe_destination
from .channel import DEFAULT_TIMEOUT_SECONDS, USER_AGENT, http_failure
from .render import render_webhook_body


class WebhookChannel:
    """An HTTPS endpoint that receives the report as JSON."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()
        self.destination = safe_destination(url)
        register_url_secrets(url)

    def send(self, report: RunReport) -> str:
        response = self.session.post(
            self.url,
            data=json.dumps(render_webhook_body(report), ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
            timeout=self.timeout,
        )
        if not 200 <= response.status_code < 300:
            raise http_failure(response.status_code, response.reason)
        return f"HTTP {response.status_code}"
