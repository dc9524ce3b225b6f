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

from .channel import ChannelResult
from .dedup import DedupWindow
from .eventbridge import eventbridge_signature, eventbridge_string_to_sign
from .notifier import Notifier
from .policy import should_notify

__all__ = [
    "ChannelResult",
    "DedupWindow",
    "Notifier",
    "eventbridge_signature",
    "eventbridge_string_to_sign",
    "should_notify",
]
