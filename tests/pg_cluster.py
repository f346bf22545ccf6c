"""A PostgreSQL cluster of the test's own, in a temp dir on a free port, that the test can stop and start.

The machine's PostgreSQL serves the other tests and must stay up; an outage is rehearsed on one made here with
`initdb` and `pg_ctl`. PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from facmon.cmd.broker import free_port


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


class PgCluster:
    def __init__(self, bin_dir: Path, base: Path, port: int, user: str | None) -> None:
        self.bin_dir = bin_dir
        self.base = base
        self.port = port
        self._user = user
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr or done.stdout}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.base / "data"), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.base / "data"), "-l", str(self.base / "log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.base / "data"), "-m", "fast", "-w", "stop")


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    user: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres user to run a cluster as")
        user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="facmon-pg-"))
    if user is not None:
        shutil.chown(base, user)
    cluster = PgCluster(bin_dir, base, free_port(), user)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        with suppress(RuntimeError):  # stopped by the test already
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
