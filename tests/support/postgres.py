"""A real, throwaway PostgreSQL server for the tests, started from the machine's binaries.

`./dev test` makes sure the binaries are installed (Debian's `postgresql` package).
The server gets its own data directory and port, listens on 127.0.0.1 only, and is
stopped when the test session ends. When it cannot be started, the tests that need it
fail and say why: they are never skipped.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ("PostgresServer", "ServerUnavailable", "find_bin_dir")


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server could be started; the message says why and what to do."""


def find_bin_dir() -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`."""
    candidates = [os.environ.get("RAILYARD_PG_BIN", "")]
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise ServerUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. `./dev test` installs them "
        "(apt-get install postgresql); or set RAILYARD_PG_BIN to their directory."
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A PostgreSQL server in a temporary directory."""

    directory: Path
    port: int
    bin_dir: Path
    user: str | None

    @property
    def url(self) -> str:
        """The URL of the test database."""
        return f"postgresql://railyard@127.0.0.1:{self.port}/railyard_test"

    @classmethod
    def start(cls) -> PostgresServer:
        """Initialize a cluster and start it; raise `ServerUnavailable` on any failure."""
        bin_dir = find_bin_dir()
        directory = Path(tempfile.mkdtemp(prefix="railyard-pg-"))
        user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            user = "postgres"
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise ServerUnavailable(
                    "running as root, and there is no `postgres` user to run the server as"
                ) from None
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        server = cls(directory, _free_port(), bin_dir, user)
        data = directory / "data"
        server._run("initdb", "-D", str(data), "-U", "railyard", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections=200 -c shared_buffers=32MB"
        )
        server._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(directory / "server.log"), "-w", "start")
        server._run("createdb", "-h", "127.0.0.1", "-p", str(server.port), "-U", "railyard", "railyard_test")
        return server

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=self.directory)
        if done.returncode != 0:
            log = self.directory / "server.log"
            extra = log.read_text()[-2000:] if log.exists() else ""
            raise ServerUnavailable(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()}\n{extra}")

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        try:
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
