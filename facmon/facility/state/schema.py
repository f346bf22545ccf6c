"""The state store's tables, for SQLAlchemy Core and for the migrations (`migrations/`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (which keeps no offset) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()


alarms = Table(
    "alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("site", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(24), nullable=False),
    Column("shelved", Boolean, nullable=False, default=False),
    Column("suppressed", Boolean, nullable=False, default=False),
    Column("raised_at", UTCDateTime, nullable=False),
    Column("acked_at", UTCDateTime),
    Column("acked_by", String(64)),
    Column("returned_at", UTCDateTime),
    Column("cleared_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("value", JSON),
    Column("message", Text, nullable=False),
    Column("latched", Boolean, nullable=False, default=False),
    Column("shelved_until", UTCDateTime),
    Column("shelved_by", String(64)),
    Column("shelve_reason", Text),
    Index("ix_alarms_state", "state"),
    Index("ix_alarms_rule_device", "rule", "device_id"),
)


alarm_events = Table(
    "alarm_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alarm_id", Integer, ForeignKey("alarms.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("state", String(24), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("value", JSON),
    Column("note", Text),
)


work_orders = Table(
    "work_orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(24), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("device_id", String(64)),
    Column("site", String(64)),
    Column("location", Text),
    Column("category", String(16), nullable=False),
    Column("priority", String(2), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", String(16), nullable=False),
    Column("alarm_id", Integer, ForeignKey("alarms.id", ondelete="SET NULL"), index=True),
    Column("team", String(64)),
    Column("assignee", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime),
    Column("first_response_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    Column("closed_at", UTCDateTime),
    Index("ix_work_orders_status", "status"),
)


work_order_events = Table(
    "work_order_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("work_order_id", Integer, ForeignKey("work_orders.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("note", Text),
    Column("from_status", String(16)),
    Column("assignee", String(64)),
)


# Work order numbers are WO-YYYYMMDD-NNNN: the last NNNN handed out per day.
work_order_counters = Table(
    "work_order_counters",
    metadata,
    Column("day", String(8), primary_key=True),
    Column("last", Integer, nullable=False),
)


ingest_rejects = Table(
    "ingest_rejects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topic", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False, index=True),
    Column("payload", Text, nullable=False),
)


# The rule engine's memory of each (rule, device): pending on- and off-delays, so a restart keeps its timers.
rule_state = Table(
    "rule_state",
    metadata,
    Column("rule", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("state", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


# Alarm floods (ISA-18.2: more than 10 alarms in 10 minutes on a site), open while ended_at is null.
alarm_floods = Table(
    "alarm_floods",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("peak", Integer, nullable=False),
    Index("ix_alarm_floods_site_started", "site", "started_at"),
)


# Devices taken out of service for maintenance: their alarms are not annunciated meanwhile.
device_service = Table(
    "device_service",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("since", UTCDateTime, nullable=False),
    Column("until", UTCDateTime),
    Column("by", String(64), nullable=False),
    Column("reason", Text, nullable=False),
)


# The notification outbox: a row is queued in the transaction that causes it and delivered by the outbox
# (facmon.alerts.notifications.outbox). One row per (channel, kind, ref), so the same page is never queued twice.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    # What it is about, e.g. the work order number; a page's ref also names the paging and the person.
    Column("ref", String(160), nullable=False),
    Column("language", String(8), nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(8), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("last_error", Text),
    Column("recipient", String(64)),
    Column("address", String(256)),
    UniqueConstraint("channel", "kind", "ref", name="uq_notifications_channel_kind_ref"),
    Index("ix_notifications_state_next_attempt", "state", "next_attempt_at"),
)


# The paging of work orders along escalation policies (facmon.alerts.paging.escalation): one row per work order.
escalations = Table(
    "escalations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("work_order_id", Integer, ForeignKey("work_orders.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("policy", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("round", Integer, nullable=False),
    Column("pages", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("next_at", UTCDateTime),
    Column("acked_at", UTCDateTime),
    Column("acked_by", String(64)),
    Column("ended_at", UTCDateTime),
    Column("end_reason", String(64)),
    Index("ix_escalations_state_next", "state", "next_at"),
)


# Each due date (or meter mark) of a maintenance plan for a device, recorded once: the key makes opening its work
# order happen once, whatever restarts or other service instances do.
maintenance_occurrences = Table(
    "maintenance_occurrences",
    metadata,
    Column("plan", String(64), primary_key=True),
    Column("device_id", String(64), primary_key=True),
    Column("due_key", String(32), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime),
    Column("meter_value", Float),
    Column("work_order_id", Integer, ForeignKey("work_orders.id", ondelete="SET NULL")),
)


# People who sign in to the dashboard and API, with their role; passwords only as argon2id hashes.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UTCDateTime),
)


# Bearer tokens: sessions from sign-in and machine tokens; only the SHA-256 of each token is kept.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True),
    Column("expires_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)


# Meters facmon keeps itself (a pump's running hours from `pump_running`): the value, counted up to `until_ms`.
meters = Table(
    "meters",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("meter", String(32), primary_key=True),
    Column("value", Float, nullable=False),
    Column("until_ms", BigInteger, nullable=False),
)


# Alarm changes committed whose consequences (a work order opened, pages queued, a note on the work order) are
# not committed yet. Written in the alarm change's own transaction and deleted in the transaction of its
# consequences, so a crash or a store outage between the two leaves a row here, and the change is followed up
# once, after a restart or when the store is back.
alarm_followups = Table(
    "alarm_followups",
    metadata,
    Column("event_id", Integer, ForeignKey("alarm_events.id", ondelete="CASCADE"), primary_key=True),
    Column("created_at", UTCDateTime, nullable=False, index=True),
)

# Who holds what in a cluster: one row per partition (`partition-N`) and one for the leader's singleton jobs.
# The epoch grows by one at every claim; a write on behalf of a partition names the epoch it holds, and one
# whose epoch is no longer the row's is refused (see `fence`), so a worker that lost a lease cannot act on it.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(128)),
    Column("epoch", BigInteger, nullable=False, default=0),
    Column("acquired_at", UTCDateTime),
    Column("renewed_at", UTCDateTime),
    Column("expires_at", UTCDateTime),
)

# The workers of a cluster and when each was last heard of: how many share the partitions.
cluster_workers = Table(
    "cluster_workers",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
)

# In a cluster, each device's presence as the worker judging its readings last saw it: when it was last heard
# from and its latest values, for the APIs and streams of the other workers.
device_presence = Table(
    "device_presence",
    metadata,
    Column("device_id", String(64), primary_key=True),
    Column("last_seen_ms", BigInteger, nullable=False),
    Column("latest_ts_ms", BigInteger, nullable=False),
    Column("latest", JSON, nullable=False),
)
