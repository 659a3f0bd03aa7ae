"""`tribunal bench chaos`: the whole pipeline under a reusable adversary, measured.

On a broker of its own (free ports, its own data directory: a shared broker is never touched) it
runs every tier as its own OS process (workers w1-w3, the aggregator, the judge, and an intake
and a sink for a JSON source; instant hash classifiers, task sentiment3 so that some items reach
the judge), publishes `items` good items (every third as another system's record on the source
topic, random key and partition, which must come out enriched on the sink exactly once)
at a steady rate with hostile records mixed in (`tribunal.bench.hostile`), and meanwhile kill -9s a
random tier `kills` times (restarted at once under the same instance id, which fences its
predecessor) and restarts the broker once. A tier that exits by itself is restarted after a
backoff and counted. Canary secrets are configured (unused SASL and TLS key passwords) and every
tier's output is searched for them. One JSON object reports it all (`ChaosReport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from tribunal.bench.chaos_source import good_record, sink_ids, via_source, wait_for_sink
from tribunal.bench.hostile import CROSS_TASK, HostileRecord, account, hostile_records
from tribunal.bench.sources import create_source_topic
from tribunal.core.connect_settings import SinkSettings, SourceSettings
from tribunal.core.logs import configure_logging
from tribunal.core.settings import Settings, settings_env
from tribunal.core.topics import create_topics, partitions_of, read_to_end
from tribunal.localkafka import LocalBroker
from tribunal.schemas.codec import DecodeError, decode
from tribunal.schemas.messages import DeadLetter, Item, Verdict

__all__ = ["ChaosPlan", "bench_chaos"]

WORKERS = ("w1", "w2", "w3")
# Never used to connect (the broker speaks PLAINTEXT); they must never appear in any output.
CANARIES = ("canary-sasl-5ecret-7Hq2", "canary-keyfile-5ecret-Zp9w")


@dataclass(frozen=True)
class ChaosPlan:
    items: int = 3_000
    kills: int = 5
    hostile: int = 72  # three of each kind in `tribunal.bench.hostile`
    rate: float = 100.0  # good items per second
    broker_restart: bool = True
    outage_s: float = 0.0  # how long the broker stays down before it is started again
    seed: int = 13
    drain_timeout_s: float = 180.0


@dataclass
class _Tier:
    """One tier process, kept running: restarted at once after our kill, after a backoff otherwise."""

    label: str
    args: tuple[str, ...]
    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None
    killed: bool = False
    exits: list[int] = field(default_factory=list)  # exit codes of exits we did not cause

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tribunal.cli", *self.args, env=self.env, stdout=out, stderr=out
            )

    async def keep(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            assert self.process is not None
            code = await self.process.wait()
            if stop.is_set():
                return
            if self.killed:
                self.killed = False
            else:
                self.exits.append(code)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 8.0)
            if not stop.is_set():
                await self.start()

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.killed = True
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def own_broker(settings: Settings, workdir: Path) -> LocalBroker:
    """A broker under `workdir` on free ports, sharing the jars of the settings' local broker."""
    libs = LocalBroker(settings.home, settings.broker).fetch()
    home = workdir / "home"
    (home / "kafka").mkdir(parents=True, exist_ok=True)
    link = home / "kafka" / libs.name
    if not link.exists():
        link.symlink_to(libs.resolve())
    port, controller = _free_ports(2)
    return LocalBroker(home, settings.broker.model_copy(update={"port": port, "controller_port": controller}))


def run_settings(settings: Settings, bootstrap: str) -> Settings:
    """The chaos run's settings: its broker, fresh topics, canary secrets, short timeouts."""
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap, "sasl_password": SecretStr(CANARIES[0]),
                                              "ssl_keyfile_password": SecretStr(CANARIES[1])})  # fmt: skip
    topics = settings.topics.model_copy(update={"prefix": f"chaos-{uuid.uuid4().hex[:8]}-"})
    # The smallest session timeout the broker allows: a killed member's partitions move on sooner.
    runtime = settings.runtime.model_copy(update={"session_timeout_ms": 6_000, "transaction_timeout_ms": 10_000})
    aggregator = settings.aggregator.model_copy(
        update={"workers": WORKERS, "quorum": 2, "policy": "majority", "deadline_ms": 30_000}
    )
    # A third of the good items arrive as another system's JSON records through a source, and
    # leave enriched through its sink: both tiers are in the kill rotation like every other.
    source = SourceSettings(name="chaos", topic=f"{topics.prefix}source", id="ref", text="body", task="sentiment3")
    sink = SinkSettings(name="chaos-out", source="chaos", topic=f"{topics.prefix}sink")
    return settings.model_copy(
        update={"kafka": kafka, "topics": topics, "runtime": runtime, "aggregator": aggregator,
                "source": (source,), "sink": (sink,)}
    )  # fmt: skip


