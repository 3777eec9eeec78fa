"""Guardrail processors: the output tap, the input filter, and their policies' drivers.

- :mod:`.tap`: :class:`~.tap.GuardrailTap`, after the brain: unsafe words are never heard.
- :mod:`.gate`: the word gate the tap holds text in until it is scanned.
- :mod:`.input`: :class:`~.input.GuardrailInputFilter`, refuses a caller's turn (chained path).
- :mod:`.realtime`: wiring the tap into the realtime graph.
- :mod:`.moderation`: OpenAI's moderation endpoint as a (slow, asynchronous) policy.

The policies themselves are sans-I/O, in :mod:`voxpipe.guardrails`.
"""
