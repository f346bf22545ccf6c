"""The state store: alarms and their audit trail, work orders and their history, the notification outbox and
the escalations, maintenance, users and tokens, the rule engine's memory, and ingest rejects.

SQLAlchemy 2 Core over a SQLite file (default) or PostgreSQL. Reads are methods of `StateStore`; writes go
through a `StateTransaction` so that a caller groups the rows of one change (an alarm and its event, a work
order and its first history line) into one commit.

The tables are in `schema.py` and their migrations in `migrations/` (which name the column type as
`facmon.facility.state.UTCDateTime`, as when the store was one module); opening the database in `connection.py`.
Each aggregate has a module with its readers (`…Reads`, mixed into `StateStore`) and writers (`…Writes`, mixed
into `StateTransaction`): `alarms`, `work_orders`, `paging` (outbox and escalations), `accounts`, `rule_memory`,
`rejects`, `maintenance`, `leases` (a cluster's) and `presence` (devices' presence shared in a cluster).
`rows.py` turns rows into domain records and back.
"""

from facmon.facility.state.alarms import AlarmCount
from facmon.facility.state.connection import lock_wait, migrate, normalise_url
from facmon.facility.state.presence import SharedPresence
from facmon.facility.state.rejects import REJECT_ROW_BYTES, RejectsPruned, reject_size
from facmon.facility.state.rows import Page
from facmon.facility.state.schema import UTCDateTime
from facmon.facility.state.store import Fence, StateStore, StateTransaction, fenced

__all__ = [
    "REJECT_ROW_BYTES",
    "AlarmCount",
    "Fence",
    "Page",
    "RejectsPruned",
    "SharedPresence",
    "StateStore",
    "StateTransaction",
    "UTCDateTime",
    "fenced",
    "lock_wait",
    "migrate",
    "normalise_url",
    "reject_size",
]
