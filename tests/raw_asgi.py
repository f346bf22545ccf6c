"""A request sent to an ASGI app by hand, for what an HTTP client hides: how much of the body the app read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    read: int = 0  # bytes of the request body the app took
    chunks_read: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Exchange:
    chunks: list[bytes]
    answer: Answer = field(default_factory=lambda: Answer(0, {}, b""))


def call(
    app: ASGIApp, method: str, path: str, *, headers: dict[str, str] | None = None, chunks: Iterable[bytes] = ()
) -> Answer:
    """Send `method path` with `headers` and a body in `chunks` (streamed, as without a Content-Length)."""
    exchange = _Exchange(list(chunks))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "testserver", **(headers or {})}.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def receive() -> Message:
        if exchange.chunks:
            chunk = exchange.chunks.pop(0)
            exchange.answer.read += len(chunk)
            exchange.answer.chunks_read += 1
            return {"type": "http.request", "body": chunk, "more_body": bool(exchange.chunks)}
        if exchange.answer.status:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            exchange.answer.status = message["status"]
            exchange.answer.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            exchange.answer.body += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return exchange.answer
