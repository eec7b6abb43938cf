"""A tiny round-robin HTTP load balancer on loopback, in front of gateway processes: each
request goes to the next gateway in turn; one that refuses the connection (stopped) is skipped
for the next. A fresh connection per request, so a stopped gateway is seen at once and no
keep-alive connection pins a sender to one gateway."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

HOP_BY_HOP = {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"content-length"}


class RoundRobin:
    """An ASGI app forwarding every request to `targets` in turn (serve it with `serve_app`)."""

    def __init__(self, targets: list[str] | None = None) -> None:
        self.targets: list[str] = list(targets or [])
        self._next = 0
        self.forwarded: Counter[str] = Counter()
        """Requests each target answered."""
        self.refused: Counter[str] = Counter()
        """Connections each target refused (skipped to the next)."""
        self.http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_keepalive_connections=0))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            path += b"?" + scope["query_string"]
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        for _ in range(len(self.targets)):
            target = self.targets[self._next % len(self.targets)]
            self._next += 1
            try:
                answer = await self.http.request(
                    scope["method"], target + path.decode(), content=body, headers=headers
                )
            except httpx.ConnectError:
                self.refused[target] += 1
                continue
            except httpx.HTTPError:  # died mid-request: the sender retries
                await _reply(send, 502, b"gateway went away")
                return
            self.forwarded[target] += 1
            kept = [
                (k.encode(), v.encode())
                for k, v in answer.headers.multi_items()
                if k.encode().lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
            ]
            await _reply(send, answer.status_code, answer.content, kept)
            return
        await _reply(send, 503, b"no gateway up")


async def _reply(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
