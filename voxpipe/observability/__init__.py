"""voxpipe.observability."""
