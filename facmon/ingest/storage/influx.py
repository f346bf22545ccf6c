"""The InfluxDB telemetry stores: InfluxDB 2 (buckets, Flux) and InfluxDB 1 (databases, InfluxQL).

Both write the line protocol of `lineproto`: a measurement per device type, the device's site, building, id and
type as tags, a field per payload field typed by the contract. InfluxDB keeps a point per measurement, tag set
and ts, so a resend overwrites the stored fields with the same values: stored once.

No user value reaches a query as text: field and measurement names come only from the contract, a device id is
a Flux parameter (v2) or an escaped InfluxQL string literal (v1), times are integers.

Retention is the bucket's (v2) or the retention policy's (v1): `apply_retention` deletes nothing. Writes do not
retry: the ingest spools a batch that failed and sends it again.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from facmon.config.registry import DeviceRegistry
from facmon.config.storage import TelemetryStorageConfig
from facmon.facility.model import Device, DeviceType, Reading, Scalar
from facmon.facility.telemetry import FIELDS, Kind
from facmon.ingest.errors import ReadingsRefusedError, TelemetryStoreError
from facmon.ingest.storage import Aggregate, Point, TelemetryStore
from facmon.ingest.storage.lineproto import LineEncoder

# Lines per write request: a large batch (a spool being drained) goes in several requests. Each is all or nothing
# as far as InfluxDB allows: a line it refuses (a field type conflict) fails the request, though it keeps the
# other lines; the batch is then resent, and what was kept is stored once.
WRITE_CHUNK = 5000

# InfluxDB's time range, in ns: a query's bounds are clamped to it.
_MIN_NS = -9_223_372_036_854_775_806
_MAX_NS = 9_223_372_036_854_775_806
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def open_influx_store(config: TelemetryStorageConfig, registry: DeviceRegistry) -> TelemetryStore:
    """The store for `storage.telemetry` with backend influxdb, by its dialect."""
    if config.url is None:
        raise ValueError("the influxdb backend needs url")
    timeout_s = config.timeout.total_seconds()
    if config.dialect == "v1":
        if config.database is None:
            raise ValueError("the influxdb v1 backend needs database")
        return InfluxV1Store(
            config.url,
            config.database,
            registry,
            retention_policy=config.retention_policy,
            username=config.username,
            password=config.password.get_secret_value() if config.password is not None else None,
            timeout_s=timeout_s,
        )
    if config.org is None or config.bucket is None or config.token is None:
        raise ValueError("the influxdb v2 backend needs org, bucket and token")
    return InfluxV2Store(
        config.url, config.org, config.bucket, config.token.get_secret_value(), registry, timeout_s=timeout_s
    )


class _Schema:
    """What both dialects need from the registry and the contract."""

    def __init__(self, devices: Iterable[Device]) -> None:
        devices = list(devices)
        try:
            self.encoder = LineEncoder(devices)
        except ValueError as exc:
            raise TelemetryStoreError(f"cannot write these devices to InfluxDB: {exc}") from None
        self.types = {d.id: d.type for d in devices}

    def kind(self, device_id: str, field: str) -> tuple[DeviceType, Kind] | None:
        device_type = self.types.get(device_id)
        if device_type is None:
            return None
        spec = FIELDS[device_type].get(field)
        return (device_type, spec.kind) if spec is not None else None

    def lines(self, readings: Sequence[Reading]) -> list[str]:
        try:
            return self.encoder.lines(readings)
        except ValueError as exc:
            raise ReadingsRefusedError(f"cannot write to InfluxDB: {exc}") from None


def _typed(kind: Kind, value: Any) -> Scalar:
    if kind is Kind.NUMBER:
        return float(value)
    if kind is Kind.INTEGER:
        return int(value)
    if kind is Kind.BOOLEAN:
        return bool(value)
    return str(value)


def _aggregated(agg: Aggregate | None, kind: Kind, value: Any) -> Scalar:
    if agg is Aggregate.MEAN:
        return float(value)
    if agg is Aggregate.COUNT:
        return int(value)
    return _typed(kind, value)


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or "no reason given"


def _ns(ms: int) -> int:
    return min(max(int(ms) * 1_000_000, _MIN_NS), _MAX_NS)


def _chunks(lines: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(lines), WRITE_CHUNK):
        yield lines[i : i + WRITE_CHUNK]


# --- InfluxDB 1: HTTP with urllib3, InfluxQL ------------------------------------------------------------------

_INFLUXQL_AGG = {
    Aggregate.MEAN: "MEAN",
    Aggregate.MIN: "MIN",
    Aggregate.MAX: "MAX",
    Aggregate.LAST: "LAST",
    Aggregate.COUNT: "COUNT",
}


def influxql_string(value: str) -> str:
    """A single-quoted InfluxQL string literal."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def influxql_identifier(name: str) -> str:
    """A double-quoted InfluxQL identifier."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class InfluxV1Store:
    """InfluxDB 1.x over its HTTP API: `/write` with line protocol, `/query` with InfluxQL."""

    def __init__(
        self,
        url: str,
        database: str,
        devices: Iterable[Device],
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self._schema = _Schema(devices)
        headers = {"Accept-Encoding": "gzip"}
        if username is not None:
            headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        self._http = urllib3.PoolManager(
            headers=headers, timeout=urllib3.Timeout(total=timeout_s), retries=False, maxsize=8
        )
        write_params = {"db": database, "precision": "ms"}
        if retention_policy:
            write_params["rp"] = retention_policy
        self._write_url = f"{self.url}/write?{urlencode(write_params)}"
        # Reads name the retention policy writes go to; without one, both use the database's default.
        self._from = f"{influxql_identifier(retention_policy)}." if retention_policy else ""

    def write(self, readings: Sequence[Reading]) -> None:
        lines = self._schema.lines(readings)
        for chunk in _chunks(lines):
            body = gzip.compress("\n".join(chunk).encode(), compresslevel=1)
            response = self._request(
                "POST",
                self._write_url,
                "write",
                body=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
            )
            if response.status != 204:
                # 400: the server read the lines and refused them (a field type conflict, a bad value); sending
                # them again cannot help. Anything else (401, 404, 5xx) is the server, not the readings.
                error = ReadingsRefusedError if response.status == 400 else TelemetryStoreError
                raise error(
                    f"InfluxDB at {self.url} refused a write to {self.database} "
                    f"(HTTP {response.status}): {_v1_error(response)}"
                )

    def latest(self, device_id: str) -> tuple[int, dict[str, Scalar]] | None:
        device_type = self._schema.types.get(device_id)
        if device_type is None:
            return None
        names = list(FIELDS[device_type])
        where = f"WHERE {influxql_identifier('device_id')} = {influxql_string(device_id)}"
        measurement = self._measurement(device_type)
        # One statement per field: LAST over several fields at once answers time 0, not each value's ts.
        statements = [
            f"SELECT LAST({influxql_identifier(n)}) FROM {measurement} {where}"  # noqa: S608 - names from FIELDS
            for n in names
        ]
        results = self._query("; ".join(statements))
        newest = 0
        fields: dict[str, Scalar] = {}
        for i, name in enumerate(names):
            rows = results.get(i)
            if not rows or rows[-1][1] is None:
                continue
            ts, value = rows[-1][0], rows[-1][1]
            fields[name] = _typed(FIELDS[device_type][name].kind, value)
            newest = max(newest, int(ts))
        return (newest, fields) if fields else None

    def query(
        self,
        device_id: str,
        field: str,
        start_ms: int,
        stop_ms: int,
        *,
        every_ms: int | None = None,
        agg: Aggregate = Aggregate.MEAN,
    ) -> list[Point]:
        found = self._schema.kind(device_id, field)
        if found is None:
            return []  # names from the contract only: `field` is never put into InfluxQL unchecked
        device_type, kind = found
        where = (
            f"FROM {self._measurement(device_type)} "
            f"WHERE {influxql_identifier('device_id')} = {influxql_string(device_id)} "
            f"AND time >= {_ns(start_ms)} AND time < {_ns(stop_ms)}"
        )
        name = influxql_identifier(field)
        if every_ms is None:
            rows = self._query(f"SELECT {name} {where}").get(0, [])
            return [Point(int(ts), _typed(kind, v)) for ts, v, *_ in rows if v is not None]
        # GROUP BY time() windows start at multiples of `every` since the epoch, like the SQLite store's.
        sql = f"SELECT {_INFLUXQL_AGG[agg]}({name}) {where} GROUP BY time({int(every_ms)}ms) fill(none)"
        rows = self._query(sql).get(0, [])
        return [Point(int(ts), _aggregated(agg, kind, v)) for ts, v, *_ in rows if v is not None]

    def apply_retention(self, now_ms: int) -> int:
        """Nothing to do: the retention policy's duration applies, enforced by InfluxDB itself."""
        return 0

    def ping(self) -> None:
        response = self._request("GET", f"{self.url}/ping", "ping")
        if response.status != 204:
            raise TelemetryStoreError(f"InfluxDB at {self.url} answered ping with HTTP {response.status}")

    def close(self) -> None:
        self._http.clear()

    def _measurement(self, device_type: DeviceType) -> str:
        return self._from + influxql_identifier(str(device_type))

    def _request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        body: bytes | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        try:
            if fields is not None:
                return self._http.request(method, url, fields=fields, encode_multipart=False, headers=headers)
            return self._http.request(method, url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise TelemetryStoreError(f"InfluxDB at {self.url}: {what} failed: {_one_line(exc)}") from None

    def _query(self, influxql: str) -> dict[int, list[list[Any]]]:
        """The rows of each statement, by statement number; chunked, so no server row limit cuts them short."""
        response = self._request(
            "POST",
            f"{self.url}/query",
            "query",
            fields={"db": self.database, "q": influxql, "epoch": "ms", "chunked": "true", "chunk_size": "10000"},
        )
        if response.status != 200:
            raise TelemetryStoreError(
                f"InfluxDB at {self.url} refused a query on {self.database} "
                f"(HTTP {response.status}): {_v1_error(response)}"
            )
        rows: dict[int, list[list[Any]]] = {}
        for chunk in response.data.splitlines():
            if not chunk.strip():
                continue
            try:
                document = orjson.loads(chunk)
            except orjson.JSONDecodeError as exc:
                raise TelemetryStoreError(f"InfluxDB at {self.url} sent an unreadable answer: {exc}") from None
            if "error" in document:
                raise TelemetryStoreError(f"InfluxDB at {self.url}: query failed: {_one_line(document['error'])}")
            for result in document.get("results", ()):
                if "error" in result:
                    raise TelemetryStoreError(
                        f"InfluxDB at {self.url}: query on {self.database} failed: {_one_line(result['error'])}"
                    )
                statement = rows.setdefault(int(result.get("statement_id", 0)), [])
                for series in result.get("series", ()):
                    statement.extend(series.get("values") or ())
        return rows


def _v1_error(response: urllib3.BaseHTTPResponse) -> str:
    try:
        return _one_line(orjson.loads(response.data)["error"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _one_line(response.headers.get("X-Influxdb-Error") or response.data[:200].decode(errors="replace"))


# --- InfluxDB 2: influxdb-client, Flux ------------------------------------------------------------------------

_FLUX_FN = {
    Aggregate.MEAN: "mean",
    Aggregate.MIN: "min",
    Aggregate.MAX: "max",
    Aggregate.LAST: "last",
    Aggregate.COUNT: "count",
}

# Every value is a query parameter: influxdb-client sends `params` as Flux options beside the query text (the
# `extern` of the query API), so a device id is a string value and is never read as Flux.
_FLUX_SERIES = """from(bucket: p_bucket)
  |> range(start: p_start, stop: p_stop)
  |> filter(fn: (r) => r._measurement == p_measurement and r.device_id == p_device_id"""

_FLUX_RAW = f"""{_FLUX_SERIES} and r._field == p_field)
  |> keep(columns: ["_time", "_value"])"""

# from |> range |> filter |> aggregateWindow is the shape InfluxDB computes in its storage engine, so a year of
# history is not read row by row. Windows start at multiples of `every` since the epoch (offset 0s).
_FLUX_WINDOWED = (
    _FLUX_SERIES
    + """ and r._field == p_field)
  |> aggregateWindow(every: p_every, fn: {fn}, createEmpty: false, timeSrc: "_start")
  |> keep(columns: ["_time", "_value"])"""
)

_FLUX_LATEST = f"""{_FLUX_SERIES})
  |> last()
  |> keep(columns: ["_time", "_field", "_value"])"""

# Flux times are ns since the epoch in an int64: the widest range a query can name.
_FLUX_BEGIN = datetime(1677, 9, 22, tzinfo=UTC)
_FLUX_END = datetime(2262, 4, 10, tzinfo=UTC)


def _flux_time(ms: int) -> datetime:
    try:
        moment = _EPOCH + int(ms) * _MS
    except OverflowError:
        return _FLUX_BEGIN if ms < 0 else _FLUX_END
    return min(max(moment, _FLUX_BEGIN), _FLUX_END)


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


class InfluxV2Store:
    """InfluxDB 2.x (and Cloud) through influxdb-client: synchronous writes, Flux queries with parameters."""

    def __init__(
        self,
        url: str,
        org: str,
        bucket: str,
        token: str,
        devices: Iterable[Device],
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self._schema = _Schema(devices)
        self._client = InfluxDBClient(
            url=self.url, token=token, org=org, timeout=int(timeout_s * 1000), enable_gzip=True, retries=False
        )
        # SYNCHRONOUS: write() returns once the server has the batch, or raises; the ingest acks after that.
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._query_api = self._client.query_api()

    def write(self, readings: Sequence[Reading]) -> None:
        lines = self._schema.lines(readings)
        for chunk in _chunks(lines):
            self._call(
                "write to bucket " + self.bucket,
                self._write_api.write,
                bucket=self.bucket,
                org=self.org,
                record=chunk,
                write_precision=WritePrecision.MS,
            )

    def latest(self, device_id: str) -> tuple[int, dict[str, Scalar]] | None:
        device_type = self._schema.types.get(device_id)
        if device_type is None:
            return None
        params = self._params(device_type, device_id, _FLUX_BEGIN, _FLUX_END)
        specs = FIELDS[device_type]
        newest: dict[str, tuple[int, Scalar]] = {}
        for table in self._flux(_FLUX_LATEST, params):
            for record in table.records:
                name = record.values.get("_field")
                spec = specs.get(name) if isinstance(name, str) else None
                if spec is None or record.values.get("_value") is None:
                    continue  # seq, or a field no longer in the contract
                ts = _ms(record.values["_time"])
                if name not in newest or ts >= newest[name][0]:
                    newest[name] = (ts, _typed(spec.kind, record.values["_value"]))
        if not newest:
            return None
        return max(ts for ts, _ in newest.values()), {name: value for name, (_, value) in newest.items()}

    def query(
        self,
        device_id: str,
        field: str,
        start_ms: int,
        stop_ms: int,
        *,
        every_ms: int | None = None,
        agg: Aggregate = Aggregate.MEAN,
    ) -> list[Point]:
        found = self._schema.kind(device_id, field)
        if found is None:
            return []  # names from the contract only
        device_type, kind = found
        params: dict[str, object] = self._params(device_type, device_id, _flux_time(start_ms), _flux_time(stop_ms))
        params["p_field"] = field
        if every_ms is None:
            flux, wanted = _FLUX_RAW, None
        else:
            flux, wanted = _FLUX_WINDOWED.format(fn=_FLUX_FN[agg]), agg
            params["p_every"] = timedelta(milliseconds=int(every_ms))
        points = [
            Point(_ms(record.values["_time"]), _aggregated(wanted, kind, record.values["_value"]))
            for table in self._flux(flux, params)
            for record in table.records
            if record.values.get("_value") is not None
        ]
        if every_ms is not None:
            # Flux cuts the first window's _start to the range's start: name each window by its aligned start.
            every = int(every_ms)
            points = [Point(p.ts_ms - p.ts_ms % every, p.value) for p in points]
        points.sort(key=lambda p: p.ts_ms)
        return points

    def apply_retention(self, now_ms: int) -> int:
        """Nothing to do: the bucket's retention period applies, enforced by InfluxDB itself."""
        return 0

    def ping(self) -> None:
        # version() raises where ping() would only answer False and hide why.
        self._call("ping", self._client.version)

    def close(self) -> None:
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]

    def _params(self, device_type: DeviceType, device_id: str, start: datetime, stop: datetime) -> dict[str, object]:
        return {
            "p_bucket": self.bucket,
            "p_measurement": str(device_type),
            "p_device_id": device_id,
            "p_start": start,
            "p_stop": stop,
        }

    def _flux(self, flux: str, params: dict[str, object]) -> list[Any]:
        tables: list[Any] = self._call(
            "query of bucket " + self.bucket, self._query_api.query, flux, org=self.org, params=params
        )
        return tables

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except InfluxDBError as exc:
            status = getattr(exc, "status", None)
            detail = f"HTTP {status}: " if status else ""
            # A write answered 400 or 422 was read and refused for what it holds: sending it again cannot help.
            error = ReadingsRefusedError if status in (400, 422) and what.startswith("write") else TelemetryStoreError
            raise error(
                f"InfluxDB at {self.url}: {what} failed: {detail}{_one_line(getattr(exc, 'message', exc))}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TelemetryStoreError(f"InfluxDB at {self.url}: {what} failed: {_one_line(exc)}") from None
