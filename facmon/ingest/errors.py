"""Errors of the ingest package.

IngestError
├── PayloadError           a message breaks the telemetry contract; its text is the reject reason
├── TelemetryStoreError    the telemetry store cannot be opened, reached or written; the batch goes to the spool
├── ReadingsRefusedError        the telemetry store answered but refused the readings themselves (InfluxDB's HTTP 400,
│                          a value SQLite cannot bind): sending them again fails the same way
├── SpoolError             the spool is full or cannot be written; the batch is retried, not acked
└── SinkBehindError             a reading sink (the rules) took only the first `done` readings of a batch; the rest
                           are handed to it again, and the batch is not acked until it has taken them all
"""


class IngestError(Exception):
    """Base of the ingest package's errors."""


class PayloadError(IngestError):
    pass


class TelemetryStoreError(IngestError):
    pass


class ReadingsRefusedError(IngestError):
    pass


class SpoolError(IngestError):
    pass


class SinkBehindError(IngestError):
    def __init__(self, done: int, reason: str) -> None:
        super().__init__(reason)
        self.done = done
