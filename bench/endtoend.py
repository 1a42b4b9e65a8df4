"""Sustained end-to-end throughput: ingest AND deliver, against the Flask receiver it replaces.

An open-loop client (``bench/loadclient.py``, on uvloop: about 90 µs of CPU per request, where
aiohttp's client on asyncio's loop took 220 µs from the two cores the servers need) sends
distinct signed Altur ``on_call_end`` webhooks at fixed, rising rates (each request's latency is
measured from the time it was *scheduled* to be sent, so a server that stalls is charged for the
requests queued behind the stall: no coordinated omission). Targets,
one after the other, each on 127.0.0.1 in its own temporary directory:

- ``eventrouter csv``: the altur source routed to the CSV sink, SQLite store;
- ``eventrouter http``: the same, routed to the http sink posting to a bare aiohttp endpoint;
- ``eventrouter csv +1``, ``eventrouter http +1``: the same two with ``serve
  --delivery-processes 1``: serve receives, one ``eventrouter worker`` child of its own delivers;
- ``flask baseline``: ``bench/flask_receiver.py`` under ``gunicorn -w 2`` (verify the HMAC,
  append a CSV row, fsync, answer 200): everything is delivered when it answers.

For each rate: ack p50/p99, non-200 answers, the client's own lateness (how far behind its
schedule it started requests: if that is large the client, not the server, was the limit), and
the backlog (pending + in-flight deliveries, from ``/metrics``) when the load stops. Before the
next rate the backlog must drain (at most ``--settle`` seconds), or the run stops rising; two
rates missed in a row stop it too. A second at the lowest rate warms each target up. A rate is
*sustained* when its backlog at the end is under one second's worth of events and its p99 ack
is under 50 ms; each target's sustained rate is the highest such rate. Each rate gets up to
``--rounds`` tries (default 2) on every target alike, the best counted: on a shared machine a
neighbour's burst spoils a round's p99, not the server's ability.

Then the drain: a store is filled with ``--backlog`` pending CSV deliveries through the store's
own ``ingest`` (as the server writes them), ``eventrouter serve`` is started on it, and the time
until the backlog is empty (or what was delivered by ``--drain-timeout``) gives the drain rate;
once for each of ``--drain-processes`` (default 0,1,2: serve delivering itself, then with
``--delivery-processes 1`` and ``2``; the CPU counted is serve's and its children's).
With ``--profile FILE``, py-spy samples the draining server: how busy each thread was, and where
the event loop's busy time went. Last, ingest and drain together: ``--shared-backlog`` pending
deliveries (default 30,000) and webhooks at ``--shared-rate`` (default 300/s) while they drain:
the acks' p50/p99 and the deliveries made meanwhile (neither side may starve the other).

    python bench/endtoend.py [--rates 100,200,300,500,750,1000,1500,2000,2500,3000,4000] [--seconds 5] [--rounds 2]
                             [--log-level info] [--backlog 100000] [--skip-drain]
                             [--targets csv,csv+1,http,http+1,flask] [--profile FILE]

About four to five minutes with the defaults on an idle 2-core machine. Needs the ``bench``
extra (``make bench`` installs it). The server's log goes to a file, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import ingest
import loadclient
from ingest import BARE_APP, cpu_seconds, free_port, serve_command, start, stop, wait_ready
from prometheus_client.parser import text_string_to_metric_families

from eventrouter import loops
from eventrouter.config import Config, load_config
from eventrouter.sources import WebhookRequest
from eventrouter.store import create_store
from eventrouter.testing import installed_types, sign_request

SECRET = base64.b64encode(b"endtoend-bench-secret-of-32bytes").decode()
P99_LIMIT_MS = 50.0
FIXTURE = (
    Path(__file__).resolve().parent.parent
    / "plugins/eventrouter-altur/tests/fixtures/on_call_end.json"
)
#: the client's connections at most, as one sender's: eventrouter's default
#: ``max_connections_per_client``, beyond which it answers 503 (a provider at these rates sends
#: from several addresses); a request finding every connection busy waits for one, and its wait
#: counts in its latency, since latencies run from the scheduled time
CONNECTIONS = 128
#: py-spy samples per second
PROFILE_RATE = 200
#: innermost frames of a thread waiting for work: the event loop's poll, a pool's idle queue
IDLE_FRAMES = (
    "EpollSelector.select (",
    "_worker (concurrent/futures/thread.py:81)",
    "Condition.wait (",
    "Event.wait (",
)


@attrs.frozen
class Step:
    """One rate's result on one target."""

    rate: int
    sent: int
    p50: float
    p99: float
    failed: int
    late_p99: float
    backlog: int | None

    @classmethod
    def of(
        cls,
        rate: int,
        sent: int,
        answers: tuple[list[float], list[float], int],
        *,
        backlog: int | None,
    ) -> Step:
        """The step from what :func:`open_loop` measured (latencies, lateness, non-200s)."""
        latencies, lateness, failed = sorted(answers[0]), sorted(answers[1]), answers[2]
        return cls(
            rate=rate,
            sent=sent,
            p50=percentile(latencies, 0.5) * 1000,
            p99=percentile(latencies, 0.99) * 1000,
            failed=failed,
            late_p99=percentile(lateness, 0.99) * 1000,
            backlog=backlog,
        )

    @property
    def sustained(self) -> bool:
        backlog_ok = self.backlog is None or self.backlog < self.rate
        return not self.failed and self.p99 < P99_LIMIT_MS and backlog_ok


