"""Phone calls on ``voxpipe serve``: provider media streams as live transports, and their routes."""
