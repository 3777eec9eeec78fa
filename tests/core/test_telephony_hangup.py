"""REST hang-up requests per provider, and the config that asks for them (never by default)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from voxpipe.cli.serve import _rest_hangups
from voxpipe.errors import ConfigError
from voxpipe.guardrails.config import load_agent_file, parse_agent_config
from voxpipe.telephony.events import Provider
from voxpipe.telephony.hangup import (
    HangupMode,
    RestHangup,
    TelephonyConfig,
    parse_telephony_table,
)
from voxpipe.transports.telephony.plivo_routes import PlivoConfig
from voxpipe.transports.telephony.routes import TwilioConfig
from voxpipe.transports.telephony.telnyx_routes import TelnyxConfig

REST = TelephonyConfig(HangupMode.REST)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_each_providers_documented_request() -> None:
    twilio = RestHangup(Provider.TWILIO, "AC123", "tok").request("CA9")
    assert (twilio.method, twilio.url) == (
        "POST",
        "https://api.twilio.com/2010-04-01/Accounts/AC123/Calls/CA9.json",
    )
    assert twilio.form == {"Status": "completed"} and twilio.json is None
    assert twilio.headers == {"Authorization": basic("AC123", "tok")}
    telnyx = RestHangup(Provider.TELNYX, "KEY1", "KEY1", "http://127.0.0.1:9/").request("v3:a/b")
    assert (telnyx.method, telnyx.url) == (
        "POST",
        "http://127.0.0.1:9/v2/calls/v3%3Aa%2Fb/actions/hangup",  # an id cannot leave its path
    )
    assert telnyx.json == {} and telnyx.headers == {"Authorization": "Bearer KEY1"}
    plivo = RestHangup(Provider.PLIVO, "MA1", "tok").request("1234-abcd")
    assert (plivo.method, plivo.url) == (
        "DELETE",
        "https://api.plivo.com/v1/Account/MA1/Call/1234-abcd/",
    )
    assert plivo.headers == {"Authorization": basic("MA1", "tok")}
    assert "tok" not in repr(RestHangup(Provider.PLIVO, "MA1", "tok"))  # secrets stay out of logs


def test_nothing_is_configured_by_default_and_rest_needs_the_credentials() -> None:
    env = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TELNYX_API_KEY": "k"}
    for provider in Provider:
        assert RestHangup.from_env(provider, TelephonyConfig(), env) is None
    twilio = RestHangup.from_env(Provider.TWILIO, REST, env)
    assert twilio is not None and twilio.account == "AC1" and twilio.secret == "t"
    telnyx = RestHangup.from_env(Provider.TELNYX, REST, env)
    assert telnyx is not None and telnyx.secret == "k"
    with pytest.raises(ConfigError, match="PLIVO_AUTH_ID and PLIVO_AUTH_TOKEN"):
        RestHangup.from_env(Provider.PLIVO, REST, env)
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        RestHangup.from_env(Provider.TWILIO, REST, {"TWILIO_AUTH_TOKEN": "t"})
    local = TelephonyConfig(HangupMode.REST, "http://127.0.0.1:8080")
    routed = RestHangup.from_env(Provider.TWILIO, local, env)
    assert routed is not None and routed.request("CA1").url.startswith("http://127.0.0.1:8080/")


def test_the_telephony_table_is_checked() -> None:
    assert parse_telephony_table({}, "a.toml") == TelephonyConfig()
    table = {"hangup": "rest", "rest_base_url": "http://127.0.0.1:1"}
    assert parse_telephony_table(table, "a.toml") == TelephonyConfig(
        HangupMode.REST, "http://127.0.0.1:1"
    )
    with pytest.raises(ConfigError, match='"stream" or "rest"'):
        parse_telephony_table({"hangup": "yes"}, "a.toml")
    with pytest.raises(ConfigError, match="unknown key"):
        parse_telephony_table({"hang_up": "rest"}, "a.toml")
    with pytest.raises(ConfigError, match="http"):
        parse_telephony_table({"hangup": "rest", "rest_base_url": "ftp://x"}, "a.toml")
    with pytest.raises(ConfigError, match="must be a table"):
        parse_agent_config({"telephony": "rest"})
    assert parse_agent_config({"instructions": "Hi."}).telephony.hangup is HangupMode.STREAM


def test_serve_sets_each_phone_provider_up_from_the_agent_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = tmp_path / "agent.toml"
    agent.write_text('instructions = "Hi."\n[telephony]\nhangup = "rest"\n')
    assert load_agent_file(agent).telephony.hangup is HangupMode.REST
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC1")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "t")
    monkeypatch.delenv("TELNYX_API_KEY", raising=False)
    twilio = TwilioConfig()
    _rest_hangups(agent, twilio=twilio, telnyx=None, plivo=None)
    assert twilio.rest_hangup is not None and twilio.rest_hangup.provider is Provider.TWILIO
    with pytest.raises(ConfigError, match="TELNYX_API_KEY"):  # refused before serving
        _rest_hangups(agent, twilio=None, telnyx=TelnyxConfig(), plivo=None)
    agent.write_text('instructions = "Hi."\n')
    plivo = PlivoConfig()
    _rest_hangups(agent, twilio=None, telnyx=None, plivo=plivo)
    assert plivo.rest_hangup is None
