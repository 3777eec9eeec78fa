"""Sans-I/O cores for browser calls over WebRTC (``voxpipe serve``).

Each decides one thing from strings and numbers, with time as an argument:
:mod:`~voxpipe.webrtc.offer` (is an SDP offer answerable, which ICE
candidates to use), :mod:`~voxpipe.webrtc.call_tokens` (who may call, who may
rejoin), :mod:`~voxpipe.webrtc.liveness` (is the browser still there) and
:mod:`~voxpipe.webrtc.playout` (what the page has played, per utterance). The
aiohttp app and the aiortc transport in ``voxpipe.transports`` carry them out.
"""
