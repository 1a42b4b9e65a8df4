"""Process-level test helpers: run ``eventrouter serve`` / ``worker`` for real, fire signed bursts.

Used by the reliability and scale-out tests, which kill servers with real signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import standardwebhooks
from attrs import define, field

from tests.redis_server import free_port

__all__ = [
    "WHSEC",
    "Burst",
    "EventRouterProcess",
    "fire",
    "free_port",
    "run_cli",
    "signed_requests",
    "write_demo_config",
]

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@define
class EventRouterProcess:
    """``eventrouter serve|worker`` in a child process, its logs in ``log_path``."""

    config: Path
    command: str = "serve"
    port: int = field(factory=free_port)
    args: Sequence[str] = ()
    env: dict[str, str] = field(factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 20.0) -> EventRouterProcess:
        self.log_path = self.config.parent / f"{self.command}-{self.port}-{time.monotonic_ns()}.log"
        log = self.log_path.open("wb")
        cmd = [
            sys.executable,
            "-m",
            "eventrouter",
            self.command,
            "--config",
            str(self.config),
            "--port",
            str(self.port),
            *self.args,
        ]
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        log.close()
        self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, *, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"eventrouter {self.command} exited with {self.process.returncode}:\n{self.logs()}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as answer,  # noqa: S310 - loopback
            ):
                if answer.status == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(
            f"eventrouter {self.command} not ready within {timeout}s:\n{self.logs()}"
        )

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, *, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after 30 s (test clean-up)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def logs(self) -> str:
        return (
            self.log_path.read_text(errors="replace")
            if self.log_path and self.log_path.exists()
            else ""
        )


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


async def wait_until(predicate: Any, *, timeout: float, what: str, interval: float = 0.01) -> None:
    """Poll ``predicate()`` until it is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def write_demo_config(
    directory: Path,
    rest: str = "",
    *,
    store: str = 'path = "eventrouter.db"',
    server: str = "",
) -> Path:
    """``directory/eventrouter.toml``: a server on 127.0.0.1 (with ``server``'s lines), ``[store]``
    holding ``store``, a standard-webhooks source ``demo`` signed with :data:`WHSEC`, then
    ``rest`` (sinks, routes)."""
    config = directory / "eventrouter.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
{server}

[store]
{store}

[sources.demo]
plugin = "standard-webhooks"
secrets = ["{WHSEC}"]
{rest}
"""
    )
    return config


def signed_requests(
    count: int, *, tag: str, secret: str = WHSEC, event_type: str = "call.ended"
) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` distinct Standard Webhooks requests (body, headers), ids ``msg_<tag>_<n>``."""
    webhook = standardwebhooks.Webhook(secret)
    now = datetime.now(UTC)
    requests = []
    for n in range(count):
        message_id = f"msg_{tag}_{n}"
        body = json.dumps(
            {"type": event_type, "timestamp": now.isoformat(), "data": {"n": n, "tag": tag}}
        )
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(message_id, now, body),
        }
        requests.append((body.encode(), headers))
    return requests


@define
class Burst:
    """What a burst got back: per request, the status (0 for no answer) and the JSON answer."""

    statuses: list[int] = field(factory=list)
    answers: list[Any] = field(factory=list)

    @property
    def accepted_ids(self) -> set[str]:
        """Event ids of every request answered 2xx (accepted, or duplicate of an accepted one)."""
        return {
            a["event_id"]
            for s, a in zip(self.statuses, self.answers, strict=True)
            if 200 <= s < 300 and isinstance(a, dict) and "event_id" in a
        }


async def fire(
    url: str,
    requests: Sequence[tuple[bytes, dict[str, str]]],
    *,
    concurrency: int = 32,
    timeout: float = 30.0,
) -> Burst:
    """Post every request with ``concurrency`` in flight; a refused or cut connection counts as 0."""
    burst = Burst(statuses=[0] * len(requests), answers=[None] * len(requests))
    pending = iter(enumerate(requests))
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(
        timeout=client_timeout, connector=aiohttp.TCPConnector(limit=concurrency)
    ) as session:

        async def worker() -> None:
            for index, (body, headers) in pending:
                try:
                    async with session.post(url, data=body, headers=headers) as answer:
                        text = await answer.text()
                        burst.statuses[index] = answer.status
                        with contextlib.suppress(ValueError):
                            burst.answers[index] = json.loads(text)
                except (aiohttp.ClientError, TimeoutError, OSError):
                    burst.statuses[index] = 0

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return burst


def run_cli(config: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``eventrouter ARGS --config CONFIG`` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "eventrouter", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
