"""voxpipe.call."""
