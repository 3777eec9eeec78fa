"""Daily's REST API, the two calls ``voxpipe daily --create-room`` needs.

``POST /rooms`` creates a private room that expires (``exp``, Unix seconds;
Daily ejects whoever is left then); ``POST /meeting-tokens`` mints a token
for it, one for the agent and one for the human's join link. Both
authenticate with ``Authorization: Bearer DAILY_API_KEY``. The base URL is a
parameter so tests (and Daily's regional endpoints) can point elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from voxpipe.errors import ConfigError, DailyApiError

REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CreatedRoom:
    """A room made for one session, with tokens for the agent and for the human."""

    url: str
    name: str
    expires_at: int  # Unix seconds
    agent_token: str
    guest_token: str

    @property
    def join_link(self) -> str:
        """The link a human opens to join (their token in it)."""
        return f"{self.url}?t={self.guest_token}"


class DailyRest:
    """A client for the room and token endpoints of Daily's REST API."""

    def __init__(self, api_key: str, base_url: str, *, now_s: Any = time.time) -> None:
        if not api_key:
            raise ConfigError("Daily's REST API needs a key", hint="set DAILY_API_KEY")
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._now_s = now_s

    async def create_room(self, *, minutes: float, bot_name: str) -> CreatedRoom:
        """A private room expiring in ``minutes``, and tokens for the agent and a guest."""
        if minutes <= 0:
            raise ConfigError("a room must live for a positive number of minutes")
        exp = int(self._now_s() + minutes * 60)
        room = await self._post(
            "/rooms",
            {"privacy": "private", "properties": {"exp": exp, "eject_at_room_exp": True}},
        )
        name, url = _field(room, "name"), _field(room, "url")
        agent = await self.meeting_token(name, exp, user_name=bot_name, owner=True)
        guest = await self.meeting_token(name, exp, user_name=None, owner=False)
        return CreatedRoom(url=url, name=name, expires_at=exp, agent_token=agent, guest_token=guest)

    async def meeting_token(
        self, room: str, exp: int, *, user_name: str | None, owner: bool
    ) -> str:
        """A meeting token for ``room`` valid until ``exp``."""
        properties: dict[str, Any] = {"room_name": room, "exp": exp, "is_owner": owner}
        if user_name:
            properties["user_name"] = user_name
        answer = await self._post("/meeting-tokens", {"properties": properties})
        return _field(answer, "token")

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, headers=self._headers) as session,
                session.post(url, json=body) as response,
            ):
                text = await response.text()
                if response.status >= 400:
                    raise DailyApiError(
                        f"Daily's API answered {response.status} to POST {path}: {text[:200]}",
                        status=response.status,
                    )
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DailyApiError(
                f"Daily's API could not be reached at {self.base_url}: {exc or type(exc).__name__}",
                status=None,
            ) from exc
        if not isinstance(answer, dict):
            raise DailyApiError(f"Daily's API answered POST {path} with {text[:200]}", status=None)
        return answer


def _field(answer: dict[str, Any], key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str) or not value:
        raise DailyApiError(f"Daily's API answered without a {key!r}: {answer}", status=None)
    return value
