"""Every server event the Realtime protocol defines has a place in the realtime call.

The ``openai`` package's ``RealtimeServerEvent`` union names each event type a
server may send. The call handles it, passes it on to pipecat as it is, or
skips it on purpose (``UNUSED``): a type in none of them is one this client
was never taught, and a name in them that the protocol lacks is a typo.
"""

from __future__ import annotations

import random
import typing

from openai.types.realtime import RealtimeServerEvent

from voxpipe.call import RealtimeCall
from voxpipe.call.server_events import FORWARD_AS_IS, UNUSED


def protocol_event_types() -> set[str]:
    union = typing.get_args(RealtimeServerEvent)[0]  # Annotated[Union[...], discriminator]
    return {
        literal
        for model in typing.get_args(union)
        for literal in typing.get_args(model.model_fields["type"].annotation)
    }


def test_each_protocol_event_is_handled_forwarded_or_skipped_on_purpose() -> None:
    protocol = protocol_event_types()
    assert len(protocol) > 40  # the union was read, not an empty set
    handled = set(RealtimeCall(random=random.random, new_id=str).handles)
    places = {"handled": handled, "forwarded": FORWARD_AS_IS, "skipped": UNUSED}
    assert protocol - handled - FORWARD_AS_IS - UNUSED == set()
    for name, types in places.items():
        assert types <= protocol, f"{name} names events the protocol does not have"
        for other, more in places.items():
            assert name == other or not types & more, f"{name} and {other} overlap"
