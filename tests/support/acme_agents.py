"""Acme's two agents, triage and billing: the agent file, their scripted lines, the caller.

The multi-agent call tests share this call: the caller says who they are, then
asks about their bill; triage greets them, then says :data:`TRANSFER_LINE` and
calls ``transfer_to_billing``; billing answers with :data:`BILLING_LINE`.
:func:`agent_file` writes the ``[agents]`` file each test varies (billing's
tools, the voices, whether billing may hand back).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipecat.services.llm_service import FunctionCallParams

from voxpipe.transports.realtime_server.agent_brain import AgentLine, AgentScript

TRIAGE = "You are Acme's triage agent. Greet the caller, find out what they need."
BILLING = "You are Acme's billing agent. You answer billing questions."
GREETING = "Nice to meet you. How can I help?"
TRANSFER_LINE = "Let me transfer you to our billing team."
BILLING_LINE = "This is billing. Your balance is forty two dollars."
REASON = "billing question"
# What a model would say in each response, per agent (the chat stand-in and the
# agents brain answer as the agent their system message or session names).
SCRIPTS = {
    "triage": AgentScript(
        TRIAGE,
        [AgentLine(GREETING), AgentLine(TRANSFER_LINE, "transfer_to_billing", {"reason": REASON})],
    ),
    "billing": AgentScript(BILLING, [AgentLine(BILLING_LINE)]),
}
# Turn 1 says who is calling; turn 2 asks for billing (the transfer).
CALLER = [1500, "Hello, my name is John Smith.", 5000, "I have a question about my bill."]


def agent_file(
    *,
    billing_tools: Sequence[str] = (),
    voices: tuple[str, str] | None = None,
    billing_hands_back: bool = True,
) -> str:
    """The agent file: triage starts and may transfer to billing.

    Args:
        billing_tools: the application's tools billing may call.
        voices: (triage's, billing's) ``voice``, or None for the call's own.
        billing_hands_back: billing may transfer back to triage.
    """
    triage_voice, billing_voice = (f'voice = "{v}"\n' for v in voices) if voices else ("", "")
    tools = f"tools = {list(billing_tools)!r}\n".replace("'", '"') if billing_tools else ""
    back = 'handoffs = ["triage"]\n' if billing_hands_back else ""
    return (
        'start = "triage"\n\n'
        f'[agents.triage]\ninstructions = "{TRIAGE}"\nhandoffs = ["billing"]\n{triage_voice}\n'
        f'[agents.billing]\ninstructions = "{BILLING}"\n{tools}{back}{billing_voice}'
    )


async def get_balance(params: FunctionCallParams) -> None:
    """The caller's account balance (billing's tool)."""
    await params.result_callback({"balance_usd": 42})
