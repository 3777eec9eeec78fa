"""Headless Chromium for tests, driven over the DevTools protocol with aiohttp (no tests here).

Browser tests run inside a loopback-only network namespace, so neither the browser nor a server
under test can reach anything beyond 127.0.0.1 (and Chromium gathers no other address)::

    @in_loopback_netns
    async def test_page(tmp_path: Path) -> None:
        async with serving(app) as url, launch_browser() as browser:
            await browser.navigate(url)
            assert await browser.evaluate("window.answer") == 42

Outside the namespace, ``@in_loopback_netns`` re-runs that very test in a child pytest under
``unshare --net`` (``ip link set lo up``, ``VOXPIPE_IN_NETNS=1``) and passes, skips or fails
with it, showing the child's output on failure; a child still running shortly before the
test's timeout is killed after dumping its stacks. Fixtures of such a test are set up in both
processes: keep servers and browsers inside the body. Without Chromium, ``unshare``, ``ip`` or
root the test skips with a loud reason (and a warning in pytest's summary); with
``VOXPIPE_REQUIRE_BROWSER=1`` (CI) that skip is a failure. Tests so decorated carry the
``browser`` marker (``-m "not browser"`` leaves them out).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec

import aiohttp
import pytest

IN_NETNS_VAR = "VOXPIPE_IN_NETNS"
REQUIRE_VAR = "VOXPIPE_REQUIRE_BROWSER"
DEFAULT_TIMEOUT_S = 300.0  # pyproject's pytest-timeout
CHILD_MARGIN_S = 15.0

# Measured with Chromium 156: each flag is needed for a page to talk WebRTC to a loopback peer.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",  # grant the microphone without asking
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",  # else no ICE candidate on a loopback-only host
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # real 127.0.0.1, not a .local name
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-port=0",  # Chromium picks a port and writes it to DevToolsActivePort
    "--remote-debugging-address=127.0.0.1",
)

P = ParamSpec("P")


class BrowserError(RuntimeError):
    """The browser failed to start, navigate, or evaluate (the message carries its words)."""


def chromium_path() -> str | None:
    """Debian's Chromium (``/usr/bin/chromium``) or a ``chromium`` on PATH."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@functools.cache
def browser_unavailable() -> str | None:
    """Why browser tests cannot run on this machine, or None when they can."""
    if chromium_path() is None:
        return "Chromium is not installed (run `make test` as root, or `apt-get install chromium`)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "`unshare` (util-linux) or `ip` (iproute2) is missing"
    if os.geteuid() != 0:
        return "a loopback-only network namespace (`unshare --net`) needs root"
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"`unshare --net` failed: {probe.stderr.strip()}"
    return None


def require_browser() -> None:
    """Skip loudly when browser tests cannot run here (fail under VOXPIPE_REQUIRE_BROWSER=1)."""
    reason = browser_unavailable()
    if reason is None:
        return
    message = f"BROWSER TESTS NOT RUN: {reason}"
    if os.environ.get(REQUIRE_VAR) == "1":
        pytest.fail(f"{message} ({REQUIRE_VAR}=1 makes this a failure)", pytrace=False)
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


def in_loopback_netns(
    test: Callable[P, Awaitable[None]],
) -> Callable[P, Awaitable[None]]:
    """Run an async test inside a loopback-only network namespace (see the module docstring)."""

    @functools.wraps(test)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        require_browser()
        if os.environ.get(IN_NETNS_VAR) == "1":
            await test(*args, **kwargs)
            return
        # The parent's own pytest-timeout started first: give up a little before it does, so
        # the failure shows the child's output.
        budget = _timeout_mark(wrapper) - CHILD_MARGIN_S
        await _rerun_in_netns(test_file, budget)

    test_file = Path(inspect.getfile(test)).resolve()

    return pytest.mark.browser(wrapper)  # type: ignore[no-any-return]


