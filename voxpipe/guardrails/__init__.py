"""voxpipe.guardrails: output and input guardrails for voice agents.

The sans-I/O pieces the guardrail tap is built on: the policy protocol and
its verdicts, the built-in deny and PII policies, the debounce core and the
agent-file configuration. The moderation-endpoint policy lives in
:mod:`voxpipe.processors.guardrails.moderation` (it loads the ``openai`` client).
"""

from voxpipe.guardrails.config import (
    AgentConfig,
    GuardrailConfig,
    load_agent_file,
    parse_agent_config,
)
from voxpipe.guardrails.debounce import (
    TIMED_OUT,
    CheckDue,
    CheckFailure,
    GuardrailDebouncer,
    Judgement,
)
from voxpipe.guardrails.deny import PROMPT_INJECTION_PATTERNS, DenyPolicy
from voxpipe.guardrails.pii import PiiKind, PiiPolicy
from voxpipe.guardrails.policy import (
    FailMode,
    GuardrailPolicy,
    IncrementalScanner,
    Outcome,
    Verdict,
)

__all__ = [
    "PROMPT_INJECTION_PATTERNS",
    "TIMED_OUT",
    "AgentConfig",
    "CheckDue",
    "CheckFailure",
    "DenyPolicy",
    "FailMode",
    "GuardrailConfig",
    "GuardrailDebouncer",
    "GuardrailPolicy",
    "IncrementalScanner",
    "Judgement",
    "Outcome",
    "PiiKind",
    "PiiPolicy",
    "Verdict",
    "load_agent_file",
    "parse_agent_config",
]
