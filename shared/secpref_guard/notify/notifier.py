"""The notifier: builds the configured channels from the settings, sends each notified run
report to every channel once per de-duplication window, and collects what happened.

Every channel has a short timeout; a channel that fails is logged and reported as ``failed``
but never raises to the caller, and never stops the other channels. A report already sent to a
channel within the window (policy.dedup_key, dedup.DedupWindow) is ``deduplicated``, so an
event burst does not flood a channel, and concurrent identical reports are sent once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import requests

from ..config import Settings
from ..credentials import Credentials
from ..logs import event
from ..report import RunReport
from ..scrub import error_text
from .channel import DEFAULT_TIMEOUT_SECONDS, Channel, ChannelResult, Clock, DeliveryError
from .dedup import DedupWindow
from .dingtalk import DingTalkChannel
from .eventbridge import EventBridgeChannel, EventBus
from .policy import dedup_key, should_notify
from .text import plain
from .webhook import WebhookChannel


class Notifier:
    """Sends each report to every channel, under the notification policy. Never raises."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        clock: Clock = time.time,
        window: DedupWindow | None = None,
    ) -> None:
        self.channels = list(channels)
        self.clock = clock
        self.window = window if window is not None else DedupWindow()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        credentials: Credentials | None = None,
        account_id: str | None = None,
        region: str | None = None,
        eventbridge_endpoint: str | None = None,
        clock: Clock = time.time,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        window: DedupWindow | None = None,
        session: requests.Session | None = None,
    ) -> Notifier:
        """The channels the settings configure. ``credentials`` sign PutEvents; ``account_id``
        and ``region`` (the function's, from its context) locate a bus given by name only."""
        channels: list[Channel] = []
        if settings.dingtalk_webhook:
            channels.append(
                DingTalkChannel(
                    settings.dingtalk_webhook,
                    settings.dingtalk_secret,
                    clock=clock,
                    timeout=timeout,
                    session=session,
                )
            )
        if settings.webhook_url:
            channels.append(WebhookChannel(settings.webhook_url, timeout=timeout, session=session))
        if settings.eventbridge_bus:
            try:
                bus = EventBus.parse(settings.eventbridge_bus, account_id=account_id, region=region)
            except ValueError as exc:
                channels.append(_Misconfigured("eventbridge", str(exc)))
            else:
                channels.append(
                    EventBridgeChannel(
                        bus,
                        credentials,
                        endpoint=eventbridge_endpoint,
                        clock=clock,
                        timeout=timeout,
                        session=session,
                    )
                )
        return cls(channels, clock=clock, window=window)

    def notify(self, report: RunReport) -> list[ChannelResult]:
        """Send the report to every channel; one result per channel, none when the run is not
        one to notify about. Failures are logged and returned, never raised. Anything but a
        ``RunReport`` is logged and not sent: nothing is converted."""
        if not isinstance(report, RunReport):
            event(
                logging.WARNING,
                "notification skipped: the report is not a RunReport",
                report_type=type(report).__name__,
            )
            return []
        if not self.channels:
            return []
        try:
            if not should_notify(report):
                return []
            key = dedup_key(report)
        except Exception as exc:  # a report the policy cannot read (a bug): never break the run
            reason = error_text(f"the report could not be read: {type(exc).__name__}: {exc}")
            event(logging.ERROR, "notification failed", run_id=plain(report.run_id), error=reason)
            return [ChannelResult(channel.name, "failed", reason) for channel in self.channels]
        return [self._deliver(channel, report, key) for channel in self.channels]

    def _deliver(self, channel: Channel, report: RunReport, key: str) -> ChannelResult:
        one = report.single
        context: dict[str, Any] = {
            "channel": channel.name,
            "destination": channel.destination,
            "account": plain(one.account) if one is not None else "",
            "status": report.status,
            "run_id": plain(report.run_id),
        }
        now = self.clock()
        busy = self.window.reserve(channel.name, key, now)
        if busy is not None:
            event(
                logging.INFO,
                "notification deduplicated",
                **context,
                window_seconds=self.window.seconds,
                because=busy,
            )
            detail = "sent within the window" if busy == "sent" else "being sent concurrently"
            return ChannelResult(channel.name, "deduplicated", detail)
        try:
            detail = channel.send(report)
        except DeliveryError as exc:
            reason = error_text(str(exc))
        except requests.Timeout:
            reason = "timed out"
        except Exception as exc:  # a channel must never break enforcement
            reason = error_text(f"{type(exc).__name__}: {exc}")
        except BaseException:  # interrupted: never leave the reservation behind
            self.window.release(channel.name, key)
            raise
        else:
            self.window.record(channel.name, key, now)
            detail = error_text(detail)
            event(logging.INFO, "notification sent", **context, detail=detail)
            return ChannelResult(channel.name, "sent", detail)
        self.window.release(channel.name, key)  # not delivered: the next identical report retries
        event(logging.WARNING, "notification failed", **context, error=reason)
        return ChannelResult(channel.name, "failed", reason)


class _Misconfigured:
    """A configured channel that cannot work: every report fails with the reason."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.destination = "(misconfigured)"
        self.problem = problem

    def send(self, report: RunReport) -> str:
        raise DeliveryError(self.problem)