def _timeout_mark(test: Callable[..., object]) -> float:
    for mark in getattr(test, "pytestmark", []):
        if mark.name == "timeout" and mark.args:
            return float(mark.args[0])
    return DEFAULT_TIMEOUT_S


async def _rerun_in_netns(test_file: Path, budget_s: float) -> None:
    current = os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0]  # "<nodeid> (call)"
    node = str(test_file) + current[current.index("::") :]
    with tempfile.TemporaryDirectory(prefix="voxpipe-netns-") as tmp:
        report = Path(tmp) / "report.xml"
        script = f'ip link set lo up && {IN_NETNS_VAR}=1 exec "$0" "$@"'
        # -P: the same sys.path as the parent's pytest (no working directory in front).
        command = ["unshare", "--net", "sh", "-c", script, sys.executable, "-P", "-m", "pytest"]
        command += ["-q", "-p", "no:cacheprovider", f"--junitxml={report}", node]
        # A hang shows where it hangs, and what the test printed, before the kill.
        command += ["--capture=tee-sys", "-o", f"faulthandler_timeout={budget_s - 5:.0f}"]
        output, returncode = await _run(command, budget_s)
        outcome = _outcome(report) if report.exists() else "no report"
    if returncode == 0 and outcome == "passed":
        return
    if returncode == 0 and outcome.startswith("skipped"):
        pytest.skip(f"in the network namespace: {outcome}")
    pytest.fail(
        f"the test failed in its network namespace ({outcome}, exit {returncode}):\n{output}",
        pytrace=False,
    )


async def _run(command: list[str], budget_s: float) -> tuple[str, int | None]:
    """The command's output and exit code; None when it ran out of time and was killed."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    output = asyncio.ensure_future(process.stdout.read())
    try:
        done, _ = await asyncio.wait({output}, timeout=budget_s)
    except BaseException:
        _kill_group(process.pid)
        await process.wait()
        raise
    if not done:
        _kill_group(process.pid)
    text = (await output).decode(errors="replace")
    returncode = await process.wait()
    if not done:
        return f"{text}\n[killed after {budget_s:.0f} s]", None
    return text, returncode


def _outcome(report: Path) -> str:
    cases = ET.parse(report).getroot().findall(".//testcase")
    if len(cases) != 1:
        return f"{len(cases)} tests ran, not 1"
    for tag in ("failure", "error", "skipped"):
        found = cases[0].find(tag)
        if found is not None:
            return f"{'failed' if tag == 'failure' else tag}: {found.get('message', '')}"
    return "passed"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@dataclass
class Browser:
    """One headless Chromium with one page, over one DevTools websocket."""

    process: asyncio.subprocess.Process
    profile: Path
    http: aiohttp.ClientSession
    socket: aiohttp.ClientWebSocketResponse
    session_id: str = ""
    console: list[str] = field(default_factory=list)  # the page's console and uncaught errors
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    async def send(self, method: str, *, page: bool = True, **params: Any) -> dict[str, Any]:
        """A DevTools command, to the page's session (or the browser with ``page=False``)."""
        message_id = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = reply
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if page and self.session_id:
            message["sessionId"] = self.session_id
        await self.socket.send_json(message)
        return await reply

    async def navigate(self, url: str, timeout_s: float = 15.0) -> None:
        """Open ``url`` and wait for its load event."""
        loaded = self._wait_event("Page.loadEventFired")
        result = await self.send("Page.navigate", url=url)
        if result.get("errorText"):
            loaded.cancel()
            raise BrowserError(f"navigating to {url}: {result['errorText']}")
        await asyncio.wait_for(loaded, timeout_s)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression, promises awaited; page errors raise."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} raised: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 10.0) -> Any:
        """Poll ``expression`` until it is truthy; its value. Times out with the console."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r}; console: {self.console}")
            await asyncio.sleep(0.05)

    def stderr_tail(self, chars: int = 3000) -> str:
        """The end of Chromium's own log."""
        log = self.profile / "chromium.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def _wait_event(self, method: str) -> asyncio.Future[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(method, []).append(future)
        return future

    async def _read(self) -> None:
        async for message in self.socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            self._dispatch(json.loads(message.data))
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(BrowserError("the DevTools connection closed"))

    def _dispatch(self, data: dict[str, Any]) -> None:
        reply = self._pending.pop(data.get("id", -1), None)
        if reply is not None and not reply.done():
            if "error" in data:
                reply.set_exception(BrowserError(str(data["error"])))
            else:
                reply.set_result(data.get("result", {}))
            return
        method = data.get("method", "")
        params = data.get("params", {})
        if method == "Runtime.consoleAPICalled":
            words = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"{params['type']}: {words}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.console.append(
                f"uncaught: {details.get('exception', {}).get('description', details['text'])}"
            )
        for waiter in self._waiters.pop(method, []):
            if not waiter.done():
                waiter.set_result(params)


