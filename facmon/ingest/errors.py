"""Errors of the ingest package.

IngestError
├── PayloadError           a message breaks the telemetry contract; its text is the reject reason
├── TelemetryStoreError    the telemetry store cannot be opened or written; the batch goes to the spool
└── SpoolError             the spool is full or cannot be written; the batch is retried, not acked
"""


class IngestError(Exception):
    """Base of the ingest package's errors."""


class PayloadError(IngestError):
    pass


class TelemetryStoreError(IngestError):
    pass


class SpoolError(IngestError):
    pass
