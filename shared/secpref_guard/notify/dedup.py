"""De-duplication: the reports already delivered to each channel within a window.

One ``DedupWindow`` per Function Compute instance covers an event burst that reaches the same
instance: a report whose key (policy.dedup_key) was delivered to a channel within the window
(10 minutes by default), or is being delivered right now, is not sent to it again.
"""

from __future__ import annotations

import threading

DEFAULT_WINDOW_SECONDS = 600.0


class DedupWindow:
    """Reports already delivered, per channel, remembered in memory for ``seconds``. Keep one
    per Function Compute instance to cover event bursts that reach the same instance.

    Safe across threads (an instance may serve concurrent invocations): ``reserve`` atomically
    claims a (channel, key) that was not delivered within the window and is not being delivered,
    so of concurrent identical reports exactly one is sent; the holder then calls ``record``
    when the channel accepted it, or ``release`` when it failed, so the next report retries. A
    reservation never released (a send that never returned) lapses after ``seconds`` too.
    Times are the caller's clock (``now``), so the window follows an injected clock."""

    def __init__(self, seconds: float = DEFAULT_WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._sent: dict[tuple[str, str], float] = {}
        self._reserved: dict[tuple[str, str], float] = {}

    def active(self, channel: str, key: str, now: float) -> bool:
        """Delivered within the window, or being delivered right now."""
        with self._lock:
            return self._busy((channel, key), now) is not None

    def reserve(self, channel: str, key: str, now: float) -> str | None:
        """Claim the key for one delivery: None when the caller now holds it and must send,
        else why not (``"sent"`` within the window, or ``"sending"`` by another caller)."""
        with self._lock:
            self._expire(now)
            busy = self._busy((channel, key), now)
            if busy is None:
                self._reserved[(channel, key)] = now
            return busy

    def record(self, channel: str, key: str, now: float) -> None:
        """The report was delivered at ``now``: its reservation becomes a sent entry."""
        with self._lock:
            self._reserved.pop((channel, key), None)
            self._sent[(channel, key)] = now
            self._expire(now)

    def release(self, channel: str, key: str) -> None:
        """The delivery failed: drop the reservation so the next identical report is sent."""
        with self._lock:
            self._reserved.pop((channel, key), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sent)

    def _busy(self, entry: tuple[str, str], now: float) -> str | None:
        if entry in self._sent and now - self._sent[entry] < self.seconds:
            return "sent"
        if entry in self._reserved and now - self._reserved[entry] < self.seconds:
            return "sending"
        return None

    def _expire(self, now: float) -> None:
        """Forget what is out of the window, in place (the caller holds the lock)."""
        for entries in (self._sent, self._reserved):
            for entry in [e for e, at in entries.items() if now - at >= self.seconds]:
                del entries[entry]
