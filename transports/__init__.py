"""voxpipe.transports."""
