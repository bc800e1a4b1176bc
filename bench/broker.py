#!/usr/bin/env python3
"""Embedded broker vs RabbitMQ, side by side, in one run.

Fan-out: 1 publisher to 1, 10 and 100 subscribers (1 KiB JSON bodies); work
queue: 1 producer, 4 competing consumers with client-individual acks. Clients
are lean asyncio STOMP peers (our sans-IO parser) spread over processes, so the
harness is not the bottleneck (a stomp.py harness caps near 21k msg/s). The
embedded broker runs in its own process, like RabbitMQ. Then the embedded
broker's memory with one stalled subscriber after 1,000,000 publications.

Last line: ``broker fanout100_ratio=<embedded/rabbitmq msgs/s> p99_ratio=<embedded/rabbitmq p99>``,
p99 from the paced fan-out-100 case (50 msg/s to 100 subscribers), plus the
saturated p99 ratio and the stalled-subscriber RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
import uuid
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.frames import Frame, encode_frame  # noqa: E402
from broker.parser import FrameParser, ParserLimits  # noqa: E402

SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
PAD = "x" * 960  # body about 1 KiB with the timestamp and index


class LeanPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = FrameParser(ParserLimits(max_frame_bytes=1 << 24), commands=SERVER_COMMANDS)
        self.frames: list[Frame] = []

    @classmethod
    async def open(cls, port: int) -> "LeanPeer":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        peer = cls(reader, writer)
        peer.send("CONNECT", {"accept-version": "1.2", "host": "/", "login": "guest", "passcode": "guest",
                              "heart-beat": "0,0"})
        frame = await peer.recv()
        if frame.command != "CONNECTED":
            raise RuntimeError(f"connect failed: {frame}")
        peer.parser.version = "1.2"
        return peer

    def send(self, command: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.writer.write(encode_frame(Frame(command, headers, body)))

    async def recv(self) -> Frame:
        while not self.frames:
            data = await self.reader.read(1 << 16)
            if not data:
                raise ConnectionError("closed")
            self.frames += self.parser.feed(data)
        return self.frames.pop(0)

    async def recv_batch(self) -> list[Frame]:
        while not self.frames:
            data = await self.reader.read(1 << 18)
            if not data:
                raise ConnectionError("closed")
            self.frames += self.parser.feed(data)
        out, self.frames = self.frames, []
        return out


def subscriber_process(port: int, destination: str, count: int, expected: int, ack: str, ready: Queue[int],
                       results: Queue[tuple[int, int, np.ndarray]]) -> None:
    async def one(index: int, stop: asyncio.Event, shared: dict[str, Any]) -> None:
        peer = await LeanPeer.open(port)
        peer.send("SUBSCRIBE", {"destination": destination, "id": "0", "ack": ack, "receipt": "r",
                                "prefetch-count": "100"})
        await peer.recv()
        shared["ready"] += 1
        if shared["ready"] == count:
            ready.put(os.getpid())
        while not stop.is_set():
            try:
                frames = await asyncio.wait_for(peer.recv_batch(), 1.0)
            except asyncio.TimeoutError:
                continue
            now = time.time_ns()
            for frame in frames:
                if frame.command != "MESSAGE":
                    continue
                sent = int(frame.body[6:25])
                shared["lat"].append((now - sent) / 1e6)
                shared["last"] = now
                if ack != "auto":
                    peer.send("ACK", {"id": frame.headers["ack"]})
                shared["got"] += 1
                if shared["got"] >= expected:
                    stop.set()
        peer.writer.close()

    async def main() -> None:
        stop = asyncio.Event()
        shared: dict[str, Any] = {"ready": 0, "got": 0, "lat": [], "last": 0}
        tasks = [asyncio.create_task(one(i, stop, shared)) for i in range(count)]

        async def idle_guard() -> None:
            seen = -1
            while not stop.is_set():
                await asyncio.sleep(3)
                if shared["got"] == seen and seen > 0:
                    stop.set()  # nothing new for 3 s: the rest was dropped
                seen = shared["got"]

        guard = asyncio.create_task(idle_guard())
        await asyncio.gather(*tasks)
        guard.cancel()
        results.put((shared["got"], shared["last"], np.asarray(shared["lat"], np.float32)))

    asyncio.run(main())


async def publish(port: int, destination: str, n: int, rate: float = 0.0) -> int:
    """Send ``n`` messages as fast as possible, or at ``rate`` per second."""
    peer = await LeanPeer.open(port)
    start = time.time_ns()
    for i in range(n):
        if rate:
            delay = start / 1e9 + i / rate - time.time_ns() / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
        body = b'{"t": %019d, "i": %d, "pad": "%s"}' % (time.time_ns(), i, PAD.encode())
        peer.send("SEND", {"destination": destination, "content-type": "application/json"}, body)
        if rate or i % 64 == 0:
            await peer.writer.drain()
    peer.send("SEND", {"destination": "/topic/bench.none", "receipt": "end"}, b"")
    await peer.writer.drain()
    while (await peer.recv()).command != "RECEIPT":
        pass
    peer.writer.close()
    return start


def run_case(port: int, destination: str, subscribers: int, messages: int, ack: str, queue_mode: bool,
             rate: float = 0.0) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    processes = 2 if subscribers > 1 else 1
    per = [subscribers // processes + (1 if i < subscribers % processes else 0) for i in range(processes)]
    total_expected = messages if queue_mode else messages * subscribers
    procs = []
    for count in per:
        # Queue consumers cannot know their share: they stop when idle, so none
        # leaves with unacknowledged messages that would be delivered twice.
        expected = 1 << 62 if queue_mode else messages * count
        p = ctx.Process(target=subscriber_process, args=(port, destination, count, expected, ack, ready, results))
        p.start()
        procs.append(p)
    for _ in procs:
        ready.get(timeout=60)
    time.sleep(0.3)
    start = asyncio.run(publish(port, destination, messages, rate))
    got, last, lats = 0, 0, []
    for _ in procs:
        g, l_, lat = results.get(timeout=600)
        got, last = got + g, max(last, l_)
        lats.append(lat)
    for p in procs:
        p.join(timeout=10)
    lat = np.concatenate(lats) if lats else np.zeros(1)
    seconds = max(last - start, 1) / 1e9
    return {"delivered": got, "expected": total_expected, "msgs_per_s": got / seconds,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan")}


def embedded_process(port_queue: Queue[int], max_pending: int) -> None:
    from broker.auth import StaticAuthenticator, StaticUser
    from broker.core import BrokerLimits
    from broker.embedded import EmbeddedBroker

    async def main() -> None:
        broker = EmbeddedBroker(BrokerLimits(max_pending_messages=max_pending, max_connections_per_login=1000),
                                StaticAuthenticator([StaticUser("guest", "guest")]), port=0)
        port_queue.put(await broker.start())
        await asyncio.Event().wait()

    asyncio.run(main())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stalled_memory(port: int, pid: int, n: int) -> tuple[float, float, float]:
    async def main() -> tuple[float, float, float]:
        stalled = await LeanPeer.open(port)
        stalled.send("SUBSCRIBE", {"destination": "/topic/stall", "id": "0", "receipt": "r"})
        await stalled.recv()  # and never reads again
        before = rss_mib(pid)
        await publish(port, "/topic/stall", n // 2)
        middle = rss_mib(pid)
        await publish(port, "/topic/stall", n - n // 2)
        after = rss_mib(pid)
        stalled.writer.close()
        return before, middle, after

    return asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000, help="messages per fan-out case")
    parser.add_argument("--queue-messages", type=int, default=20000)
    parser.add_argument("--stall-messages", type=int, default=1_000_000)
    parser.add_argument("--rabbitmq-port", type=int, default=61613)
    parser.add_argument("--paced-rate", type=float, default=50.0, help="messages/s in the paced fan-out-100 case")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--paced-repeats", type=int, default=5, help="paced runs per broker; medians are printed")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    port_queue = ctx.Queue()
    # Large enough that a healthy subscriber behind a burst is not dropped.
    broker_proc = ctx.Process(target=embedded_process, args=(port_queue, 1_000_000), daemon=True)
    broker_proc.start()
    embedded_port = port_queue.get(timeout=30)
    brokers = {"embedded": embedded_port, "rabbitmq": args.rabbitmq_port}
    table: dict[tuple[str, str], dict[str, float]] = {}
    # Flat out (throughput; latency is then mostly queueing in the clients),
    # and paced well under capacity (latency of the broker itself).
    cases = [("fanout1", 1, False, 0.0), ("fanout10", 10, False, 0.0), ("fanout100", 100, False, 0.0),
             ("queue4", 4, True, 0.0), ("paced100", 100, False, args.paced_rate)]
    for case, subs, queue_mode, rate in cases:
        repeats = args.paced_repeats if rate else 1
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in brokers}
        for _ in range(repeats):  # alternate brokers so drift hits both alike
            for name, port in brokers.items():
                run_id = uuid.uuid4().hex[:8]
                destination = f"/queue/bench.{run_id}" if queue_mode else f"/topic/bench.{run_id}"
                n = args.queue_messages if queue_mode else (int(rate * args.paced_seconds) if rate else args.messages)
                ack = "client-individual" if queue_mode else "auto"
                runs[name].append(run_case(port, destination, subs, n, ack, queue_mode, rate))
        for name in brokers:
            res = {k: float(np.median([r[k] for r in runs[name]])) for k in runs[name][0]}
            table[(case, name)] = res
            print(f"  {case:<10} {name:<9} delivered {res['delivered']:>7.0f}/{res['expected']:<7.0f} "
                  f"{res['msgs_per_s']:>9.0f} msg/s   p50 {res['p50_ms']:8.2f} ms   p99 {res['p99_ms']:8.2f} ms",
                  flush=True)
        e, r = table[(case, "embedded")], table[(case, "rabbitmq")]
        print(f"  {case:<10} ratio embedded/rabbitmq: msg/s {e['msgs_per_s'] / r['msgs_per_s']:.2f}, "
              f"p99 {e['p99_ms'] / r['p99_ms']:.2f}", flush=True)

    stall_proc = ctx.Process(target=embedded_process, args=(port_queue, 10_000), daemon=True)
    stall_proc.start()
    stall_port = port_queue.get(timeout=30)
    before, middle, after = stalled_memory(stall_port, stall_proc.pid or 0, args.stall_messages)
    print(f"  stalled subscriber, {args.stall_messages} messages of 1 KiB: embedded broker RSS "
          f"{before:.0f} MiB before, {middle:.0f} MiB halfway, {after:.0f} MiB after")
    for proc in (broker_proc, stall_proc):
        proc.terminate()
    e, r = table[("fanout100", "embedded")], table[("fanout100", "rabbitmq")]
    pe, pr = table[("paced100", "embedded")], table[("paced100", "rabbitmq")]
    print(f"broker fanout100_ratio={e['msgs_per_s'] / r['msgs_per_s']:.2f} p99_ratio={pe['p99_ms'] / pr['p99_ms']:.2f} "
          f"p99_saturated_ratio={e['p99_ms'] / r['p99_ms']:.2f} stall_rss_mib={after:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
