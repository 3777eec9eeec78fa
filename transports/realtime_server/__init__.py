"""voxpipe.transports.realtime_server."""
