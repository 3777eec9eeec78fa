"""voxpipe.realtime_server."""
