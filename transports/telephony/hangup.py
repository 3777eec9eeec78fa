"""Carry out a configured REST hang-up (:mod:`voxpipe.telephony.hangup` builds the request)."""

from __future__ import annotations

import aiohttp
from loguru import logger

from voxpipe.telephony.hangup import RestHangup

TIMEOUT_S = 5.0


async def hang_up(rest: RestHangup, call_id: str) -> int | None:
    """Ask the provider to hang up ``call_id``; its HTTP status, or None if it could not be asked.

    A failure is logged, never raised: the call is over on our side either way.
    """
    request = rest.request(call_id)
    name = rest.provider.value
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http,
            http.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.form,
                json=request.json,
            ) as response,
        ):
            status = response.status
            detail = (await response.text())[:200] if status >= 400 else ""
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.error(f"could not hang up {name} call {call_id}: {type(exc).__name__}: {exc}")
        return None
    if status >= 400:
        logger.error(f"{name} refused to hang up call {call_id}: HTTP {status} {detail}")
    else:
        logger.info(f"{name} call {call_id} hung up through its REST API (HTTP {status})")
    return status
