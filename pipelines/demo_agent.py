"""The demo's agent: a pharmacy phone line with two tools."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from pipecat.services.llm_service import FunctionCallParams

INSTRUCTIONS = (
    "You are the phone assistant of Green Cross pharmacy. Answer in one or two short "
    "spoken sentences. Use get_opening_hours for opening times and get_weather for weather. "
    "The pharmacy accepts cards and cash."
)

HOURS = {"saturday": "9 am to 1 pm", "sunday": "closed"}


async def get_opening_hours(params: FunctionCallParams, day: str) -> None:
    """Get the pharmacy's opening hours on a given day.

    Args:
        day: The day of the week, for example Monday.
    """
    hours = HOURS.get(day.strip().lower(), "8 am to 6 pm")
    await params.result_callback({"day": day, "hours": hours})


async def get_weather(params: FunctionCallParams, city: str) -> None:
    """Get the current weather in a city.

    Args:
        city: The city name.
    """
    await params.result_callback({"city": city, "conditions": "sunny", "temperature_c": 21})


TOOLS = [get_opening_hours, get_weather]

# What the in-process realtime server says when no key is set: the model's
# side of the demo call, scripted so the demo runs anywhere. The weather
# answer is long, and streamed near real time, so the caller's third line
# lands while it is still being spoken: a barge-in the demo shows cancelled.
REALTIME_SCRIPT: list[Any] = [
    {"function_call": {"name": "get_opening_hours", "arguments": {"day": "Saturday"}}},
    "On Saturday we are open from nine in the morning until one in the afternoon.",
    {"function_call": {"name": "get_weather", "arguments": {"city": "Paris"}}},
    "It is sunny in Paris today, about twenty one degrees, a lovely day for a walk "
    "along the river, and the evening should stay dry and mild until late, so there "
    "is no need to bring an umbrella if you are heading out.",
    "Yes, you can pay by card, and we take cash too.",
]
REALTIME_SCRIPT_PACE = 1.2  # times real time: a provider streams a little ahead of playback


def caller_recording() -> Path:
    return Path(str(files("voxpipe").joinpath("data/demo_caller.wav")))


def caller_script() -> list[dict[str, Any]]:
    """The lines in the demo recording with their true start and end (ms)."""
    data: list[dict[str, Any]] = json.loads(
        files("voxpipe").joinpath("data/demo_caller.json").read_text()
    )
    return data


class DemoBrain:
    """The in-process server's brain for the demo: the script, plus local Whisper
    transcribing the caller so the transcript shows what was said."""

    def __init__(self, stt: Any = None) -> None:
        from voxpipe.transports.realtime_server import ScriptedBrain

        self._script = ScriptedBrain(REALTIME_SCRIPT, pace=REALTIME_SCRIPT_PACE)
        self._stt = stt
        self._asked_again = 0  # responses that repeated a tool call which never ran

    def respond(self, request: Any) -> Any:
        """The next scripted answer (tool calls included).

        A scripted tool call whose response the caller cut before the tool ran
        (on a loaded machine the caller's next line can land on it) is asked
        again, as a model would: the conversation holds no result for it, and
        the answer that needs the result must not be spoken without it.
        """
        index = request.turn_index - self._asked_again
        previous = REALTIME_SCRIPT[index - 1] if 0 < index <= len(REALTIME_SCRIPT) else None
        if isinstance(previous, dict) and not _answered(
            request.messages, previous["function_call"]["name"]
        ):
            self._asked_again += 1
            index -= 1
        return self._script.respond(dataclasses.replace(request, turn_index=index))

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        """What the caller said (None without the local STT weights)."""
        if self._stt is None:
            return None
        text: str = await asyncio.to_thread(self._stt.transcribe, pcm16, sample_rate)
        return text


def _answered(messages: Any, tool: str) -> bool:
    """Whether the conversation holds a result of a call to ``tool``."""
    call_ids = {
        call["id"]
        for message in messages
        for call in message.get("tool_calls") or ()
        if call["function"]["name"] == tool
    }
    return any(m.get("role") == "tool" and m.get("tool_call_id") in call_ids for m in messages)
