"""Replayed webhooks, sans-I/O: a signed request is answered once.

A valid signature proves the provider sent a request, not that it sent it
*now*: someone who captured one (a log, a proxy) could send it again and
start a call the provider never placed. :class:`ReplayGuard` remembers what
each answered request was signed with (Twilio's and Telnyx's signature,
Plivo's nonce) for ``window_s`` and refuses it again within that window.

Telnyx signs a timestamp, so a request older than its tolerance is refused
as stale anyway: remembering signatures for that long closes the gap.
Twilio and Plivo sign no time: past ``window_s`` a captured request would
verify again, so their window is long (an hour by default), bounded in
memory by ``max_entries`` (the oldest are forgotten first, and the log says
so when one is forgotten early).
"""

from __future__ import annotations

import collections

from voxpipe.errors import ConfigError, WebhookRejected, WebhookRejectReason

DEFAULT_WINDOW_S = 3600.0
MAX_ENTRIES = 100_000


class ReplayGuard:
    """Signed requests answered in the last ``window_s`` seconds (times are ``now_s``)."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, max_entries: int = MAX_ENTRIES) -> None:
        if window_s <= 0 or max_entries <= 0:
            raise ConfigError("a replay guard needs window_s > 0 and max_entries > 0")
        self.window_s = window_s
        self.max_entries = max_entries
        self.forgotten_early = 0  # entries dropped inside their window to bound memory
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()

    def admit(self, key: str, now_s: float) -> None:
        """Remember ``key``; raise :class:`WebhookRejected` (``REPLAYED``) if it was seen."""
        self._expire(now_s)
        if key in self._seen:
            raise WebhookRejected(
                "this signed request was already answered",
                reason=WebhookRejectReason.REPLAYED,
                hint="a provider never sends the same signed webhook twice",
            )
        self._seen[key] = now_s + self.window_s
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
            self.forgotten_early += 1

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now_s: float) -> None:
        while self._seen:
            key, until = next(iter(self._seen.items()))
            if until > now_s:
                return
            del self._seen[key]
