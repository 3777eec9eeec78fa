"""A caller's keys reach the application as frames; a call voxpipe ends is hung up when configured.

Real parts on loopback: aiohttp serving each provider's routes, the embedded
Realtime server (scripted brain), the voxpipe graph with an application
processor in its tap slot; the far ends are the fake Twilio, Telnyx and Plivo
(each sends DTMF as its documentation spells it) and ``fake_phone_rest``
(each provider's REST hang-up, as documented).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fake_phone import FakeCarrier
from fake_phone_rest import FakePhoneRest, HangupSeen
from fake_plivo import FakePlivo
from fake_telnyx import FakeTelnyx
from fake_twilio import FakeTwilio, mulaw_recording
from loopback import serving as serving_app
from phone_calls import calling, phone_transport, the_call, until
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import EndTaskFrame, Frame, InputDTMFFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import FunctionCallParams
from realtime_calls import compose

from voxpipe.pipelines.live_call import CallEnd, LiveCallSpec
from voxpipe.pipelines.simulated_call import LOCAL_SERVER_KEY
from voxpipe.telephony.events import Provider
from voxpipe.telephony.hangup import RestHangup
from voxpipe.transports.realtime_server import ScriptedBrain, ServerConfig, running_realtime_server
from voxpipe.transports.telephony.phone_routes import PhoneConfig
from voxpipe.transports.telephony.plivo_routes import PlivoConfig
from voxpipe.transports.telephony.routes import TwilioConfig
from voxpipe.transports.telephony.telnyx_routes import TelnyxConfig
from voxpipe.transports.webrtc.app import ServeApp, ServeConfig

FAKES: dict[Provider, tuple[type[FakeCarrier], type[PhoneConfig]]] = {
    Provider.TWILIO: (FakeTwilio, TwilioConfig),
    Provider.TELNYX: (FakeTelnyx, TelnyxConfig),
    Provider.PLIVO: (FakePlivo, PlivoConfig),
}


class KeypadMenu(FrameProcessor):
    """An application's processor: notes each key; ``#`` ends the call."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[tuple[KeypadEntry, float]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputDTMFFrame):
            self.keys.append((frame.button, time.monotonic()))
            if frame.button is KeypadEntry.POUND:
                await self.push_frame(
                    EndTaskFrame(reason="caller pressed #"), FrameDirection.UPSTREAM
                )
        await self.push_frame(frame, direction)


@asynccontextmanager
async def serving(
    provider: Provider,
    rest: FakePhoneRest,
    rest_url: str | None,
    script: list[Any] | None = None,
    tools: Sequence[Any] = (),
) -> AsyncIterator[tuple[str, ServeApp, list[KeypadMenu]]]:
    """``voxpipe serve`` taking ``provider``'s calls; REST hang-ups to ``rest_url`` if given."""
    menus: list[KeypadMenu] = []

    def make_tap() -> KeypadMenu:
        menus.append(KeypadMenu())
        return menus[-1]

    _, config_type = FAKES[provider]
    config = config_type()
    if rest_url is not None:
        config.rest_hangup = RestHangup(provider, rest.account, rest.secret, rest_url)
    brain = ScriptedBrain(script or ["Hello."], pace=2.0)
    server_config = ServerConfig(api_key=LOCAL_SERVER_KEY)
    async with running_realtime_server(config=server_config, brain=brain) as server:
        spec = LiveCallSpec(
            server_url=server.realtime_url,
            api_key=LOCAL_SERVER_KEY,
            make_tap=make_tap,
            tools=tools,
        )
        serve = ServeApp(ServeConfig(call=spec, **{provider.value: config}))
        async with serving_app(serve.build_app()) as base:
            yield base, serve, menus


@asynccontextmanager
async def phone_rest() -> AsyncIterator[tuple[FakePhoneRest, str]]:
    rest = FakePhoneRest()
    async with serving_app(rest.build_app()) as url:
        yield rest, url


@asynccontextmanager
async def a_caller(provider: Provider, base: str, caller: bytes = b"") -> AsyncIterator[Any]:
    """A caller on a quiet line (the keys are what matters), or saying ``caller``."""
    fake_type, _ = FAKES[provider]
    fake: Any = fake_type(caller)
    stream_url, parameters = await fake.answer(base)
    async with calling(fake, stream_url, parameters):
        yield fake