def _tiers(settings: Settings, logs: Path) -> list[_Tier]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUNAL_")}
    base |= settings_env(settings) | {"TRIBUNAL_LOG_LEVEL": "warning", "TRIBUNAL_LOG_FORMAT": "json"}
    commands: list[tuple[str, tuple[str, ...]]] = [
        (f"worker-{w}", ("worker", "--name", w, "--classifier", f"hash:{w}")) for w in WORKERS
    ]
    commands += [("aggregator", ("aggregator",)), ("judge", ("judge", "--classifier", "hash:judge"))]
    commands += [("intake", ("intake", "--source", "chaos")), ("sink", ("sink", "--sink", "chaos-out"))]
    return [
        _Tier(label, args, base | {"TRIBUNAL_RUNTIME__INSTANCE_ID": f"chaos-{label}"}, logs / f"{label}.log")
        for label, args in commands
    ]


async def _publish(
    producer: AIOKafkaProducer, records: list[tuple[str, bytes | None, bytes | None, int | None]]
) -> None:
    """Send records, retrying through a broker restart (a retried item may land twice: the
    aggregator must count it once)."""
    for attempt in range(60):
        futures = [await producer.send(t, v, key=k, partition=p) for t, k, v, p in records]
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = [r for r, res in zip(records, results, strict=True) if isinstance(res, BaseException)]
        if not failed:
            return
        records = failed
        await asyncio.sleep(min(0.5 * (attempt + 1), 3.0))
    raise KafkaError(f"{len(records)} records could not be published")


async def _produce(settings: Settings, plan: ChaosPlan, items: list[Item],
                   hostile: list[tuple[str, HostileRecord]], rng: random.Random) -> None:  # fmt: skip
    """Cross-task votes first (so they are held until their item arrives), then the good items at
    `plan.rate` with the other hostile records at random places among them."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=True,
                                max_request_size=4 * 1024 * 1024, request_timeout_ms=60_000)  # fmt: skip
    await producer.start()
    try:
        early = [r for name, r in hostile if name == CROSS_TASK]
        await _publish(producer, [(r.topic, r.key, r.value, r.partition) for r in early])
        mixed = [good_record(settings, n, item, rng) for n, item in enumerate(items)]
        for _, record in (h for h in hostile if h[0] != CROSS_TASK):
            mixed.insert(rng.randrange(len(mixed) + 1), (record.topic, record.key, record.value, record.partition))
        started, step = time.monotonic(), max(1, int(plan.rate / 10))
        for n in range(0, len(mixed), step):
            await _publish(producer, mixed[n : n + step])
            delay = started + (n + step) / plan.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        await producer.stop()


async def _havoc(plan: ChaosPlan, tiers: list[_Tier], broker: LocalBroker, rng: random.Random,
                 window_s: float, started: float, log: dict[str, Any]) -> None:  # fmt: skip
    """Kill -9 random tiers at random moments of the production window; restart the broker once."""
    events: list[tuple[float, str]] = [(rng.uniform(0.1, 0.9) * window_s, "kill") for _ in range(plan.kills)]
    if plan.broker_restart:
        events.append((rng.uniform(0.35, 0.65) * window_s, "broker"))
    victims = [t for _ in range(plan.kills) for t in rng.sample(tiers, len(tiers))]  # every tier in turn
    for at, what in sorted(events):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        if what == "kill":
            tier = victims.pop(0)
            tier.kill()
            log["kills"].append({"tier": tier.label, "at_s": round(time.monotonic() - started, 1)})
            continue
        went_down = time.monotonic()
        await _crash(broker)
        await asyncio.sleep(plan.outage_s)
        await asyncio.to_thread(broker.up)
        log["broker_restart"] = {
            "at_s": round(went_down - started, 1),
            "down_s": round(time.monotonic() - went_down, 1),
        }


async def _crash(broker: LocalBroker) -> None:
    """kill -9 the broker (a crash, not a clean shutdown) and wait until it is gone."""
    pid = broker.pid()
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    # Not our child: its exit is no event we can await, so poll its pid.
    while broker.pid() is not None:  # noqa: ASYNC110
        await asyncio.sleep(0.1)


async def _labels(settings: Settings) -> list[Verdict]:
    tps = await partitions_of(settings, settings.topics.labels_topic)
    return [decode(r.value, Verdict) async for r in read_to_end(settings, tps)]


async def _wait_for_labels(settings: Settings, ids: set[str], timeout_s: float) -> None:
    """Poll the labels topic until every id has a label or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(KafkaError):
            if ids <= {v.item_id for v in await _labels(settings)}:
                return
        await asyncio.sleep(2.0)


async def _letters(settings: Settings) -> tuple[list[DeadLetter], int]:
    """Every dead letter of every DLQ topic, and how many records there were not letters."""
    t = settings.topics
    letters, unreadable = [], 0
    for topic in (t.items_topic, t.votes_topic, t.judge_topic, t.verdicts_topic, settings.source[0].topic):
        async for record in read_to_end(settings, await partitions_of(settings, t.dlq(topic))):
            try:
                letters.append(decode(record.value, DeadLetter))
            except DecodeError:
                unreadable += 1
    return letters, unreadable


