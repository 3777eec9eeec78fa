"""Run eval scenarios: each one a synthetic call through the same graph as ``voxpipe call``.

One call per scenario, mode and repeat. The caller is an
:class:`~voxpipe.transports.eval_caller.EvalCaller` saying the scenario's
lines (local TTS, or its recordings); the brain is ``--server``, OpenAI with a
key, or an in-process ``voxpipe realtime-server`` answering with the
scenario's script (``brain.script``) or the local engines. Each call writes
``voxpipe call``'s artifacts (``call.wav``, ``transcript.json``,
``timeline.jsonl``, ``report.json``/``report.html``) plus ``eval_call.json``,
and is graded from those files alone (:mod:`voxpipe.evals.graders`).

A simulated scenario (``persona:``) has no lines ahead: each is made when it
is due, by the persona LLM answering what the bot said since the caller's
last line (:class:`~voxpipe.evals.persona.PersonaConversation`; the local
model, or OpenAI's chat with a key), and spoken by the same deterministic
voice, until the persona hangs up or runs out of turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pipecat.frames.frames import Frame, LLMTextFrame
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxpipe.errors import ConfigError, ScenarioError, VoxpipeError
from voxpipe.evals.caller import CallerCues
from voxpipe.evals.chat import ChatLLM, LocalChat, OpenAIChat
from voxpipe.evals.graders import Judge, grade
from voxpipe.evals.persona import END_CALL_TOOL, PersonaConversation
from voxpipe.evals.record import (
    RECORD_FILE,
    BrainContext,
    CallRecord,
    HeardText,
    Span,
    bot_track,
    cut_replies,
    heard_audio,
    load_record,
    merge_spans,
    record_json,
)
from voxpipe.evals.results import CallVerdict
from voxpipe.evals.scenario import Scenario, Simulation, SimulatorKind
from voxpipe.pipelines.chained import DEFAULT_INSTRUCTIONS
from voxpipe.pipelines.session import CallSession
from voxpipe.pipelines.simulated_call import (
    Mode,
    RealtimeLimits,
    build_call_graph,
    write_outputs,
)
from voxpipe.processors.observability.inline import InlineObserver
from voxpipe.processors.observability.report import instrument_call, report_call
from voxpipe.processors.observability.timeline import TimelineObserver
from voxpipe.timeline import EventKind, Timeline
from voxpipe.transports.eval_caller import LINE_RATE, EvalCaller
from voxpipe.transports.file import MonotonicClock

SERVER_KEY = "voxpipe-eval"
ANSWER_SECS = 30.0
LOCAL_ANSWER_SECS = 120.0
# The local brain's limits outlast the caller's wait: a caller who gives up speaks (and
# cancels the answer) before the call or the server would fail it.
LIMIT_MARGIN_SECS = 30.0


@dataclass
class EvalOptions:
    """How to run a suite (the ``voxpipe eval`` flags)."""

    out_dir: Path
    modes: tuple[Mode, ...] = (Mode.REALTIME,)
    repeat: int = 1
    server_url: str | None = None
    api_key: str | None = None
    config: Path | None = None  # agent.toml for every scenario (else the scenario's own)
    brain: str = "scripted"  # the embedded server's brain: "scripted" or "local"
    judge: Judge | None = None
    settle_ms: float = 1_500
    # How long the caller waits for an answer before it speaks anyway (the silence is
    # graded). None: 30 s, or 120 s for the in-process local brain, whose first word
    # took 24-30 s at load 13 on 2 cores (a caller that gave up at 30 s spoke over it).
    answer_timeout_secs: float | None = None
    max_call_secs: float = 180.0
    tools: Sequence[Any] | None = None  # None: the demo agent's pharmacy tools
    # Tests swap the caller (for example one whose playback reports lie).
    caller_factory: Callable[..., EvalCaller] = EvalCaller
    on_verdict: Callable[[CallVerdict], None] | None = None
    # Who plays a simulated caller whose scenario says ``service: auto`` (or none):
    # None picks OpenAI's chat with OPENAI_API_KEY set, else the local model.
    simulator: ChatLLM | None = None
    _local_brain: Any = field(default=None, repr=False)
    _voice: Any = field(default=None, repr=False)

    def answer_wait_secs(self, mode: Mode) -> float:
        """The caller's wait for an answer in ``mode`` (see ``answer_timeout_secs``)."""
        if self.answer_timeout_secs is not None:
            return self.answer_timeout_secs
        return LOCAL_ANSWER_SECS if _slow_brain(mode, self) else ANSWER_SECS


