"""The ``--judge module:factory`` plug-in: an LLM judge for ``eval:`` criteria.

voxpipe grades what it can deterministically; a criterion in words
(``eval: "says the pharmacy opens at nine"``) needs a judge. The factory is
called with no arguments and returns an object with
``judge(criterion, text, conversation) -> JudgeVerdict``
(:class:`~voxpipe.evals.graders.Judge`). Without one such criteria are
reported as not graded rather than guessed. ``--judge openai`` is
:func:`openai_judge`, OpenAI's chat model, and is the judge by default when
``OPENAI_API_KEY`` is set; a judge that fails (a bad key, no JSON verdict)
leaves its criterion not graded, with the error as evidence.
"""

from __future__ import annotations

import importlib
from typing import Any

from voxpipe.errors import ConfigError, RemoteProtocolError
from voxpipe.evals.chat import ChatLLM
from voxpipe.evals.graders import Judge, JudgeVerdict

__all__ = ["ChatJudge", "Judge", "JudgeVerdict", "load_judge", "openai_judge"]


def load_judge(spec: str) -> Judge:
    """The judge ``module:factory`` builds (``openai``: :func:`openai_judge`); a clear error
    if it cannot be loaded."""
    if spec == "openai":
        return openai_judge()
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ConfigError(f"--judge {spec!r}: expected module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--judge {spec!r}: cannot import {module_name} ({exc})") from None
    factory: Any = getattr(module, factory_name, None)
    if not callable(factory):
        raise ConfigError(f"--judge {spec!r}: {module_name} has no callable {factory_name}")
    judge = factory()
    if not callable(getattr(judge, "judge", None)):
        raise ConfigError(f"--judge {spec!r}: the factory's result has no judge() method")
    return judge  # type: ignore[no-any-return]


JUDGE_INSTRUCTION = """\
You grade a phone call between a caller and a voice agent against one criterion. \
Judge only what the agent said, as written in the transcript; do not assume anything \
it did not say. Answer with a JSON object: "passed" (true when the criterion is met) \
and "reason" (one short sentence quoting the words that decided it)."""

VERDICT_SCHEMA: dict[str, Any] = {
    "name": "verdict",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {"passed": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["passed", "reason"],
        "additionalProperties": False,
    },
}


class ChatJudge:
    """An LLM judge over a chat model: the criterion, the transcript, a JSON verdict."""

    def __init__(self, chat: ChatLLM) -> None:
        self.chat = chat

    def judge(self, criterion: str, text: str, conversation: list[dict[str, str]]) -> JudgeVerdict:
        """The model's verdict; a reply that is not one raises RemoteProtocolError."""
        said = "\n".join(
            f"{'Caller' if m.get('role') == 'user' else 'Agent'}: {m.get('content', '')}"
            for m in conversation
        )
        prompt = f"Transcript:\n{said or '(nothing)'}\n\n"
        if text:
            prompt += f"The agent's words under judgement: {text}\n\n"
        prompt += f"Criterion: {criterion}"
        reply = self.chat.complete(
            [{"role": "system", "content": JUDGE_INSTRUCTION}, {"role": "user", "content": prompt}],
            json_schema=VERDICT_SCHEMA,
            max_tokens=200,
        )
        return parse_verdict(reply.text)


def parse_verdict(text: str) -> JudgeVerdict:
    """A judge's JSON verdict (``{"passed": bool, "reason": str}``), strictly."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        raise RemoteProtocolError(f"the judge's reply is not JSON: {text[:200]!r}") from None
    if not isinstance(data, dict) or not isinstance(data.get("passed"), bool):
        raise RemoteProtocolError(f"the judge's reply has no true/false 'passed': {text[:200]!r}")
    return JudgeVerdict(bool(data["passed"]), str(data.get("reason", "")))


def openai_judge() -> ChatJudge:
    """``--judge openai``: OpenAI's chat model (``OPENAI_API_KEY``; ``VOXPIPE_JUDGE_MODEL``)."""
    import os

    from voxpipe.evals.chat import OpenAIChat

    chat = OpenAIChat.from_env(os.environ.get("VOXPIPE_JUDGE_MODEL") or None)
    if chat is None:
        raise ConfigError(
            "--judge openai needs OPENAI_API_KEY", hint="or give --judge module:factory"
        )
    return ChatJudge(chat)
