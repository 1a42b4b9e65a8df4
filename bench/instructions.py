"""CPU instructions per ingested request: eventrouter (durable SQLite store) vs a bare aiohttp app.

The throughput figures of ``bench/ingest.py`` move with whatever else the shared machine is doing
(the bare app's figure has ranged from 3,500 to 9,300 requests/s between runs). Instruction
counts do not: each server runs under ``valgrind --tool=callgrind``, which counts the
instructions the process executes on every thread, and is loaded twice, with ``--small`` and
then ``--large`` requests; the difference divided by the extra requests is what one request
costs, start-up and shutdown cancelling out. Same requests, same client code as
``bench/ingest.py``; about two minutes in all (everything runs some 50 times slower under
valgrind). Needs valgrind (Debian: ``apt-get install valgrind``).

    python bench/instructions.py [--small 300] [--large 1300] [--log-level warning]
                                 [--event-loop auto|asyncio|uvloop] [--bare-event-loop asyncio|uvloop]

eventrouter runs on the event loop its config names (``auto``: uvloop, as ``serve`` does by
default); the bare app on asyncio's own, as ``web.run_app`` runs it, unless told otherwise.

Two counts per server: every thread, and the event loop's thread alone. The bare app has one
thread; eventrouter's store commits (the fsync) and checkpoints on helper threads, which run
beside the event loop with the GIL released, so the event loop's thread is what bounds its
throughput. The ratios are the bare app's instructions per request over eventrouter's: what
share of the bare app's throughput eventrouter would keep if both had the CPU to themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ingest import (
    BARE_APP,
    free_port,
    load,
    serve_command,
    signed_requests,
    wait_ready,
    write_config,
)


def instructions(
    command: list[str], port: int, requests: int, workdir: Path, tag: str
) -> tuple[int, int]:
    """Instructions of ``command`` (a server on ``port``) loaded with ``requests``: on every
    thread, and on the main (event loop) thread."""
    out = workdir / f"callgrind.{tag}.{requests}.out"
    log = workdir / f"{tag}.{requests}.log"  # valgrind's and the server's stderr
    with log.open("wb") as stderr:  # the child keeps its own copy
        process = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",  # one file per thread: out-01 (main), out-02, ...
                f"--callgrind-out-file={out}",
                *command,
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        asyncio.run(wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=300))
        batch = signed_requests(requests, f"{tag}_{requests}")
        _, _, failures = asyncio.run(
            load(f"http://127.0.0.1:{port}/hooks/bench", batch, concurrency=16)
        )
        if failures:
            raise SystemExit(f"{tag}: {failures} requests were not answered 200\n{_tail(log)}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=600)
        except subprocess.TimeoutExpired:
            process.kill()
    threads = {}
    for path in sorted(workdir.glob(f"{out.name}-*")):
        summary = re.search(r"^(?:summary|totals):\s+(\d+)", path.read_text(), re.MULTILINE)
        if summary is not None:
            threads[path.name.rsplit("-", 1)[1]] = int(summary.group(1))
    if "01" not in threads:
        raise SystemExit(f"{tag}: callgrind wrote no totals for the main thread\n{_tail(log)}")
    return sum(threads.values()), threads["01"]


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def per_request(
    command: list[str], port: int, small: int, large: int, workdir: Path, tag: str
) -> tuple[float, float]:
    """Instructions per request (every thread, main thread): the difference between two loads."""
    low = instructions(command, port, small, workdir, tag)
    high = instructions(command, port, large, workdir, tag)
    return tuple((h - lo) / (large - small) for h, lo in zip(high, low, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=1300)
    parser.add_argument(
        "--log-level", default="warning", help="eventrouter's --log-level (serve's default: info)"
    )
    parser.add_argument(
        "--bare-event-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the bare app's event loop (default asyncio's own, as web.run_app runs it)",
    )
    parser.add_argument(
        "--event-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="eventrouter's [server] event_loop (default auto: uvloop where installed)",
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        er_port, bare_port = free_port(), free_port()
        # the bare app answers /healthz too (wait_ready accepts any status below 500)
        bare_app = BARE_APP
        if args.bare_event_loop == "uvloop":
            uvloop = (
                "import asyncio, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())"
            )
            bare_app = f"{uvloop}\n{bare_app}"
        bare = [sys.executable, "-c", bare_app, str(bare_port)]
        bare_cost = per_request(bare, bare_port, args.small, args.large, workdir, "bare")
        config = write_config(workdir, er_port, bare_port, deliver=False)
        text = config.read_text()
        config.write_text(
            text.replace("[server]\n", f'[server]\nevent_loop = "{args.event_loop}"\n', 1)
        )
        command = serve_command(config, log_level=args.log_level)
        er_cost = per_request(command, er_port, args.small, args.large, workdir, "er")

    print(
        f"\ninstructions per request (callgrind; {args.large} minus {args.small} requests,"
        f" concurrency 16; eventrouter --log-level {args.log_level}, event_loop"
        f" {args.event_loop}; bare aiohttp on {args.bare_event_loop})"
    )
    print(f"{'server':<14}{'every thread':>16}{'event loop thread':>20}")
    for name, (every, main_thread) in (("bare aiohttp", bare_cost), ("eventrouter", er_cost)):
        print(f"{name:<14}{every:>16,.0f}{main_thread:>20,.0f}")
    print(
        f"bare aiohttp / eventrouter: {bare_cost[0] / er_cost[0]:.2f}x every thread,"
        f" {bare_cost[1] / er_cost[1]:.2f}x event loop thread (the throughput share at equal CPU)"
    )


if __name__ == "__main__":
    main()
