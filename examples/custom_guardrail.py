"""A custom guardrail policy: the bot must not give medicine doses, and is never heard doing it.

    python examples/custom_guardrail.py [OUT_DIR] [--input CALLER.wav]

A policy is any object with a ``name`` and an async ``check(text)`` returning
a :class:`~voxpipe.guardrails.policy.Verdict`. One that also has a synchronous
``scan(text, start)`` and an ``overlap_chars`` (an *incremental scanner*, as
here) is run by the guardrail tap on every finished word before the words go
on to be spoken, so a tripped phrase is never heard; a policy with ``check``
alone (a remote moderation call, say) runs asynchronously beside the audio.
On a trip the tap cancels the response, truncates it to what was played, and
has the safe line said instead.

The brain is the embedded server with a script, so the bot reliably tries to
give a dose: its second sentence is stopped. Trips go to OUT_DIR/trips.json.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from common import parse_args, save_call

from voxpipe import (
    CallSession,
    FileTransport,
    GuardrailTap,
    ServerConfig,
    build_realtime_pipeline,
    running_realtime_server,
)
from voxpipe.engines import shared_tts
from voxpipe.frames import GuardrailTrippedFrame
from voxpipe.guardrails.policy import Verdict
from voxpipe.processors.guardrails.realtime import RealtimeSafeLine
from voxpipe.transports.realtime_server import ScriptedBrain

SERVER_KEY = "voxpipe-example"
SAFE_LINE = "I can't advise on doses. Please ask our pharmacist."
SCRIPT = [
    "Sorry to hear about your headache. "
    "You can take four hundred milligrams of ibuprofen every six hours.",
    # Asked to say the safe line, the scripted brain says its next entry: the same words.
    SAFE_LINE,
]


class NoDosageAdvice:
    """Trips on a dose: an amount in milligrams, or tablets per day."""

    name = "no-dosage-advice"
    overlap_chars = 40  # the longest match: a match may start this far back in old text

    _DOSE = re.compile(r"\b(?:milligrams?|mg|tablets? (?:a|per|each) day)\b", re.IGNORECASE)

    def scan(self, text: str, start: int = 0) -> Verdict:
        """Search the new text (from ``start``); the text before it is context only."""
        match = self._DOSE.search(text, start)
        if match is None:
            return Verdict.allow()
        return Verdict.trip(self.name, match.start(), match.end())

    async def check(self, text: str) -> Verdict:
        return self.scan(text)


async def main(caller: Path, out: Path) -> None:
    tap = GuardrailTap([NoDosageAdvice()], safe_line=SAFE_LINE)
    trips: list[dict[str, object]] = []

    @tap.event_handler("on_guardrail_tripped")
    async def _tripped(_tap: GuardrailTap, frame: GuardrailTrippedFrame) -> None:
        trips.append({"rule": frame.rule, "span": frame.span})
        print(f"guardrail tripped: {frame.rule} on {frame.span!r}")

    brain = ScriptedBrain(SCRIPT, voice=await shared_tts(), pace=1.5)
    config = ServerConfig(api_key=SERVER_KEY)
    async with running_realtime_server(config=config, brain=brain) as server:
        transport = FileTransport(caller, paced=True)
        graph = build_realtime_pipeline(
            transport, server_url=server.realtime_url, api_key=SERVER_KEY, tap=tap
        )
        # On the realtime path the brain itself says the safe line.
        tap.set_safe_line_speaker(RealtimeSafeLine(graph.brain))
        async with CallSession(graph) as call:
            await call.run_until_input_ends()
    (out / "trips.json").write_text(json.dumps(trips, indent=2) + "\n")
    save_call(out, transport, graph)


if __name__ == "__main__":
    args = parse_args(__doc__)
    asyncio.run(main(args.input, args.out))