def write_config(directory: Path, port: int, *, sink: str, endpoint: str = "") -> Path:
    """bench/ingest.py's config with the altur source, routed to one ``csv`` or ``http`` sink
    (default delivery options: what an operator gets without tuning)."""
    source = f'plugin = "altur"\nsecrets = ["{SECRET}"]'
    table = (
        'plugin = "csv"\ndirectory = "archive"'
        if sink == "csv"
        else f'plugin = "http"\nurl = "{endpoint}"'
    )
    return ingest.write_config(directory, port, source=source, sink=table)


def bodies(count: int, tag: str) -> Iterator[bytes]:
    """Distinct on_call_end payloads (each call id and contact new), as Altur signs them:
    compact JSON. The campaign's own numbers (the fixture's placeholders) stay the same, as a
    campaign's caller id does."""
    payload = json.loads(FIXTURE.read_text())
    for n in range(count):
        payload["id"] = f"cll_{tag}_{n}"
        phone = f"+5255{n % 10**8:08d}"  # a Mexico City number, one per contact
        payload["end_user"]["phone_number"] = payload["campaign_user"]["contact"] = phone
        yield json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed_requests(config: Config, count: int, tag: str) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` requests signed by the configured altur source itself."""
    source = config.sources["bench"]
    signed = []
    for body in bodies(count, tag):
        data, signature = sign_request(source, body)
        signed.append((data, dict(signature.headers)))
    return signed


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * share))]


def open_loop(
    url: str, requests: list[tuple[bytes, dict[str, str]]], rate: int
) -> tuple[list[float], list[float], int]:
    """Send request *i* at ``start + i / rate`` whatever the answers so far; latencies from the
    scheduled time (s), how late each request started (s) and the non-200 count.

    ``bench/loadclient.py``'s client, on uvloop's event loop where it is installed: it shares
    this machine's two cores with the servers it measures, every target alike, and the fewer
    instructions it takes per request, the less it takes from them and the less late it sends
    (the "client late" column).
    """
    load = loadclient.open_loop(url, requests, rate, connections=CONNECTIONS)
    return loops.run(load, event_loop="auto")


async def backlog(base: str) -> int:
    """Pending and in-flight deliveries of every sink, as ``/metrics`` reports them."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        text = await response.text()
    total = 0
    for family in text_string_to_metric_families(text):
        if family.name == "eventrouter_queue_depth":
            total += sum(
                int(s.value) for s in family.samples if s.labels["state"] in ("pending", "inflight")
            )
    return total


async def wait_drained(base: str, timeout: float, *, every: float = 0.25) -> float | None:
    """Seconds until the backlog is empty, or None if it is not within ``timeout``.

    Each look counts the store's queue, which is not free on a big backlog, so looks are at most
    ``every`` seconds apart; but as the end nears they come closer (a quarter of the time the
    progress so far says is left, down to ``FINAL_LOOK`` s), so that the end is seen within
    about that much, not within ``every``: with looks a second apart, a drain of 4.3 s read as
    5 s or 5.3 s (23,210 or 18,700 events/s for one server, depending on when the looks fell).
    """
    started = time.monotonic()
    first: tuple[float, int] | None = None
    while (now := time.monotonic()) - started < timeout:
        left = await backlog(base)
        if left == 0:
            return time.monotonic() - started
        wait = every
        if first is None:
            first = (now, left)
        elif left < first[1]:
            per_second = (first[1] - left) / (now - first[0])
            wait = min(every, max(FINAL_LOOK, left / per_second / 4))
        await asyncio.sleep(wait)
    return None


#: the closest two looks at a draining backlog come (see wait_drained)
FINAL_LOOK = 0.02


def run_rates(
    name: str,
    base: str,
    path: str,
    config: Config,
    args: argparse.Namespace,
    *,
    has_queue: bool,
) -> list[Step]:
    """Every rate of ``args.rates`` in turn, until two in a row are not sustained or one does
    not drain."""
    steps: list[Step] = []
    asyncio.run(wait_ready(f"{base}/healthz" if has_queue else base, timeout=60))
    # a second at the lowest rate first, not counted: connections, caches and files warm up
    warm_up = signed_requests(config, args.rates[0], f"{name[:3]}warm")
    open_loop(base + path, warm_up, args.rates[0])
    if has_queue:
        asyncio.run(wait_drained(base, args.settle))
    for rate in args.rates:
        rounds = []
        for round_ in range(args.rounds):
            tag = f"{name[:3]}{rate}r{round_}"
            requests = signed_requests(config, int(rate * args.seconds), tag)
            answers = open_loop(base + path, requests, rate)
            left = asyncio.run(backlog(base)) if has_queue else None
            step = Step.of(rate, len(requests), answers, backlog=left)
            rounds.append(step)
            print(f"  {name} {rate}/s round {round_ + 1}: {step}", file=sys.stderr)
            drained = not has_queue or asyncio.run(wait_drained(base, args.settle)) is not None
            if not drained:
                break
            if step.sustained:
                break  # sustained: another round cannot do better
        # the best round counts (the shared machine's hiccups hit some rounds, not the server)
        step = min(rounds, key=lambda s: (not s.sustained, s.p99))
        steps.append(step)
        # one rate missed may be the shared machine's doing: two in a row end the climb
        if not step.sustained and len(steps) > 1 and not steps[-2].sustained:
            break
        if not drained:
            print(f"  {name}: the backlog did not drain in {args.settle}s", file=sys.stderr)
            break
    return steps


@contextmanager
def eventrouter(
    directory: Path,
    args: argparse.Namespace,
    *,
    sink: str,
    endpoint: str = "",
    delivery_processes: int = 0,
) -> Iterator[tuple[str, Config, subprocess.Popen[bytes]]]:
    """``eventrouter serve`` running in ``directory`` (delivering in ``delivery_processes``
    children of its own, or itself): its base URL, parsed config, process."""
    port = free_port()
    config_path = write_config(directory, port, sink=sink, endpoint=endpoint)
    config = load_config(config_path, installed_types())
    command = serve_command(config_path, log_level=args.log_level)
    if delivery_processes:
        command += ["--delivery-processes", str(delivery_processes)]
    with (directory / "server.log").open("wb") as log:
        process = start(command, stderr=log)
    try:
        yield f"http://127.0.0.1:{port}", config, process
    finally:
        stop(process)


def measure_eventrouter(
    tmp: Path, args: argparse.Namespace, sink: str, *, delivery_processes: int = 0
) -> list[Step]:
    directory = tmp / f"{sink}-{delivery_processes}"
    directory.mkdir()
    endpoint_port = free_port()
    endpoint = None
    if sink == "http":
        endpoint = start([sys.executable, "-c", BARE_APP, str(endpoint_port)])
    try:
        url = f"http://127.0.0.1:{endpoint_port}/deliveries"
        if endpoint is not None:
            asyncio.run(wait_ready(f"http://127.0.0.1:{endpoint_port}/"))
        with eventrouter(
            directory, args, sink=sink, endpoint=url, delivery_processes=delivery_processes
        ) as (base, config, _):
            return run_rates(
                target_name(sink, delivery_processes),
                base,
                "/hooks/bench",
                config,
                args,
                has_queue=True,
            )
    finally:
        if endpoint is not None:
            stop(endpoint)


def target_name(sink: str, delivery_processes: int) -> str:
    """``eventrouter csv``, or ``eventrouter csv +1`` when it delivers in one process of its own."""
    return f"eventrouter {sink}" + (f" +{delivery_processes}" if delivery_processes else "")


def measure_flask(tmp: Path, args: argparse.Namespace, config: Config) -> list[Step]:
    port = free_port()
    bench_dir = Path(__file__).resolve().parent
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        sys.exit("gunicorn is not installed: 'make bench' installs the bench extra")
    env = {**os.environ, "ALTUR_SECRET": SECRET, "RECEIVER_CSV": str(tmp / "flask.csv")}
    command = [str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", str(bench_dir)]
    with (tmp / "gunicorn.log").open("wb") as log:
        process = start([*command, "flask_receiver:app"], stderr=log, env=env)
    try:
        return run_rates(
            "flask baseline",
            f"http://127.0.0.1:{port}",
            "/webhooks/altur",
            config,
            args,
            has_queue=False,
        )
    finally:
        stop(process)


async def fill(config: Config, count: int) -> float:
    """``count`` events, each with a pending delivery to ``forward``, written by the store's own
    ``ingest`` (concurrent calls share commits, as under load); seconds taken."""
    source = config.sources["bench"]
    store = create_store(config.store, base_dir=config.base_dir)
    await store.open()
    started = time.monotonic()
    try:
        chunk: list[Any] = []
        for body in bodies(count, "drain"):
            chunk.append(store.ingest(source.parse(WebhookRequest(body=body)), ["forward"]))
            if len(chunk) == 1000:
                await asyncio.gather(*chunk)
                chunk = []
        await asyncio.gather(*chunk)
    finally:
        await store.close()
    return time.monotonic() - started


@attrs.frozen
class Drain:
    """The drain of a filled store: seconds to fill it, seconds the drain ran (to the empty queue
    or the timeout), deliveries made meanwhile, the server's CPU seconds, the profile summary."""

    filled: float
    seconds: float
    delivered: int
    cpu: float
    profile: list[str]
    #: deliveries pending when the clock started (the delivery processes may begin before it)
    pending: int = 0


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc): serve's delivery processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def family_cpu(pid: int, children: list[int]) -> float:
    """CPU seconds of ``pid`` and ``children`` (those still running)."""
    total = cpu_seconds(pid)
    for child in children:
        with contextlib.suppress(OSError):
            total += cpu_seconds(child)
    return total


def measure_drain(tmp: Path, args: argparse.Namespace, *, delivery_processes: int = 0) -> Drain:
    """Fill a store with ``args.backlog`` deliveries, then time ``serve`` draining them, itself
    or in ``delivery_processes`` processes of its own (and with ``--profile``, sample where its
    time goes with py-spy)."""
    directory = tmp / f"drain-{delivery_processes}"
    directory.mkdir()
    config = load_config(write_config(directory, 0, sink="csv"), installed_types())
    print(f"  filling a store with {args.backlog:,} pending CSV deliveries", file=sys.stderr)
    filled = asyncio.run(fill(config, args.backlog))
    profile: list[str] = []
    spy = None
    with eventrouter(directory, args, sink="csv", delivery_processes=delivery_processes) as (
        base,
        _,
        process,
    ):
        asyncio.run(wait_ready(f"{base}/healthz", timeout=60))
        children = children_of(process.pid)
        spy = start_profiler(process.pid, args.profile) if args.profile else None
        cpu_before = family_cpu(process.pid, children)
        # the clock starts at a count of what is pending (the middle of the look that counts
        # it): deliveries made before, while serve and its children started, are not counted
        looked = time.monotonic()
        pending = asyncio.run(backlog(base))
        started = (looked + time.monotonic()) / 2
        drained = asyncio.run(wait_drained(base, args.drain_timeout, every=1.0))
        cpu = family_cpu(process.pid, children) - cpu_before
        drain_seconds = time.monotonic() - started
        left = 0 if drained is not None else asyncio.run(backlog(base))
    if spy is not None:
        spy.wait(timeout=120)  # py-spy writes its file when the server has exited
        profile = summarise_profile(Path(args.profile), seconds=drain_seconds)
    return Drain(
        filled=filled,
        seconds=drain_seconds,
        delivered=pending - left,
        cpu=cpu,
        profile=profile,
        pending=pending,
    )


@attrs.frozen
class Shared:
    """Ingest while a backlog drains: the load's step, and the deliveries made meanwhile."""

    step: Step
    seconds: float
    delivered: int


def measure_shared(tmp: Path, args: argparse.Namespace) -> Shared:
    """Fill a store with ``args.shared_backlog`` deliveries, start ``serve`` on it and, while it
    drains them, send webhooks at ``args.shared_rate`` for ``args.seconds``: whether acks stay
    quick while delivery runs flat out, and delivery goes on under ingest (neither starves)."""
    directory = tmp / "shared"
    directory.mkdir()
    config = load_config(write_config(directory, 0, sink="csv"), installed_types())
    print(
        f"  filling a store with {args.shared_backlog:,} pending CSV deliveries, then"
        f" {args.shared_rate}/s while it drains",
        file=sys.stderr,
    )
    asyncio.run(fill(config, args.shared_backlog))
    requests = signed_requests(config, int(args.shared_rate * args.seconds), "shared")
    with eventrouter(directory, args, sink="csv") as (base, _, _):
        asyncio.run(wait_ready(f"{base}/healthz", timeout=60))
        started = time.monotonic()
        answers = open_loop(base + "/hooks/bench", requests, args.shared_rate)
        seconds = time.monotonic() - started
        left = asyncio.run(backlog(base))
    step = Step.of(args.shared_rate, len(requests), answers, backlog=left)
    return Shared(step=step, seconds=seconds, delivered=args.shared_backlog + len(requests) - left)


def start_profiler(pid: int, output: str) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid``'s busy threads into ``output`` as collapsed stacks."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: 'make bench' installs the bench extra")
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--output", output]
    rate = ["--rate", str(PROFILE_RATE)]
    return start([*command, "--threads", *rate], stderr=subprocess.DEVNULL)


def summarise_profile(path: Path, *, seconds: float, top: int = 15) -> list[str]:
    """How busy each thread was (its samples over the samples of a thread busy all along), and
    where the event loop's thread spent its busy time (share of its samples per function,
    wherever on the stack; the frames every sample shares left out)."""
    busy: Counter[str] = Counter()
    main: Counter[str] = Counter()
    main_total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        if not frames or frames[-1].startswith(IDLE_FRAMES):
            continue  # waiting for work (py-spy counts some waits as busy)
        # "thread (123): eventrouter-sqlite-commit_0": pools' threads counted together
        name = thread.partition(": ")[2].rstrip("0123456789").rstrip("_") or thread
        busy[name] += int(count)
        if name == "MainThread":
            main_total += int(count)
            for function in {_function(frame) for frame in frames}:
                main[function] += int(count)
    if not main_total:
        return ["(no samples)"]
    lines = ["busy share of the drain's wall time, by thread:"]
    lines += [f"  {n / (seconds * PROFILE_RATE):6.1%}  {name}" for name, n in busy.most_common()]
    lines.append("the event loop thread's busy samples, by function (inclusive):")
    shown = [(f, n) for f, n in main.most_common() if n < 0.9 * main_total][:top]
    lines += [f"  {n / main_total:6.1%}  {function}" for function, n in shown]
    return lines


def _function(frame: str) -> str:
    """``name (file.py)`` of a py-spy frame ``name (path/to/file.py:123)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})"


def print_table(results: dict[str, list[Step]]) -> dict[str, int]:
    """The per-rate table; returns each target's sustained rate (0: none)."""
    print(
        f"{'target':<20}{'rate/s':>8}{'sent':>7}{'ack p50 ms':>12}{'ack p99 ms':>12}"
        f"{'non-200':>9}{'client late p99 ms':>20}{'backlog':>9}  sustained"
    )
    sustained: dict[str, int] = {}
    for name, steps in results.items():
        sustained[name] = max((s.rate for s in steps if s.sustained), default=0)
        for s in steps:
            left = "-" if s.backlog is None else str(s.backlog)
            print(
                f"{name:<20}{s.rate:>8}{s.sent:>7}{s.p50:>12.1f}{s.p99:>12.1f}{s.failed:>9}"
                f"{s.late_p99:>20.1f}{left:>9}  {'yes' if s.sustained else 'no'}"
            )
    return sustained


#: issue 18's reference: eventrouter's ack p50 at half its maximum load (default log level, CSV
#: sink) before batch delivery, from its wrk run; the target is within 2x of it
HALF_LOAD_P50_MS = 3.7


def half_load(steps: list[Step], sustained: int) -> None:
    """Print the ack p50 at the measured rate nearest half the sustained rate, against the
    reference (a light load on the router: what a sender waits for most of the time)."""
    if not sustained or not steps:
        return
    step = min(steps, key=lambda s: abs(s.rate - sustained / 2))
    verdict = "met" if step.p50 <= 2 * HALF_LOAD_P50_MS else "NOT met"
    print(
        f"ack p50 at half the sustained rate ({step.rate}/s): {step.p50:.1f} ms (reference"
        f" {HALF_LOAD_P50_MS} ms at half load before batch delivery; target <="
        f" {2 * HALF_LOAD_P50_MS:.1f} ms: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=[100, 200, 300, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000],
        help="rising request rates, comma-separated",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="load time per rate")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="tries per rate for every target alike, the best counted (a round that sustains "
        "the rate ends the tries)",
    )
    parser.add_argument("--settle", type=float, default=30.0, help="max wait for a drain")
    parser.add_argument(
        "--log-level", default="info", help="eventrouter's --log-level (its default: info)"
    )
    parser.add_argument("--backlog", type=int, default=100_000, help="deliveries to drain")
    parser.add_argument("--drain-timeout", type=float, default=150.0)
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument(
        "--drain-processes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[0, 1, 2],
        help="drain with serve alone (0) and with serve --delivery-processes N, comma-separated",
    )
    parser.add_argument(
        "--shared-backlog",
        type=int,
        default=30_000,
        help="deliveries pending when ingest and drain share the server (0: skip that part)",
    )
    parser.add_argument(
        "--shared-rate", type=int, default=300, help="webhooks/s sent while that backlog drains"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="sample the drain with py-spy into FILE (collapsed stacks)",
    )
    parser.add_argument(
        "--targets",
        default="csv,csv+1,http,http+1,flask",
        help="which of csv, http, flask to load; csv+N, http+N: serve --delivery-processes N",
    )
    args = parser.parse_args()
    targets = args.targets.split(",")

    results: dict[str, list[Step]] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for target in targets:
            sink, _, processes = target.partition("+")
            if sink not in ("csv", "http"):
                continue
            name = target_name(sink, int(processes or 0))
            print(name, file=sys.stderr)
            results[name] = measure_eventrouter(
                tmp, args, sink, delivery_processes=int(processes or 0)
            )
        if "flask" in targets:
            print("flask baseline (gunicorn -w 2)", file=sys.stderr)
            (tmp / "signer").mkdir()
            signer = load_config(write_config(tmp / "signer", 0, sink="csv"), installed_types())
            results["flask baseline"] = measure_flask(tmp, args, signer)
        drains = {
            processes: measure_drain(tmp, args, delivery_processes=processes)
            for processes in ([] if args.skip_drain else args.drain_processes)
        }
        shared = None if args.skip_drain or not args.shared_backlog else measure_shared(tmp, args)

    print(
        f"\nend-to-end benchmark: open-loop load, {args.seconds:.0f}s per rate, distinct signed"
        f" Altur on_call_end events; eventrouter --log-level {args.log_level}, SQLite store,"
        " default delivery options"
    )
    print(f"machine: {os.cpu_count()} cores shared by the load client and the servers")
    sustained = print_table(results)
    print(f"sustained rate (backlog < 1 s of events, p99 ack < {P99_LIMIT_MS:.0f} ms):")
    for name, rate in sustained.items():
        print(f"  {name:<20}{rate:>6}/s")
    baseline = sustained.get("flask baseline")
    for name, mine in sustained.items():
        if baseline and name.startswith("eventrouter"):
            print(f"{name} / flask baseline: {mine / baseline:.2f}x (target >= 2x)")
    half_load(results.get("eventrouter csv", []), sustained.get("eventrouter csv", 0))
    for processes, drain in drains.items():
        finished = "drained" if drain.delivered == drain.pending else "not drained"
        who = f"{processes} delivery processes" if processes else "serve alone"
        print(
            f"drain ({who}): {args.backlog:,} pending CSV deliveries (filled in"
            f" {drain.filled:.0f}s; {drain.pending:,} when the clock started), {finished}:"
            f" {drain.delivered:,} delivered in"
            f" {drain.seconds:.1f}s, {drain.delivered / drain.seconds:,.0f} events/s (target >="
            f" 20,000); CPU {drain.cpu / drain.seconds:.0%} of one core,"
            f" {drain.cpu / max(1, drain.delivered) * 1e6:,.0f} µs per delivery"
        )
        if drain.profile:
            print(f"where the drain's time goes (py-spy samples in {args.profile}):")
            print("\n".join(f"  {line}" for line in drain.profile))
    if shared is not None:
        step = shared.step
        print(
            f"ingest while draining: {args.shared_backlog:,} pending, {step.sent:,} webhooks at"
            f" {step.rate}/s: ack p50 {step.p50:.1f} ms, p99 {step.p99:.1f} ms, non-200"
            f" {step.failed}; {shared.delivered:,} delivered in those {shared.seconds:.1f}s"
            f" ({shared.delivered / shared.seconds:,.0f} events/s), {step.backlog:,} left"
        )


if __name__ == "__main__":
    main()
