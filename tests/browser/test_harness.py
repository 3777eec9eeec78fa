"""The browser harness itself: headless Chromium in a loopback-only network namespace, driven
over the DevTools protocol, loads real pages from real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from browser import BrowserError, in_loopback_netns, launch_browser
from loopback import serving

PAGE = Path(__file__).resolve().parents[2] / "transports" / "webrtc" / "page"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANSWER_PAGE = """<!doctype html><meta charset="utf-8"><title>answer</title>
<script>window.answer = 6 * 7;</script>"""


def _answer_app() -> web.Application:
    async def index(_: web.Request) -> web.Response:
        return web.Response(text=ANSWER_PAGE, content_type="text/html")

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.query["say"])

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/echo", echo)
    return app


def _voxpipe_page_app(requests: list[str]) -> web.Application:
    """The package's page as `voxpipe serve` serves it, recording every request."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        requests.append(f"{request.method} {request.path}")
        return await handler(request)

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE / "index.html")

    app = web.Application(middlewares=[record])
    app.router.add_get("/", index)
    app.router.add_static("/static/", PAGE)
    return app


@in_loopback_netns
async def test_a_page_on_loopback_is_evaluated_in_headless_chromium() -> None:
    # Inside the namespace nothing but loopback exists: no route off this machine.
    assert [name for _, name in socket.if_nameindex()] == ["lo"]
    async with serving(_answer_app()) as url, launch_browser() as browser:
        await browser.navigate(url + "/")
        assert await browser.evaluate("window.answer") == 42
        said = await browser.evaluate("fetch('/echo?say=hello').then((r) => r.text())")
        assert said == "hello"  # promises are awaited
        try:
            await browser.evaluate("no_such_name + 1")
        except BrowserError as error:
            assert "no_such_name is not defined" in str(error)
        else:
            raise AssertionError("a page error must raise")


@in_loopback_netns
async def test_the_voxpipe_page_loads_idle_without_autostart() -> None:
    requests: list[str] = []
    async with serving(_voxpipe_page_app(requests)) as url, launch_browser() as browser:
        await browser.navigate(url + "/")
        state = await browser.wait_for("window.voxpipe && window.voxpipe.state")
        page = await browser.evaluate(
            "({talk: document.getElementById('talk').disabled,"
            " hangup: document.getElementById('hangup').disabled,"
            " status: document.getElementById('status').textContent,"
            " voxpipe: window.voxpipe})"
        )
    assert state == "idle"
    assert page["talk"] is False and page["hangup"] is True  # Talk is offered, nothing to hang up
    assert page["status"] == "Ready. Press Talk to start a call."
    assert page["voxpipe"]["errors"] == [] and page["voxpipe"]["counters"]["offers"] == 0
    # Without ?autostart=1 the page asks for no microphone and sends no offer.
    assert requests[:2] == ["GET /", "GET /static/voxpipe.js"]
    assert not [r for r in requests if "/api/" in r]
    assert not [line for line in browser.console if line.startswith("uncaught")]