class BotText(InlineObserver):
    """The bot's words as they come out of the brain, each with when (the call's clock).

    Text deltas, not whole responses: a response's text is only complete at its
    end frame, which a cut or a failed response may never push.
    """

    frame_types: ClassVar[tuple[type[Frame], ...]] = (LLMTextFrame,)

    def __init__(self, now_ms: Callable[[], float]) -> None:
        super().__init__()
        self._now = now_ms
        self.deltas: list[tuple[float, str]] = []

    def observe(self, data: FramePushed, first: bool) -> None:
        if data.direction is FrameDirection.DOWNSTREAM and isinstance(data.frame, LLMTextFrame):
            self.deltas.append((self._now(), data.frame.text))

    def since(self, t_ms: float) -> str:
        """What the bot said from ``t_ms`` on (a simulated caller hears it)."""
        return "".join(text for at, text in self.deltas if at >= t_ms).strip()


class RecordingBrain:
    """A brain that notes the context of every response it is asked for, on the call's clock."""

    def __init__(self, inner: Any, now_ms: Callable[[], float]) -> None:
        self.inner = inner
        self._now = now_ms
        self.contexts: list[BrainContext] = []

    def respond(self, request: Any) -> Any:
        """The inner brain's response, after noting what it was asked with."""
        self.contexts.append(BrainContext(self._now(), tuple(request.messages)))
        return self.inner.respond(request)

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        """The inner brain's transcription."""
        text: str | None = await self.inner.transcribe(pcm16, sample_rate)
        return text


class RecordingSpeculativeBrain(RecordingBrain):
    """:class:`RecordingBrain` for a brain that starts replies early (the local engines):
    the server still hands it its speculations, and each response's context is noted."""

    def speculate(self, request: Any) -> Any:
        """The inner brain's speculation (not a response: nothing is noted)."""
        return self.inner.speculate(request)

    def respond(self, request: Any, speculation: Any = None) -> Any:
        """The inner brain's response, replaying ``speculation``, after noting its context."""
        self.contexts.append(BrainContext(self._now(), tuple(request.messages)))
        return self.inner.respond(request, speculation)


def recording(inner: Any, now_ms: Callable[[], float]) -> RecordingBrain:
    """``inner`` with every response's context noted, speculative or not."""
    from voxpipe.transports.realtime_server.brains import SpeculativeBrain

    if isinstance(inner, SpeculativeBrain):
        return RecordingSpeculativeBrain(inner, now_ms)
    return RecordingBrain(inner, now_ms)


async def run_suite(scenarios: Sequence[Scenario], options: EvalOptions) -> list[CallVerdict]:
    """Every scenario in every mode, ``repeat`` times; verdicts in run order."""
    voice = options._voice = options._voice or _Voice()
    verdicts = []
    for scenario in scenarios:
        lines = [voice.line(turn) for turn in scenario.turns]
        for mode in options.modes:
            for attempt in range(1, options.repeat + 1):
                verdict = await run_one(scenario, lines, mode, attempt, options)
                verdicts.append(verdict)
                if options.on_verdict is not None:
                    options.on_verdict(verdict)
    return verdicts


async def run_one(
    scenario: Scenario, lines: Sequence[bytes], mode: Mode, attempt: int, options: EvalOptions
) -> CallVerdict:
    """One call of ``scenario``, graded from its artifacts."""
    call_dir = options.out_dir / _slug(scenario.name) / f"{mode.value}-{attempt}"
    try:
        call_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{call_dir}: cannot create the output directory ({exc})") from exc
    await _call(scenario, lines, mode, call_dir, options)
    # In a worker thread: an LLM judge blocks on its model (or on a server on this loop).
    record = await asyncio.to_thread(load_record, call_dir)
    checks = await asyncio.to_thread(grade, scenario, record, options.judge)
    return CallVerdict(scenario.name, mode.value, attempt, tuple(checks), call_dir)


