"""The DingTalk custom robot channel: a markdown message, signed when the robot has a secret.

Facts (DingTalk's custom-robot documentation, "custom robot access" / 加签):
- signing: ``sign = urlencode(base64(HMAC-SHA256(key=secret, msg=timestamp_ms + "\\n" +
  secret)))`` appended to the robot URL as ``&timestamp=...&sign=...``; the timestamp must be
  within an hour of DingTalk's clock;
- the robot answers HTTP 200 with ``{"errcode": 0}`` on success and a non-zero ``errcode``
  (e.g. 310000 "sign not match") on failure;
- the message is ``{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}``.
The robot URL's ``access_token`` and the secret are registered as secrets: no log line shows
them, nor any signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import quote_plus, urlsplit

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

from ..logs import register_secret
from ..report import RunReport
from ..scrub import error_text, register_url_secrets, safe_destination
from .channel import DEFAULT_TIMEOUT_SECONDS, USER_AGENT, Clock, DeliveryError, http_failure
from .render import render_markdown, render_title


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret)), not yet URL-encoded."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


class _Answer(BaseModel):
    """The robot's answer: ``errcode`` 0 is success."""

    model_config = ConfigDict(extra="ignore")

    errcode: int
    errmsg: str = ""


class DingTalkChannel:
    """A DingTalk custom robot: markdown messages, signed when the robot has a secret."""

    name = "dingtalk"

    def __init__(
        self,
        webhook: str,
        secret: str | None = None,
        *,
        clock: Clock = time.time,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
    ) -> None:
        self.webhook = webhook
        self.secret = secret or None
        self.clock = clock
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()
        self.destination = safe_destination(webhook)
        register_url_secrets(webhook)
        register_secret(self.secret)

    def signed_url(self) -> str:
        if not self.secret:
            return self.webhook
        timestamp = str(int(self.clock() * 1000))
        sign = dingtalk_sign(self.secret, timestamp)
        register_secret(sign)
        separator = "&" if urlsplit(self.webhook).query else "?"
        return f"{self.webhook}{separator}timestamp={timestamp}&sign={quote_plus(sign)}"

    def message(self, report: RunReport) -> dict[str, Any]:
        return {
            "msgtype": "markdown",
            "markdown": {"title": render_title(report), "text": render_markdown(report)},
        }

    def send(self, report: RunReport) -> str:
        response = self.session.post(
            self.signed_url(),
            data=json.dumps(self.message(report), ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
            timeout=self.timeout,
        )
        if response.status_code != 200:
            raise http_failure(response.status_code, response.reason)
        try:
            body = response.json()
        except ValueError:
            raise DeliveryError("DingTalk answered HTTP 200 with a body that is not JSON") from None
        try:
            answer = _Answer.model_validate(body)
        except ValidationError:
            raise DeliveryError("DingTalk answered without an errcode") from None
        if answer.errcode != 0:
            raise DeliveryError(f"DingTalk errcode {answer.errcode}: {error_text(answer.errmsg)}")
        return "errcode 0"
