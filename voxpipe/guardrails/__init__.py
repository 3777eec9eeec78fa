"""voxpipe.guardrails."""