async def _call(
    scenario: Scenario, lines: Sequence[bytes], mode: Mode, call_dir: Path, options: EvalOptions
) -> None:
    clock = MonotonicClock()
    sim = scenario.simulation
    cues = CallerCues(
        [t.send_after for t in scenario.turns] if sim is None else [None] * sim.max_turns,
        settle_ms=options.settle_ms,
        answer_timeout_ms=options.answer_wait_secs(mode) * 1000,
    )
    bot_text = BotText(clock.now_ms)
    persona = None
    next_line = None
    if sim is not None:
        chat = await _simulator(sim, options)
        persona = PersonaConversation(
            sim.persona, sim.goal, max_turns=sim.max_turns, end_call=chat.calls_tools
        )
        next_line = _persona_lines(persona, chat, bot_text, cues, options)
    caller = options.caller_factory(lines, cues, clock=clock, next_line=next_line)
    if next_line is not None:
        next_line.caller = caller  # it reads when the caller's last line ended
    instructions, tap = _agent(scenario, options)
    async with _brain_endpoint(scenario, mode, options, clock) as (url, key, recorder):
        graph = build_call_graph(
            caller,
            mode,
            instructions=instructions,
            tools=options.tools if options.tools is not None else _demo_tools(),
            tap=tap,
            server_url=url,
            api_key=key,
            realtime_limits=_limits(mode, options),
        )
        timeline = Timeline()
        instruments = instrument_call(caller, graph, timeline)
        observers = [TimelineObserver(timeline, clock.now_ms), bot_text, *instruments.observers]
        timeline.add(clock.now_ms(), EventKind.CALL_STARTED, mode=mode.value)
        async with CallSession(graph, observers=observers, end_timeout_secs=10) as call:
            await _until_listening(graph, mode, call)
            cues.ready(clock.now_ms())
            with contextlib.suppress(TimeoutError):  # graded as it stands: lines never said
                await call.run_until_input_ends(
                    quiet_secs=2.5,
                    answer_timeout_secs=options.answer_wait_secs(mode),
                    # A simulated caller's every line waits on its LLM first.
                    max_secs=_call_budget_secs(scenario, mode, options),
                )
        ended = clock.now_ms()
        timeline.add(ended, EventKind.CALL_ENDED)
        instruments.finish()
        write_outputs(call_dir, caller, timeline, graph)
        report_call(call_dir, instruments)
        bot_audio = tuple(merge_spans(caller.bot_chunks))
        heard_text = None
        if recorder is not None and options.brain == "local":
            heard_text = await _heard_text(call_dir, caller, bot_audio, options)
        record = CallRecord(
            lines=tuple(caller.line_spans),
            bot_audio=bot_audio,
            events=tuple(timeline.events),
            contexts=tuple(recorder.contexts) if recorder is not None else None,
            bot_words=() if recorder is not None and options.brain == "scripted" else None,
            ended_ms=ended,
            bot_text=tuple(bot_text.deltas),
            caller_turns=tuple(persona.turns) if persona is not None else None,
            heard_text=heard_text,
        )
        (call_dir / RECORD_FILE).write_text(record_json(record, caller.bot_chunks) + "\n")


async def _heard_text(
    call_dir: Path, caller: EvalCaller, bot_audio: Sequence[Span], options: EvalOptions
) -> tuple[HeardText, ...]:
    """Each cut reply's audio up to the cut, from ``call.wav``, as the local STT hears it.

    The local voice's words run together (no tone per word to count), so the
    barge-in grader counts the words of this transcript against the context.
    """
    stt = (await _local_brain(options)).engines.stt
    pcm, rate = await asyncio.to_thread(bot_track, call_dir / "call.wav")
    heard = []
    for turn, span in cut_replies(caller.line_spans, bot_audio):
        audio = heard_audio(pcm, rate, caller.bot_chunks, span)
        text = await asyncio.to_thread(stt.transcribe, audio, rate) if audio else ""
        heard.append(HeardText(turn, span, str(text or "").strip()))
    return tuple(heard)


