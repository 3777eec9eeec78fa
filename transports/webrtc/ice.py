"""ICE on a loopback-only server: offer 127.0.0.1, which aioice leaves out on its own.

aioice gathers host candidates from every interface but skips 127.0.0.1
(``aioice.ice.get_host_addresses``), so a server bound to loopback on a
machine with no other interface offers no candidate and nothing connects.
``voxpipe serve`` on a loopback host (the default) replaces that lookup
before any peer connection gathers, process-wide, and keeps only 127.0.0.1
candidates from each offer (see :mod:`voxpipe.webrtc.offer`): its checks then
never leave the machine. A server on another interface gathers as aioice does.
"""

from __future__ import annotations

import ipaddress

import aioice.ice

_original = aioice.ice.get_host_addresses


def _loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a bind address or name) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gather_on_loopback(enabled: bool) -> None:
    """Offer only 127.0.0.1 host candidates (True), or aioice's own choice (False)."""
    aioice.ice.get_host_addresses = _loopback_addresses if enabled else _original
