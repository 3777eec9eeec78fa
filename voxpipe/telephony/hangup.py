"""Hanging up a phone call through its provider's REST API: an explicit, configured action.

When voxpipe ends a call itself (an agent's ``end_call`` tool or the
application ending its pipeline with ``EndTaskFrame``, a provider that failed
for good, the call's time limit, the server stopping), closing the media
stream ends the stream, not necessarily the phone call: the provider moves on
in its call flow. Hanging up the call for certain takes its REST API, with the
account's credentials. So it is never a default: an agent file asks for it
(``[telephony] hangup = "rest"``), and then the provider's credentials must
be in the environment, or the server refuses to start.

Each provider's call, as documented:

- Twilio: ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``
  with ``Status=completed`` (form-encoded), HTTP basic auth with the account
  SID and auth token;
- Telnyx: ``POST /v2/calls/{call_control_id}/actions/hangup`` (JSON body),
  ``Authorization: Bearer <API key>``;
- Plivo: ``DELETE /v1/Account/{auth_id}/Call/{call_uuid}/``, HTTP basic auth
  with the auth id and auth token.

Sans-I/O: this builds the request; the route sends it
(:mod:`voxpipe.transports.telephony.hangup`).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from voxpipe.errors import ConfigError
from voxpipe.telephony.events import Provider

TELEPHONY_KEYS = ("hangup", "rest_base_url")


class HangupMode(enum.Enum):
    """What ending a call does beyond closing its media stream."""

    STREAM = "stream"  # close the stream only (the default: no credentials needed)
    REST = "rest"  # also hang the call up through the provider's REST API


@dataclass(frozen=True)
class TelephonyConfig:
    """An agent file's ``[telephony]`` table."""

    hangup: HangupMode = HangupMode.STREAM
    rest_base_url: str | None = None  # the provider's API (default: its public one)


# Each provider's credentials in the environment, and its public API.
CREDENTIAL_ENV: dict[Provider, tuple[str, str]] = {
    Provider.TWILIO: ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
    Provider.TELNYX: ("TELNYX_API_KEY", "TELNYX_API_KEY"),
    Provider.PLIVO: ("PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN"),
}
PUBLIC_API: dict[Provider, str] = {
    Provider.TWILIO: "https://api.twilio.com",
    Provider.TELNYX: "https://api.telnyx.com",
    Provider.PLIVO: "https://api.plivo.com",
}


@dataclass(frozen=True)
class RestHangup:
    """How to hang up one provider's calls: its API and the account's credentials."""

    provider: Provider
    account: str = field(repr=False)  # Twilio's account SID, Plivo's auth id, Telnyx's API key
    secret: str = field(repr=False)  # the auth token (Telnyx: the API key again)
    base_url: str = ""

    def __post_init__(self) -> None:
        if not self.base_url:
            object.__setattr__(self, "base_url", PUBLIC_API[self.provider])
        if not self.base_url.startswith(("https://", "http://")):
            raise ConfigError(f"the {self.provider.value} REST API must be an http(s) URL")

    @classmethod
    def from_env(
        cls, provider: Provider, config: TelephonyConfig, environ: Mapping[str, str]
    ) -> RestHangup | None:
        """The configured hang-up for ``provider``: None unless asked for; credentials required."""
        if config.hangup is not HangupMode.REST:
            return None
        account_env, secret_env = CREDENTIAL_ENV[provider]
        account, secret = environ.get(account_env, ""), environ.get(secret_env, "")
        if not (account and secret):
            missing = " and ".join(sorted({account_env, secret_env}))
            raise ConfigError(
                f'[telephony] hangup = "rest" needs {missing} to hang up {provider.value} calls',
                hint='set them, or leave hangup at "stream" (the stream closes; no REST call)',
            )
        return cls(provider, account, secret, config.rest_base_url or "")

    def request(self, call_id: str) -> HangupRequest:
        """The request that hangs up the provider's call ``call_id``."""
        base, call = self.base_url.rstrip("/"), quote(call_id, safe="")
        if self.provider is Provider.TWILIO:
            account = quote(self.account, safe="")
            return HangupRequest(
                "POST",
                f"{base}/2010-04-01/Accounts/{account}/Calls/{call}.json",
                {"Authorization": _basic(self.account, self.secret)},
                form={"Status": "completed"},
            )
        if self.provider is Provider.TELNYX:
            return HangupRequest(
                "POST",
                f"{base}/v2/calls/{call}/actions/hangup",
                {"Authorization": f"Bearer {self.secret}"},
                json={},
            )
        account = quote(self.account, safe="")
        return HangupRequest(
            "DELETE",
            f"{base}/v1/Account/{account}/Call/{call}/",
            {"Authorization": _basic(self.account, self.secret)},
        )


@dataclass(frozen=True)
class HangupRequest:
    """One HTTP request to a provider's REST API."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)
    form: dict[str, str] | None = None
    json: dict[str, Any] | None = None


def parse_telephony_table(table: Any, source: str) -> TelephonyConfig:
    """An agent file's ``[telephony]`` table, checked."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{source}: 'telephony' must be a table ([telephony])")
    for key in table:
        if key not in TELEPHONY_KEYS:
            raise ConfigError(
                f"{source}: unknown key [telephony].{key}",
                hint=f"known: {', '.join(TELEPHONY_KEYS)}",
            )
    mode = table.get("hangup", HangupMode.STREAM.value)
    try:
        hangup = HangupMode(mode)
    except ValueError:
        raise ConfigError(
            f'{source}: [telephony].hangup must be "stream" or "rest", not {mode!r}'
        ) from None
    base_url = table.get("rest_base_url")
    if base_url is not None and (
        not isinstance(base_url, str) or not base_url.startswith(("https://", "http://"))
    ):
        raise ConfigError(f"{source}: [telephony].rest_base_url must be an http(s) URL")
    return TelephonyConfig(hangup, base_url)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