class _PersonaLines:
    """A simulated caller's next line, made when it is due: the persona LLM, then the voice."""

    def __init__(
        self,
        persona: PersonaConversation,
        chat: ChatLLM,
        bot_text: BotText,
        cues: CallerCues,
        voice: _Voice,
    ) -> None:
        self.persona = persona
        self.chat = chat
        self.bot_text = bot_text
        self.cues = cues
        self.voice = voice
        self.caller: EvalCaller | None = None

    async def __call__(self, index: int) -> bytes | None:
        if self.persona.done:
            return None
        spans = self.caller.line_spans if self.caller is not None else []
        self.persona.bot_said(self.bot_text.since(spans[-1].end_ms if spans else 0.0))
        try:
            tools = [END_CALL_TOOL] if self.persona.end_call else None
            reply = await asyncio.to_thread(
                self.chat.complete, self.persona.prompt(), tools=tools, max_tokens=80
            )
        except VoxpipeError as exc:  # graded as the call's failure; the call ends here
            self.persona.failed(str(exc))
            return None
        turn = self.persona.answered(reply.text, reply.calls)
        if turn.hung_up:
            self.cues.hang_up()  # a goodbye said with the hang-up is the last line
        if not turn.text:
            return None
        return await asyncio.to_thread(self.voice.speak, turn.text)


def _persona_lines(
    persona: PersonaConversation,
    chat: ChatLLM,
    bot_text: BotText,
    cues: CallerCues,
    options: EvalOptions,
) -> _PersonaLines:
    return _PersonaLines(persona, chat, bot_text, cues, options._voice or _Voice())


async def _simulator(sim: Simulation, options: EvalOptions) -> ChatLLM:
    """The LLM that plays the caller: the scenario's ``simulator``, else OpenAI or local."""
    if sim.simulator is SimulatorKind.LOCAL:
        return await LocalChat.load()
    if sim.simulator is SimulatorKind.OPENAI or (options.simulator is None and sim.model):
        chat = OpenAIChat.from_env(sim.model)
        if chat is None:
            raise ConfigError(
                "a simulator of service openai needs OPENAI_API_KEY",
                hint="or say simulator: {service: local}",
            )
        return chat
    if options.simulator is not None:
        return options.simulator
    return OpenAIChat.from_env() or await LocalChat.load()


def _limits(mode: Mode, options: EvalOptions) -> RealtimeLimits | None:
    """The in-process local brain may take as long to answer as the caller waits.

    Its first word comes after Whisper and the local LLM's prompt on shared
    cores (over 8 s at load 3 with the tools offered, 40 s at load 18): with
    OpenAI's limits (8 s of no server event, 15 s thinking) the call
    reconnected mid-answer and the caller never heard one; the server's own
    30 s brain deadline failed the response (see ``_brain_endpoint``).
    """
    if not _slow_brain(mode, options):
        return None
    wait_ms = int((options.answer_wait_secs(mode) + LIMIT_MARGIN_SECS) * 1000)
    return RealtimeLimits(thinking_ms=wait_ms, silent_ms=wait_ms)


def _call_budget_secs(scenario: Scenario, mode: Mode, options: EvalOptions) -> float:
    """How long a call may last: a simulated caller's every line waits on its LLM first,
    and no call is cut before each of its lines could wait out its answer."""
    sim = scenario.simulation
    budget = options.max_call_secs * (1 if sim is None else 1 + sim.max_turns)
    turns = len(scenario.turns) if sim is None else sim.max_turns
    return max(budget, (turns + 1) * options.answer_wait_secs(mode))


def _slow_brain(mode: Mode, options: EvalOptions) -> bool:
    """The call's brain is the in-process server on the local engines."""
    return mode is Mode.REALTIME and not _remote(options) and options.brain == "local"


def _remote(options: EvalOptions) -> bool:
    return bool(options.server_url or options.api_key or os.environ.get("OPENAI_API_KEY"))


