"""voxpipe.processors.local."""
