"""A disposable PostgreSQL cluster from the installed server binaries (no Docker, no service).

``initdb`` into a temp directory, ``pg_ctl start`` on a free loopback port with the socket in
the same directory, and ``pg_ctl stop`` at the end. Used by the session fixture ``pg_cluster``:
with pytest-xdist every worker starts its own cluster (own directory, own port), and a port
taken between choosing it and binding it (another worker, another test run) is retried.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def _bin(name: str) -> str:
    candidates = [shutil.which(name)] + sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True
    )
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"PostgreSQL server binary '{name}' not found (install postgresql)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    root: Path
    port: int
    superuser: str = "trialscreen_admin"

    @property
    def url(self) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/postgres"

    def url_for(self, db: str, user: str | None = None, password: str | None = None) -> str:
        auth = user or self.superuser
        if password:
            auth += f":{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def _run(self, *cmd: str) -> None:
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        # initdb and postgres refuse to run as root: drop to the 'postgres' user if we are root
        if os.geteuid() == 0:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=120)

    def start(self) -> PgCluster:
        data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run(
            _bin("initdb"),
            "-D",
            str(data),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
        )
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self) -> None:
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _port_was_taken(cluster: PgCluster) -> bool:
    log = cluster.root / "pg.log"
    return log.is_file() and "could not bind" in log.read_text(errors="replace")


def start_cluster(attempts: int = 3) -> PgCluster:
    """A started cluster in a new temp directory; another free port if the first was taken."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    for attempt in range(1, attempts + 1):
        root = Path(tempfile.mkdtemp(prefix=f"trialscreen-pg-{worker}-"))
        os.chmod(root, 0o755)
        cluster = PgCluster(root=root, port=_free_port())
        try:
            return cluster.start()
        except subprocess.CalledProcessError:
            retry = attempt < attempts and _port_was_taken(cluster)
            with contextlib.suppress(subprocess.CalledProcessError):
                cluster.stop()  # removes the directory even when the server never started
            if not retry:
                raise
    raise RuntimeError(f"no free port for PostgreSQL after {attempts} attempts")
