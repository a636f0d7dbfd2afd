"""A PostgreSQL server of the test's own, to restart at will, and a proxy that loses a commit.

Restarting the shared server on 127.0.0.1:5432 would break every other test (and
other processes) using it at the time, so the restart tests start a throwaway
cluster (``initdb`` into a temporary folder, ``pg_ctl`` on a free loopback port)
and stop and start that one. As root the server runs as the ``postgres`` user
(PostgreSQL refuses to run as root).

``CommitDropper`` sits between a client and the server and, once armed, cuts the
connection at the next ``COMMIT``: after the server received it (the commit
happened, its answer is lost) or before (the transaction aborts). That is the
one moment a blind retry duplicates a write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["CommitDropper", "PrivateServer", "drop_database", "server_binaries"]


def drop_database(admin: Any, name: str) -> None:
    """Drop database ``name`` after ending its sessions (a killed worker's may linger).

    ``admin``: a SQLAlchemy engine on another database of the server, in AUTOCOMMIT.
    """
    import sqlalchemy

    with admin.connect() as conn:
        conn.execute(
            sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
            ),
            {"n": name},
        )
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))


def server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL's server is absent."""
    for name in ("initdb", "pg_ctl"):
        if shutil.which(name) is None:
            pg_config = shutil.which("pg_config")
            if pg_config is None:
                return None
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            folder = Path(out.stdout.strip())
            return (
                folder if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file() else None
            )
    return Path(str(shutil.which("pg_ctl"))).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """A PostgreSQL cluster in a temporary folder on a free loopback port (trust auth)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lawsearch-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:  # the server refuses root: run it as postgres
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def url(self, database: str = "postgres", password: str = "") -> str:
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._as, str(self.bindir / tool), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if out.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stdout}{out.stderr}\n{log[-2000:]}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=60"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends each session ("terminating connection due to
        administrator command"); ``immediate`` is a crash (recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        cmd = [*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]
        return subprocess.run(cmd, capture_output=True, cwd=self.root).returncode == 0

    def ensure_running(self) -> None:
        """Start the server if a test left it stopped (the next test needs it)."""
        if not self.running():
            self.start()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class CommitDropper:
    """A loopback TCP proxy to ``target_port`` that can cut the connection at a ``COMMIT``.

    ``arm(after_server=True)``: the next client message holding ``COMMIT`` reaches the
    server, and the connection is closed before its answer comes back (committed,
    answer lost). ``arm(after_server=False)``: closed before the server sees it (the
    transaction aborts). Then it disarms; new connections pass as usual.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._armed: bool | None = None
        self.dropped = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def arm(self, *, after_server: bool) -> None:
        with self._lock:
            self._armed = after_server

    def close(self) -> None:
        self._listener.close()
        for s in list(self._open):
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._open += [client, server]
            frozen = threading.Event()  # set: nothing more travels back to this client
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pipe, args=(src, dst, up, frozen), daemon=True
                ).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, from_client: bool, frozen: threading.Event
    ) -> None:
        try:
            while data := src.recv(65536):
                if not from_client and frozen.is_set():
                    return  # the answer to the COMMIT is lost
                cut: bool | None = None
                if from_client and b"COMMIT" in data:
                    with self._lock:
                        cut, self._armed = self._armed, None
                if cut is None:
                    dst.sendall(data)
                    continue
                self.dropped += 1  # counted first: the client may see the cut any moment now
                frozen.set()
                if cut:
                    dst.sendall(data)
                    time.sleep(0.3)  # the server commits; its answer never travels back
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                        s.close()
                return
        except OSError:
            pass
        finally:
            if not frozen.is_set():  # a cut connection is closed by the thread that cut it
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_RDWR)
