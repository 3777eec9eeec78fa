"""The agent as a participant in a Daily room (pipecat's DailyTransport, daily-python)."""
