"""A throwaway ``redis-server`` for tests: a free loopback port, a temporary directory, killed after.

``redis_server`` is a pytest fixture (import ``redis_server_fixture`` into a test module to use it). Without the binary the test is skipped with a hint on how to
install it, or fails when the ``CI`` environment variable is set (CI must run these tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from attrs import define

__all__ = [
    "RedisServer",
    "free_port",
    "redis_binary",
    "redis_server_fixture",
    "start_redis_server",
]

INSTALL_HINT = (
    "redis-server is not installed; install it to run the Redis store tests "
    "(Debian/Ubuntu: apt-get install redis-server, macOS: brew install redis)"
)


@define
class RedisServer:
    """A running ``redis-server``; ``stop()`` kills it (tests use that to take Redis down)."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server hangs (connections open, nothing answered), as in a stall."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


def free_port() -> int:
    """A loopback TCP port nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_binary() -> str:
    """The ``redis-server`` binary; skips the test (fails it on CI) when it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return binary


def start_redis_server(
    directory: Path,
    *,
    timeout: float = 10.0,
    port: int | None = None,
    args: Sequence[str] = (),
    config_file: Path | None = None,
) -> RedisServer:
    """Start ``redis-server`` with append-only persistence in ``directory``; wait for PING.

    ``port``: that port rather than a free one; ``args``: more options (``--replicaof ...``);
    ``config_file``: a configuration file to start from (a Sentinel's, with ``--sentinel``).
    """
    binary = redis_binary()
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "redis.log"
    for _ in range(1 if port is not None else 3):  # a free port may be taken before binding
        chosen = port if port is not None else free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    binary,
                    *([str(config_file)] if config_file is not None else []),
                    "--port",
                    str(chosen),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--dir",
                    str(directory),
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = RedisServer(port=chosen, directory=directory, process=process, log_path=log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _answers_ping(chosen):
                return server
            time.sleep(0.02)
        server.stop()
    output = log_path.read_text(errors="replace")[-2000:]
    pytest.fail(f"redis-server did not answer PING within {timeout}s:\n{output}")


@pytest.fixture(name="redis_server")
def redis_server_fixture(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on a free 127.0.0.1 port, killed after the test."""
    server = start_redis_server(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()