def expected_hangup(provider: Provider, call_id: str) -> tuple[str, str]:
    return {
        Provider.TWILIO: ("POST", f"/2010-04-01/Accounts/AC0001/Calls/{call_id}.json"),
        Provider.TELNYX: ("POST", f"/v2/calls/{call_id}/actions/hangup"),
        Provider.PLIVO: ("DELETE", f"/v1/Account/AC0001/Call/{call_id}/"),
    }[provider]


def call_id_of(fake: Any) -> str:
    return str(
        getattr(fake, "call_sid", None) or getattr(fake, "call_control_id", None) or fake.call_uuid
    )


@pytest.mark.parametrize("provider", list(Provider))
async def test_keys_reach_the_application_and_a_call_it_ends_is_hung_up_at_the_provider(
    provider: Provider,
) -> None:
    async with (
        phone_rest() as (rest, rest_url),
        serving(provider, rest, rest_url) as (base, serve, menus),
        a_caller(provider, base) as fake,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        transport = phone_transport(call)
        await until(lambda: len(transport.captures) > 10)  # the pipeline hears the caller
        fake.press("1")
        fake.press("7")
        await until(lambda: len(menus[0].keys) == 2, 10)
        fake.press("#")
        pressed = time.monotonic()
        await until(lambda: rest.requests, 10)
        hung_up = time.monotonic()
        await until(lambda: fake.closed_ms is not None, 5)
    keys = [key for key, _ in menus[0].keys]
    assert keys == [KeypadEntry.ONE, KeypadEntry.SEVEN, KeypadEntry.POUND]
    assert serve.ended == [(call.call_id, CallEnd.PIPELINE_ENDED)]  # the application ended it
    (seen,) = rest.requests
    assert (seen.method, seen.path) == expected_hangup(provider, call_id_of(fake))
    assert seen.status in (200, 204)  # the credentials were the account's
    if provider is Provider.TWILIO:
        assert seen.body == {"Status": "completed"}
    print(f"\n{provider.value}: hung up {1000 * (hung_up - pressed):.0f} ms after '#'")
    assert hung_up - pressed < 5


async def test_without_the_config_nothing_is_called_and_a_caller_hanging_up_is_not_hung_up() -> (
    None
):
    async with phone_rest() as (rest, rest_url):
        # Not configured: the application ends the call, the stream closes, no REST call.
        async with (
            serving(Provider.TWILIO, rest, None) as (base, serve, _menus),
            a_caller(Provider.TWILIO, base) as fake,
        ):
            await until(lambda: serve.calls)
            await until(lambda: len(phone_transport(the_call(serve)).captures) > 10)
            fake.press("#")
            await until(lambda: fake.closed_ms is not None, 10)
            await until(lambda: serve.ended, 5)
        assert serve.ended[0][1] is CallEnd.PIPELINE_ENDED
        # Configured, but the caller hung up: the call is over at the provider already.
        async with (
            serving(Provider.TWILIO, rest, rest_url) as (base, serve, _menus),
            a_caller(Provider.TWILIO, base) as fake,
        ):
            await until(lambda: serve.calls)
            await until(lambda: len(phone_transport(the_call(serve)).captures) > 10)
            fake.stop()
            await until(lambda: serve.ended, 10)
            await until(lambda: fake.closed_ms is not None, 5)
        assert serve.ended[0][1] is CallEnd.HUNG_UP
    assert rest.requests == list[HangupSeen]()


async def end_call(params: FunctionCallParams) -> None:
    """End the phone call, once the caller has nothing more to ask."""
    await params.result_callback({"ended": True})
    await params.llm.push_frame(
        EndTaskFrame(reason="the agent ended the call"), FrameDirection.UPSTREAM
    )


async def test_the_agents_end_call_tool_hangs_the_call_up_at_the_provider(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "That is all, thank you. Goodbye.", 6000], recording)
    script = [{"function_call": {"name": "end_call", "arguments": {}}}]
    async with (
        phone_rest() as (rest, rest_url),
        serving(Provider.TWILIO, rest, rest_url, script, tools=[end_call]) as (base, serve, _),
        a_caller(Provider.TWILIO, base, mulaw_recording(recording)) as twilio,
    ):
        await until(lambda: serve.calls)
        call = the_call(serve)
        await until(lambda: rest.requests, 25)
        await until(lambda: twilio.closed_ms is not None, 5)
    assert serve.ended == [(call.call_id, CallEnd.PIPELINE_ENDED)]
    (seen,) = rest.requests
    assert (seen.method, seen.path, seen.status) == (
        "POST",
        f"/2010-04-01/Accounts/AC0001/Calls/{twilio.call_sid}.json",
        200,
    )
