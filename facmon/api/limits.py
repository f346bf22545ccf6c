"""Limits at the API's edge: how large a request body may be, how often a client address may try to sign in, and
how long a request waits for a locked state store.

Both middlewares here are pure ASGI, so that they act before anything reads or parses the request: a body
announced as larger than the limit is refused before a byte of it is read, and one sent without a length is
refused as soon as it grows past it.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from datetime import datetime

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facmon.api import problems
from facmon.facility.state import lock_wait

# How long a request waits for a SQLite state store that another connection is writing to, before it answers
# 503: someone is waiting for the answer, and a browser or proxy gives up long before the 10 s ingest waits.
# facmon's own transactions hold the lock for milliseconds; a lock held for seconds is an outage, not a queue.
API_LOCK_WAIT_S = 2.0
# How many client addresses the sign-in limit remembers; the longest unused are forgotten first.
ADDRESSES_MAX = 10_000


class BodyTooLarge(HTTPException):
    """A request body over the limit. An HTTPException, so that FastAPI's body reading passes it on to the error
    handlers as it is, to answer 413."""

    def __init__(self, max_bytes: int) -> None:
        # The rest of the body is never read: the connection cannot carry another request after this answer.
        super().__init__(413, f"a request body may have at most {max_bytes} bytes", headers={"Connection": "close"})


class BodyLimit:
    """Refuse request bodies over `api.max_body_bytes` with 413, before they are read or parsed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > _max_bytes(scope):
            await problems.http_problem(BodyTooLarge(_max_bytes(scope)))(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                received += len(message["body"])
                if received > _max_bytes(scope):
                    raise BodyTooLarge(_max_bytes(scope))
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as exc:
            # Read outside FastAPI's body parsing, whose error handlers answer it otherwise.
            if started:
                raise
            await problems.http_problem(exc)(scope, receive, send)


def _max_bytes(scope: Scope) -> int:
    limit: int = scope["app"].state.services.config.api.max_body_bytes
    return limit


class LockWait:
    """Let every request wait at most `seconds` for a locked SQLite state store (see `API_LOCK_WAIT_S`)."""

    def __init__(self, app: ASGIApp, seconds: float = API_LOCK_WAIT_S) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A context variable: the worker threads that run the routes get a copy of the request's context.
        with lock_wait(self.seconds):
            await self.app(scope, receive, send)


class AddressThrottle:
    """At most `per_minute` sign-ins from one client address a minute, in bursts of as many: a token bucket per
    address, checked before a password is hashed. It holds for every username alike, so that guessing one
    password across many usernames from one address is slowed as much as guessing one user's."""

    def __init__(self, capacity: int = ADDRESSES_MAX) -> None:
        self._capacity = capacity
        self._buckets: dict[str, tuple[float, datetime]] = {}  # tokens left and when, oldest use first
        self._lock = threading.Lock()

    def take(self, address: str, at: datetime, per_minute: int) -> int:
        """Take a sign-in for `address`: 0 if it may go ahead, else the seconds until it may try again."""
        with self._lock:
            tokens, then = self._buckets.pop(address, (float(per_minute), at))
            elapsed = max(0.0, (at - then).total_seconds())
            tokens = min(float(per_minute), tokens + elapsed * per_minute / 60)
            wait = 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) * 60 / per_minute))
            self._buckets[address] = (tokens - 1 if wait == 0 else tokens, at)
            if len(self._buckets) > self._capacity:
                del self._buckets[next(iter(self._buckets))]
            return wait


def client_address(connection: HTTPConnection) -> str:
    """Where a request comes from, as the sign-in limits count it: the client's IP address (behind a trusted proxy,
    the one it forwarded), and for IPv6 its /64 network, as one machine may hold a whole /64."""
    host = connection.client.host if connection.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
