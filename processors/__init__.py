"""voxpipe.processors."""
