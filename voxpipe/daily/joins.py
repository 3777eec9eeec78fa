"""Why joining a Daily room failed, from what daily-python said, and room URLs checked first.

daily-python reports a failed ``join()`` as a string in its completion; the
cause is one of Daily's documented error types (``no-room``, ``exp-token``,
``nbf-room``, ``meeting-full``, ``not-allowed``...) somewhere in it, or a
network failure. voxpipe turns it into a :class:`~voxpipe.errors.DailyJoinFailed`
with a reason applications can branch on, and a join that never completes
(daily-python's own attempt gives up only after about 19 s without Daily's
API) into ``TIMED_OUT`` after the join timeout.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from voxpipe.errors import DailyJoinFailed, DailyJoinFailure

# Daily's error types and the words its messages use, most specific first.
_MARKERS: tuple[tuple[DailyJoinFailure, tuple[str, ...]], ...] = (
    (
        DailyJoinFailure.TOKEN_EXPIRED,
        ("exp-token", "tokenexpired", "token expired", "token has expired"),
    ),
    (
        DailyJoinFailure.TOKEN_INVALID,
        ("nbf-token", "invalidtoken", "invalid token", "token is invalid"),
    ),
    (
        DailyJoinFailure.ROOM_EXPIRED,
        ("exp-room", "nbf-room", "roomexpired", "room expired", "meeting has ended"),
    ),
    (
        DailyJoinFailure.ROOM_NOT_FOUND,
        ("no-room", "notfound", "not found", "does not exist", "404"),
    ),
    (DailyJoinFailure.ROOM_FULL, ("meeting-full", "meetingfull", "room is full")),
    (
        DailyJoinFailure.NOT_ALLOWED,
        ("not-allowed", "notallowed", "not allowed", "forbidden", "401", "403"),
    ),
    (
        DailyJoinFailure.UNREACHABLE,
        ("network", "connect", "timed out", "timeout", "dns", "unreachable"),
    ),
)


def join_failed(room_url: str, error: str) -> DailyJoinFailed:
    """The error for daily-python's join ``error`` string."""
    lowered = error.lower()
    reason = next(
        (reason for reason, words in _MARKERS if any(w in lowered for w in words)),
        DailyJoinFailure.REFUSED,
    )
    return DailyJoinFailed(f"could not join {room_url}: {error}", reason=reason)


def join_timed_out(room_url: str, timeout_s: float) -> DailyJoinFailed:
    """The error for a join that did not complete within ``timeout_s``."""
    return DailyJoinFailed(
        f"could not join {room_url} within {timeout_s:g} s",
        reason=DailyJoinFailure.TIMED_OUT,
        hint="is Daily's API reachable from here? (a longer --join-timeout may help)",
    )


def room_name(room_url: str) -> str:
    """The room's name from its URL (``https://team.daily.co/NAME``); bad URLs fail here.

    Checked before daily-python is asked, which would take its full timeout to
    say the same.
    """
    parts = urlsplit(room_url.strip())
    name = parts.path.strip("/")
    if parts.scheme not in ("https", "http") or not parts.hostname or not name or "/" in name:
        raise DailyJoinFailed(
            f"{room_url!r} is not a Daily room URL",
            reason=DailyJoinFailure.INVALID_URL,
            hint="a room URL looks like https://YOUR-TEAM.daily.co/ROOM-NAME",
        )
    return name
