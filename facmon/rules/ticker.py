"""The ticker: lets time pass for the rules when no reading comes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from facmon.facility.clock import Clock

log = logging.getLogger(__name__)


class Ticker:
    """Calls each of `ticks` with the current time every `interval` seconds, on its own thread."""

    def __init__(
        self,
        clock: Clock,
        ticks: list[Callable[[datetime], object]],  # what a tick returns is ignored
        interval: float = 1.0,
        *,
        name: str = "facmon-ticker",
        at_start: bool = False,
    ) -> None:
        self._clock = clock
        self._name = name
        self._at_start = at_start
        self._ticks = ticks
        self._interval = interval
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        if self._at_start:
            self._tick()
        while not self._stopping.wait(self._interval):
            self._tick()

    def _tick(self) -> None:
        now = self._clock.now()
        for tick in self._ticks:
            try:
                tick(now)
            except Exception:  # a failing tick must not stop the others, nor the next second's
                log.exception("tick of %s failed", getattr(tick, "__qualname__", tick))
