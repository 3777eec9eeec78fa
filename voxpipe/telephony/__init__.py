"""Sans-I/O cores for phone calls over provider media streams (``voxpipe serve``).

Each decides one thing from strings, bytes and numbers, with time as an
argument: :mod:`~voxpipe.telephony.twilio` (Twilio Media Streams messages,
read and built), :mod:`~voxpipe.telephony.marks` (what the caller heard,
from the marks Twilio returns), :mod:`~voxpipe.telephony.webhook` (is a
webhook request signed by Twilio; the TwiML that answers it) and
:mod:`~voxpipe.telephony.resample` (8 kHz to the pipeline's rates and back,
chunk for chunk). ``voxpipe.transports.telephony`` carries them out.
"""