async def _until_listening(graph: Any, mode: Mode, call: CallSession) -> None:
    """Wait for the realtime brain to listen (a line said while it connects is lost)."""
    if mode is not Mode.REALTIME:
        return
    from voxpipe.call.state import CallState

    service = graph.brain
    async with asyncio.timeout(60):
        while service.machine.state is not CallState.LISTENING:
            if call.finished:
                return
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _brain_endpoint(
    scenario: Scenario, mode: Mode, options: EvalOptions, clock: MonotonicClock
) -> AsyncIterator[tuple[str | None, str | None, RecordingBrain | None]]:
    """The realtime endpoint: as given, or an in-process server with the scenario's brain."""
    if mode is not Mode.REALTIME or _remote(options):
        yield options.server_url, options.api_key, None
        return
    from voxpipe.transports.realtime_server import (
        ScriptedBrain,
        ServerConfig,
        running_realtime_server,
    )
    from voxpipe.transports.realtime_server.faults import fault_from_json

    inner: Any
    if options.brain == "scripted":
        script = list(scenario.brain_script) if scenario.brain_script else None
        inner = ScriptedBrain(script, pace=scenario.brain_pace)
    else:
        inner = await _local_brain(options)
    recorder = recording(inner, clock.now_ms)
    faults = [fault_from_json(dict(f)) for f in scenario.server_faults]
    config = ServerConfig(api_key=SERVER_KEY, fault_injection=bool(faults))
    if _slow_brain(mode, options):  # the server waits on the local engines as the caller does
        wait_s = options.answer_wait_secs(mode) + LIMIT_MARGIN_SECS
        config = dataclasses.replace(config, brain_deadline_s=wait_s, stt_deadline_s=wait_s)
    async with running_realtime_server(config=config, brain=recorder) as server:
        for fault in faults:
            server.arm(fault)
        yield server.realtime_url, SERVER_KEY, recorder


async def _local_brain(options: EvalOptions) -> Any:
    if options._local_brain is None:
        from voxpipe.transports.realtime_server.local_brain import LocalBrain

        options._local_brain = await LocalBrain.load()
    return options._local_brain


def _agent(scenario: Scenario, options: EvalOptions) -> tuple[str, Any]:
    """Instructions and guardrail tap: ``--config``, else the scenario's ``agent:``."""
    path = options.config or scenario.agent
    instructions = scenario.instructions
    tap = None
    if path is not None:
        from voxpipe.guardrails.config import load_agent_file
        from voxpipe.processors.guardrails.input import build_guardrails

        agent = load_agent_file(path)
        tap, _input_filter = build_guardrails(agent.guardrails)
        instructions = instructions or agent.instructions
    if instructions is None:
        from voxpipe.pipelines.demo_agent import INSTRUCTIONS

        instructions = INSTRUCTIONS
    return instructions or DEFAULT_INSTRUCTIONS, tap


def _demo_tools() -> list[Any]:
    from voxpipe.pipelines.demo_agent import TOOLS

    return list(TOOLS)


class _Voice:
    """The caller's voice: the local TTS, each distinct line synthesised once per run."""

    def __init__(self) -> None:
        self._engine: Any = None
        self._cache: dict[str, bytes] = {}

    def line(self, turn: Any) -> bytes:
        if turn.audio is not None:
            from voxpipe.transports.audio_file import load_audio

            return load_audio(turn.audio, LINE_RATE).pcm16
        pieces = [
            bytes(LINE_RATE * 2 * p // 1000) if isinstance(p, int) else self.speak(p)
            for p in turn.parts
        ]
        return b"".join(pieces)

    def speak(self, text: str) -> bytes:
        """``text`` in the caller's voice, 16 kHz PCM16 (the same audio every time)."""
        if text not in self._cache:
            import soxr

            from voxpipe.engines import make_tts

            if self._engine is None:
                # Deterministic: a scenario's caller says its lines the same way in
                # every run, so two runs of a suite differ only by the agent.
                self._engine = make_tts(deterministic=True)
            pcm = b"".join(self._engine.synthesize(text))
            audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
            audio = soxr.resample(audio, self._engine.sample_rate, LINE_RATE)
            self._cache[text] = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        return self._cache[text]


def _slug(name: str) -> str:
    import re

    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    if not slug:
        raise ScenarioError(name, "name", "a scenario needs a name made of letters or digits")
    return slug
