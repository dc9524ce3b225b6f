"""Notifications: one run report, rendered for people and for machines, sent to every channel.

Three channels, each optional, any number at once: a DingTalk custom robot
(GUARD_DINGTALK_WEBHOOK, signed when GUARD_DINGTALK_SECRET is set), a generic HTTPS webhook
(GUARD_WEBHOOK_URL) and an EventBridge custom bus (GUARD_EVENTBRIDGE_BUS). Find each job by
its module:

- policy.py: which runs are notified (``should_notify``) and when two reports are the same news
  (the de-duplication key);
- render.py: the title, the one-line summary, the DingTalk markdown, the webhook's JSON body
  and the CloudEvent, all from one ``RunReport``; text.py: the small texts they are made of;
- channel.py: what every channel is (``Channel``, ``ChannelResult``, ``DeliveryError``);
- dingtalk.py, webhook.py, eventbridge.py: one channel each, with its signer;
- dedup.py: the de-duplication window (``DedupWindow``);
- notifier.py: the ``Notifier``, which builds the channels from the settings and sends.
Secrets are scrubbed from everything they log or return by ../scrub.py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .channel import ChannelResult
    from .dedup import DedupWindow
    from .eventbridge import eventbridge_signature, eventbridge_string_to_sign
    from .notifier import Notifier
    from .policy import should_notify

# Each name is imported from its module on first use: a run that is not notified (a compliant
# one, say) imports only policy.py, never the channels nor `requests` (issue 13).
_HOMES = {
    "ChannelResult": "channel",
    "DedupWindow": "dedup",
    "eventbridge_signature": "eventbridge",
    "eventbridge_string_to_sign": "eventbridge",
    "Notifier": "notifier",
    "should_notify": "policy",
}

__all__ = [
    "ChannelResult",
    "DedupWindow",
    "Notifier",
    "eventbridge_signature",
    "eventbridge_string_to_sign",
    "should_notify",
]


if not TYPE_CHECKING:  # a type checker sees the imports above, and so catches a misspelt name

    def __getattr__(name: str) -> Any:
        if name not in _HOMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
