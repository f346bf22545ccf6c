"""Maintenance plans' occurrences (which due dates opened a work order) and the meters they count."""

from __future__ import annotations

from sqlalchemy import select, update

from facmon.facility.model import MaintenanceOccurrence
from facmon.facility.state.rows import Reads, Writes, from_row, row_values
from facmon.facility.state.schema import maintenance_occurrences, meters


class MaintenanceReads(Reads):
    """Reads of maintenance occurrences and meters."""

    def last_maintenance_occurrence(self, plan: str, device_id: str) -> MaintenanceOccurrence | None:
        """The latest recorded occurrence of a plan for a device: by due time, or by meter value."""
        query = (
            select(maintenance_occurrences)
            .where(maintenance_occurrences.c.plan == plan, maintenance_occurrences.c.device_id == device_id)
            .order_by(
                maintenance_occurrences.c.due_at.desc().nulls_last(),
                maintenance_occurrences.c.meter_value.desc().nulls_last(),
                maintenance_occurrences.c.created_at.desc(),
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else from_row(MaintenanceOccurrence, row)

    def meter(self, device_id: str, meter: str) -> tuple[float, int] | None:
        """A meter facmon keeps: its value and the epoch-ms time it is counted up to."""
        query = select(meters.c.value, meters.c.until_ms).where(
            meters.c.device_id == device_id, meters.c.meter == meter
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (float(row[0]), int(row[1]))


class MaintenanceWrites(Writes):
    """Writes of maintenance occurrences and meters, in the caller's transaction."""

    def add_maintenance_occurrence(self, occurrence: MaintenanceOccurrence) -> bool:
        """Record an occurrence; False when it was recorded before (by an earlier run or another instance)."""
        statement = (
            self._upsert(maintenance_occurrences)
            .values(row_values(occurrence))
            .on_conflict_do_nothing(index_elements=["plan", "device_id", "due_key"])
        )
        return bool(self.conn.execute(statement).rowcount)

    def set_maintenance_work_order(self, plan: str, device_id: str, due_key: str, work_order_id: int) -> None:
        self.conn.execute(
            update(maintenance_occurrences)
            .where(
                maintenance_occurrences.c.plan == plan,
                maintenance_occurrences.c.device_id == device_id,
                maintenance_occurrences.c.due_key == due_key,
            )
            .values(work_order_id=work_order_id)
        )

    def save_meter(self, device_id: str, meter: str, value: float, until_ms: int) -> None:
        statement = self._upsert(meters).values(device_id=device_id, meter=meter, value=value, until_ms=until_ms)
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["device_id", "meter"], set_={"value": value, "until_ms": until_ms}
            )
        )
