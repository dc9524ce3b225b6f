"""What every channel is: the protocol a channel implements, its result, its one error.

A channel delivers one ``RunReport`` to one destination and says how it went; the notifier
(notifier.py) calls it and never lets what it raises reach the caller. Channels: dingtalk.py,
webhook.py, eventbridge.py; a new one is one file that follows ``Channel``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from .. import __version__
from ..report import RunReport
from ..scrub import error_text

GUARD_NAME = "secpref-guard"
USER_AGENT = f"{GUARD_NAME}/{__version__}"
DEFAULT_TIMEOUT_SECONDS = 3.0

Clock = Callable[[], float]  # seconds since the epoch, like time.time
ChannelOutcome = Literal["sent", "failed", "deduplicated"]


@dataclass(frozen=True)
class ChannelResult:
    """What happened to one report on one channel."""

    channel: str  # "dingtalk" | "webhook" | "eventbridge"
    outcome: ChannelOutcome
    detail: str = ""  # the service's answer or why it failed; never carries a secret

    def as_dict(self) -> dict[str, str]:
        return {"channel": self.channel, "outcome": self.outcome, "detail": self.detail}


class DeliveryError(Exception):
    """A channel could not deliver; the message names the cause and is safe to log."""


class Channel(Protocol):
    name: str
    destination: str  # where it sends, with every token removed: for logs

    def send(self, report: RunReport) -> str:
        """Deliver the report; return a short detail (e.g. a request id) or raise."""
        ...


def http_failure(status: int, reason: str | None) -> DeliveryError:
    """An HTTP status that is not success, as a delivery error."""
    return DeliveryError(f"HTTP {status} {error_text(reason or '')}".strip())
