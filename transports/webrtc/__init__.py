"""Browser calls over WebRTC: ``voxpipe serve`` (:mod:`.app`), its transport and page."""
