"""Daily rooms: who is in the room, whom the agent listens to, and why a join failed (sans-I/O)."""