@asynccontextmanager
async def launch_browser(
    fake_microphone: Path | None = None, extra_flags: tuple[str, ...] = ()
) -> AsyncIterator[Browser]:
    """Start headless Chromium; ``fake_microphone`` (a WAV, played once from getUserMedia on:
    give it a second of leading silence) replaces the fake device's beeps."""
    chromium = chromium_path()
    if chromium is None:
        raise BrowserError("Chromium is not installed")
    profile = Path(tempfile.mkdtemp(prefix="voxpipe-chromium-"))
    command = _chromium_command(chromium, profile, fake_microphone, extra_flags)
    with (profile / "chromium.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    http = aiohttp.ClientSession()
    browser: Browser | None = None
    try:
        socket = await http.ws_connect(await _devtools_url(process, profile), max_msg_size=0)
        browser = Browser(process=process, profile=profile, http=http, socket=socket)
        browser._reader = asyncio.create_task(browser._read())
        await _attach_to_page(browser)
        yield browser
    finally:
        await _close(process, http, browser)
        shutil.rmtree(profile, ignore_errors=True)


def _chromium_command(
    chromium: str, profile: Path, fake_microphone: Path | None, extra_flags: tuple[str, ...]
) -> list[str]:
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra_flags]
    if fake_microphone is not None:
        flags.append(f"--use-file-for-fake-audio-capture={fake_microphone.resolve()}%noloop")
    return [chromium, *flags, "about:blank"]


async def _devtools_url(process: asyncio.subprocess.Process, profile: Path) -> str:
    port_file = profile / "DevToolsActivePort"  # "<port>\n/devtools/browser/<id>"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    while not (port_file.exists() and len(port_file.read_text().split()) == 2):
        if process.returncode is not None or loop.time() > deadline:
            log = (profile / "chromium.log").read_text(errors="replace")[-3000:]
            raise BrowserError(f"Chromium did not start (exit {process.returncode}):\n{log}")
        await asyncio.sleep(0.05)
    port, path = port_file.read_text().split()
    return f"ws://127.0.0.1:{port}{path}"


async def _attach_to_page(browser: Browser) -> None:
    targets = await browser.send("Target.getTargets", page=False)
    page = next(t for t in targets["targetInfos"] if t["type"] == "page")
    attached = await browser.send(
        "Target.attachToTarget", page=False, targetId=page["targetId"], flatten=True
    )
    browser.session_id = attached["sessionId"]
    await browser.send("Page.enable")
    await browser.send("Runtime.enable")


async def _close(
    process: asyncio.subprocess.Process, http: aiohttp.ClientSession, browser: Browser | None
) -> None:
    if browser is not None and process.returncode is None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(browser.send("Browser.close", page=False), 3.0)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(process.wait(), 5.0)
    _kill_group(process.pid)  # the renderers too, should the browser have left any
    await process.wait()
    if browser is not None and browser._reader is not None:
        browser._reader.cancel()
        await browser.socket.close()
    await http.close()