async def _copies_sent(
    settings: Settings, hostile: list[tuple[str, HostileRecord]], problems: list[dict[str, Any]]
) -> None:
    """For each problem, how many copies of its record its topic holds (a retried send may land twice)."""
    for problem in problems:
        record = next(
            r
            for name, r in hostile
            if name == problem["record"] and r.letter_key.decode(errors="replace") == problem["key"]
        )
        tps = await partitions_of(settings, record.topic)
        problem["copies_sent"] = sum(
            [1 async for r in read_to_end(settings, tps) if r.key == record.key and r.value == record.value]
        )


def _scan(logs: Path) -> tuple[int, int]:
    """(occurrences of a canary secret or its first 6 characters, lines) in every tier's output."""
    needles = [c.encode() for c in CANARIES] + [c[:6].encode() for c in CANARIES]
    found = lines = 0
    for path in logs.glob("*.log"):
        data = path.read_bytes()
        found += sum(data.count(n) for n in needles)
        lines += data.count(b"\n")
    return found, lines


async def bench_chaos(settings: Settings, plan: ChaosPlan, workdir: Path) -> dict[str, Any]:
    """Run the adversary (see the module docstring); return the report."""
    configure_logging("json", "error")  # this process's own clients: errors only, repeats held back
    rng = random.Random(plan.seed)
    broker = own_broker(settings, workdir)
    began = time.monotonic()
    await asyncio.to_thread(broker.up)
    broker_up_s = round(time.monotonic() - began, 1)
    try:
        report = await _run(run_settings(settings, broker.bootstrap), plan, broker, rng, workdir)
    finally:
        await _crash(broker)  # its data is thrown away with `workdir`
    return report | {"broker_start_s": broker_up_s}


async def _run(settings: Settings, plan: ChaosPlan, broker: LocalBroker, rng: random.Random,
               workdir: Path) -> dict[str, Any]:  # fmt: skip
    await create_topics(settings)
    await create_source_topic(settings)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    items = [Item(id=f"chaos-{n}", text=f"chaos message {n} about parcel {n % 97}", task="sentiment3")
             for n in range(plan.items)]  # fmt: skip
    ids = {i.id for i in items}
    sourced = {i.id for n, i in enumerate(items) if via_source(n)}
    hostile = hostile_records(settings, sorted(ids), plan.hostile, rng)
    tiers = _tiers(settings, logs)
    stop = asyncio.Event()
    events: dict[str, Any] = {"kills": [], "broker_restart": None}
    started = time.monotonic()
    for tier in tiers:
        await tier.start()
    keepers = [asyncio.create_task(tier.keep(stop)) for tier in tiers]
    window = (plan.items + plan.hostile) / plan.rate
    try:
        havoc = asyncio.create_task(_havoc(plan, tiers, broker, rng, window, started, events))
        await _produce(settings, plan, items, hostile, rng)
        await havoc
        await _wait_for_labels(settings, ids, plan.drain_timeout_s)
        await wait_for_sink(settings, sourced, plan.drain_timeout_s)
        drained = time.monotonic()
    finally:
        stop.set()
        await asyncio.gather(*(tier.stop() for tier in tiers))
        await asyncio.gather(*keepers, return_exceptions=True)
    labels = await _labels(settings)
    on_sink = await sink_ids(settings)
    letters, unreadable = await _letters(settings)
    counts = Counter(v.item_id for v in labels)
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for letter in letters:
        by_kind[letter.source_topic.removeprefix(settings.topics.prefix)][letter.error_kind] += 1
    exits = {t.label: dict(Counter(str(c) for c in t.exits)) for t in tiers if t.exits}
    secrets, log_lines = _scan(logs)
    accounting = account(hostile, letters)
    if accounting["problems"]:
        await _copies_sent(settings, hostile, accounting["problems"])
    return {
        "items_in": plan.items,
        "labelled": len(ids & set(counts)),
        "missing": len(ids - set(counts)),
        "duplicates": sum(1 for i in ids if counts[i] > 1),
        "forged_labels": sum(n for i, n in counts.items() if i not in ids),
        "hostile": {"sent": len(hostile), **accounting},
        "sink": {
            "source_records": len(sourced),
            "enriched": len(sourced & set(on_sink)),
            "missing": len(sourced - set(on_sink)),
            "duplicates": sum(1 for i in sourced if on_sink[i] > 1),
            "strangers": sum(n for i, n in on_sink.items() if i not in sourced),
        },
        "dead_letters": {topic: dict(kinds) for topic, kinds in sorted(by_kind.items())},
        "unreadable_dead_letters": unreadable,
        "kills": len(events["kills"]),
        "killed": dict(Counter(k["tier"] for k in events["kills"])),
        "broker_restart": events["broker_restart"],
        "tier_exits": exits,
        "secrets_found": secrets,
        "tier_log_lines": log_lines,
        "seconds_to_drain": round(drained - started, 1),
        "cores": os.cpu_count(),
    }
