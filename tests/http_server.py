"""The service's app on a real HTTP server (uvicorn) on a free loopback port, for what an in-process client cannot
show: streams that stay open, browsers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from facmon.cmd.service import listen
from tests.waiting import eventually


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app served on 127.0.0.1 until the block ends; yields its base URL."""
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-http", daemon=True)
    thread.start()
    eventually(lambda: server.started, what="the HTTP server")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
