"""The providers' REST APIs for hanging up a call, as documented, on loopback (no tests here).

- Twilio: ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``,
  form ``Status=completed``, basic auth (account SID, auth token): 200 and
  the call resource as JSON, its ``status`` ``completed``;
- Telnyx: ``POST /v2/calls/{call_control_id}/actions/hangup``, a JSON body,
  ``Authorization: Bearer <API key>``: 200 ``{"data": {"result": "ok"}}``;
- Plivo: ``DELETE /v1/Account/{auth_id}/Call/{call_uuid}/``, basic auth
  (auth id, auth token): 204 and no body.

Wrong credentials get 401; every request is recorded, answered or not.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class HangupSeen:
    provider: str
    method: str
    path: str
    call_id: str
    status: int
    body: Any = None


@dataclass
class FakePhoneRest:
    """One account at each provider: who may hang up, and what was asked."""

    account: str = "AC0001"
    secret: str = "rest-s3cr3t"
    requests: list[HangupSeen] = field(default_factory=list)

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{call}.json", self._twilio)
        app.router.add_post("/v2/calls/{call}/actions/hangup", self._telnyx)
        app.router.add_delete("/v1/Account/{account}/Call/{call}/", self._plivo)
        return app

    def _basic_ok(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account}:{self.secret}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}" and (
            request.match_info["account"] == self.account
        )

    def _seen(self, provider: str, request: web.Request, status: int, body: Any) -> None:
        call = request.match_info["call"]
        self.requests.append(HangupSeen(provider, request.method, request.path, call, status, body))

    async def _twilio(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        if not self._basic_ok(request):
            self._seen("twilio", request, 401, form)
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if form.get("Status") != "completed":
            self._seen("twilio", request, 400, form)
            return web.json_response({"code": 21218, "message": "Invalid Status"}, status=400)
        self._seen("twilio", request, 200, form)
        call = request.match_info["call"]
        return web.json_response({"sid": call, "account_sid": self.account, "status": "completed"})

    async def _telnyx(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.headers.get("Authorization") != f"Bearer {self.secret}":
            self._seen("telnyx", request, 401, body)
            return web.json_response({"errors": [{"code": "10009"}]}, status=401)
        self._seen("telnyx", request, 200, body)
        return web.json_response({"data": {"result": "ok"}})

    async def _plivo(self, request: web.Request) -> web.Response:
        if not self._basic_ok(request):
            self._seen("plivo", request, 401, None)
            return web.json_response({"error": "authentication failed"}, status=401)
        self._seen("plivo", request, 204, None)
        return web.Response(status=204)
