"""A simulated caller's side of the conversation: sans-I/O, whatever LLM plays it.

pipecat's simulations hand a persona LLM the bot's turns as ``user`` messages
and keep its own as ``assistant`` ones, with one tool, ``end_call``, to hang
up; voxpipe keeps that shape so a persona behaves alike in both. This core
builds each prompt, reads each completion (a line to say, a hang-up, or
both) and counts the turns against ``max_turns``; the eval runner does the
I/O (the LLM, the voice, the call). The caller speaks first: voxpipe's
agents wait for the caller, so the first prompt is the usual greeting. A
model that cannot call tools (the local 0.5B one) hangs up by saying goodbye.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

END_CALL = "end_call"

END_CALL_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": END_CALL,
        "description": (
            "Hang up the phone. Saying goodbye does not end the call; this does. Call it "
            "as soon as your goal is achieved, or as soon as it is clear the assistant "
            "cannot help. A short goodbye may be said in the same turn."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "success": {
                    "type": "boolean",
                    "description": "Whether you achieved your goal on this call.",
                },
                "reason": {
                    "type": "string",
                    "description": "One sentence on why you are ending the call.",
                },
            },
            "required": ["success", "reason"],
        },
    },
}

INSTRUCTION = """\
You are a person phoning a business; a voice assistant answers. Stay in character; \
never mention being simulated, a test or an AI.

Who you are: {persona}

What you want from this call: {goal}

The assistant's words arrive as the user's messages. Reply with only what you would \
say next: one or two short spoken sentences, first person, plain words (no lists, \
markdown, quotes or stage directions). Ask for one thing at a time.

{ending}"""

ENDING_BY_TOOL = (
    "When your goal is achieved, or the assistant clearly cannot help, call the "
    f"{END_CALL} tool with whether you succeeded and why (you may say a short goodbye "
    "in the same turn)."
)
ENDING_BY_GOODBYE = (
    "When your goal is achieved, or the assistant clearly cannot help, say goodbye: "
    "that ends the call."
)
# A caller's goodbye, for a model that cannot call tools (the local 0.5B one).
GOODBYE = re.compile(r"\b(good ?bye|bye|that's all|that is all)\b", re.IGNORECASE)

# voxpipe's agents wait for the caller to speak first; the persona opens on the usual words.
PICKED_UP = "Hello, how can I help you?"
SILENT_BOT = "(The assistant said nothing.)"
MAX_LINE_CHARS = 300  # a caller's turn is a sentence or two, not a speech


@dataclass(frozen=True)
class CallerTurn:
    """What the persona did in one turn: a line to say, a hang-up, or both."""

    text: str  # "" when it only hung up
    hung_up: bool = False
    success: bool | None = None  # the persona's own view, from end_call (the judge decides)
    reason: str = ""
    error: str = ""  # the persona LLM failed (the caller hung up): why

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "hung_up": self.hung_up,
            "success": self.success,
            "reason": self.reason,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallerTurn:
        success = data.get("success")
        return cls(
            text=str(data.get("text", "")),
            hung_up=bool(data.get("hung_up", False)),
            success=success if isinstance(success, bool) else None,
            reason=str(data.get("reason", "")),
            error=str(data.get("error", "")),
        )


@dataclass(frozen=True)
class ChatCall:
    """A tool call in a chat completion (the name and its JSON arguments)."""

    name: str
    arguments: str


class PersonaConversation:
    """The persona LLM's context, turn by turn, and its turn budget."""

    def __init__(self, persona: str, goal: str, *, max_turns: int, end_call: bool = True) -> None:
        """``end_call``: the model hangs up with the tool; else a goodbye in its line does."""
        ending = ENDING_BY_TOOL if end_call else ENDING_BY_GOODBYE
        self.instruction = INSTRUCTION.format(persona=persona, goal=goal, ending=ending)
        self.end_call = end_call
        self.max_turns = max_turns
        self.turns: list[CallerTurn] = []
        self._messages: list[dict[str, Any]] = [{"role": "system", "content": self.instruction}]
        self._bot_pending: list[str] = []

    @property
    def done(self) -> bool:
        """The persona hung up, or has used every turn it had."""
        hung_up = bool(self.turns) and self.turns[-1].hung_up
        return hung_up or len(self.turns) >= self.max_turns

    def bot_said(self, text: str) -> None:
        """The bot's words since the caller's last line (the persona hears them next)."""
        if text.strip():
            self._bot_pending.append(text.strip())

    def prompt(self) -> list[dict[str, Any]]:
        """The messages for the persona's next turn (the bot's words as the user's)."""
        heard = (" ".join(self._bot_pending) or SILENT_BOT) if self.turns else PICKED_UP
        return [*self._messages, {"role": "user", "content": heard}]

    def answered(self, text: str, calls: Sequence[ChatCall] = ()) -> CallerTurn:
        """Read the persona's completion: its line, and whether it called end_call."""
        prompt = self.prompt()
        line = clean_line(text)
        end = next((c for c in calls if c.name == END_CALL), None)
        if end is None and not line:
            # Nothing to say and no hang-up: a caller with nothing left to ask leaves.
            turn = CallerTurn("", hung_up=True, reason="the persona LLM gave no line")
        elif end is None and not self.end_call and GOODBYE.search(line):
            turn = CallerTurn(line, hung_up=True, reason="said goodbye")
        elif end is None:
            turn = CallerTurn(line)
        else:
            args = _arguments(end.arguments)
            success = args.get("success")
            turn = CallerTurn(
                line,
                hung_up=True,
                success=success if isinstance(success, bool) else None,
                reason=str(args.get("reason", "")),
            )
        self._messages = [*prompt, {"role": "assistant", "content": turn.text or "(hangs up)"}]
        self._bot_pending = []
        self.turns.append(turn)
        return turn

    def failed(self, error: str) -> CallerTurn:
        """The persona LLM could not answer: the caller hangs up, and the call says why."""
        turn = CallerTurn("", hung_up=True, error=error)
        self.turns.append(turn)
        return turn


def clean_line(text: str) -> str:
    """What a caller would say of a completion: no quotes, labels, stage directions or JSON."""
    line = re.sub(r"\*[^*]*\*|\([^)]*\)|\[[^\]]*\]", " ", text or "")
    line = re.sub(r"\{.*\}", " ", line, flags=re.DOTALL)  # a tool call written out as text
    line = re.sub(r"^\s*(caller|me|user|customer)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = " ".join(line.replace('"', " ").split())
    if len(line) > MAX_LINE_CHARS:
        cut = line[:MAX_LINE_CHARS]
        end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
        line = cut[: end + 1] if end > 0 else cut
    return line.strip()


def _arguments(raw: str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
