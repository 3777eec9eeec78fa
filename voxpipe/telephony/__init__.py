"""Sans-I/O cores for phone calls over provider media streams (``voxpipe serve``).

Each decides one thing from strings, bytes and numbers, with time as an
argument: :mod:`~voxpipe.telephony.events` (what any provider's stream says,
as typed events), :mod:`~voxpipe.telephony.stream` (the order and envelope
every provider shares) with :mod:`~voxpipe.telephony.twilio`,
:mod:`~voxpipe.telephony.telnyx` and :mod:`~voxpipe.telephony.plivo` (each
provider's messages, read and built), :mod:`~voxpipe.telephony.codec`
(mu-law and A-law), :mod:`~voxpipe.telephony.marks` (what the caller heard,
from the marks or checkpoints the provider returns),
:mod:`~voxpipe.telephony.webhook` and :mod:`~voxpipe.telephony.signatures`
(is a webhook request signed by the provider),
:mod:`~voxpipe.telephony.replay` (was it answered already),
:mod:`~voxpipe.telephony.answers` (the XML that answers it) and
:mod:`~voxpipe.telephony.resample` (8 kHz to the pipeline's rates and back,
chunk for chunk). ``voxpipe.transports.telephony`` carries them out.
"""
