"""voxpipe.realtime."""
