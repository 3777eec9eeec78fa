"""The realtime service's socket: connect with a secret, read, parse, report how it ended.

Thin I/O around :class:`~voxpipe.call.realtime_call.RealtimeCall`: nothing here
decides what a failure means; it turns the socket's outcomes into the core's
failure signals and server messages into typed ``openai.types.realtime``
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing
from typing import Any

import pydantic
from openai.types.realtime import RealtimeServerEvent
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from voxpipe.call.recovery import FailureSignal, HandshakeRejected, NetworkFailed
from voxpipe.errors import FatalProviderError, RemoteProtocolError, VoxpipeError

CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0


def _event_models() -> dict[str, type[pydantic.BaseModel]]:
    """Server event ``type`` -> its ``openai.types.realtime`` model."""
    (union, *_) = typing.get_args(RealtimeServerEvent)
    members = typing.get_args(union) if typing.get_origin(union) is typing.Union else (union,)
    models: dict[str, type[pydantic.BaseModel]] = {}
    for model in members:
        for name in typing.get_args(model.model_fields["type"].annotation):
            models[name] = model
    return models


# Looked up by type: validating against the whole union tries every model (~180 µs an event).
EVENT_MODELS = _event_models()


def parse_server_event(message: str | bytes) -> pydantic.BaseModel | None:
    """The typed server event in ``message``; None for a type this client does not know.

    Raises :class:`~voxpipe.errors.RemoteProtocolError` for a message that is
    not a JSON object with a ``type``, or that breaks its type's schema.
    """
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"server message is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise RemoteProtocolError("server message has no event type")
    model = EVENT_MODELS.get(data["type"])
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise RemoteProtocolError(
            f"malformed {data['type']} event: {exc.error_count()} errors"
        ) from exc


async def open_socket(url: str, headers: dict[str, str]) -> ClientConnection | FailureSignal:
    """Connect to ``url``; the failure signal when that does not work.

    permessage-deflate is never offered: nearly every byte a call sends is
    base64 audio, which deflate shrinks only to about 70% (base64's six bits a
    character), and compressing it cost 7-15% of a call process's CPU (issue
    19's profile): CPU is what a process with many calls runs out of.
    """
    try:
        return await asyncio.wait_for(
            websocket_connect(uri=url, additional_headers=headers, compression=None),
            CONNECT_TIMEOUT_S,
        )
    except InvalidStatus as exc:
        # The body's error code is not trusted here: a 401 on connect means the
        # secret is stale, which a fresh one fixes.
        return HandshakeRejected(exc.response.status_code)
    except (OSError, TimeoutError, InvalidHandshake, VoxpipeError) as exc:
        return NetworkFailed(f"{type(exc).__name__}: {exc}")


async def close_quietly(ws: Any) -> None:
    """Close a socket we are done with, without waiting long for the peer."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S)


def minting_refused(exc: FatalProviderError) -> FailureSignal:
    """The long-lived key was refused while minting a secret."""
    return HandshakeRejected(401, exc.code)
