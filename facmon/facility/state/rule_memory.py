"""The rule engine's memory per rule and device, and the devices taken out of service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select

from facmon.facility.model import ServiceRecord
from facmon.facility.state.rows import Reads, Writes, from_row, row_values
from facmon.facility.state.schema import device_service, rule_state


class RuleMemoryReads(Reads):
    """Reads of the rule engine's memory and the devices out of service."""

    def load_rule_state(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The rule engine's saved memory, by (rule, device)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(rule_state.c.rule, rule_state.c.device_id, rule_state.c.state))
            return {(rule, device_id): state for rule, device_id, state in rows}

    def out_of_service(self) -> dict[str, ServiceRecord]:
        """Devices taken out of service, by id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(device_service)).mappings()
            return {row["device_id"]: from_row(ServiceRecord, row) for row in rows}


class RuleMemoryWrites(Writes):
    """Writes of the rule engine's memory and the devices out of service, in the caller's transaction."""

    def save_rule_state(self, rows: Sequence[tuple[str, str, dict[str, Any]]], at: datetime) -> None:
        """Insert or replace the memory of these (rule, device) pairs."""
        if not rows:
            return
        values = [{"rule": r, "device_id": d, "state": state, "updated_at": at} for r, d, state in rows]
        statement = self._upsert(rule_state)
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[rule_state.c.rule, rule_state.c.device_id],
                set_={"state": statement.excluded.state, "updated_at": statement.excluded.updated_at},
            ),
            values,
        )

    def take_out_of_service(self, record: ServiceRecord) -> None:
        self.conn.execute(delete(device_service).where(device_service.c.device_id == record.device_id))
        self.conn.execute(insert(device_service).values(row_values(record)))

    def return_to_service(self, device_id: str) -> None:
        self.conn.execute(delete(device_service).where(device_service.c.device_id == device_id))
