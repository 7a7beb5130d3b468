"""The live stream behind GET /stream: one Kafka tail per API worker, fanned out to clients.

Fed from Kafka, not from the store: Kafka is ordered and addressed by offsets, so an event id
can be the position after it (every partition of the readings and alerts topics) and a client
reconnecting with Last-Event-ID resumes exactly there, with no gap and no repeat. The store
has no such cursor (concurrent writers commit out of order). A reading therefore reaches the
stream as soon as Kafka has it, which is before the pool stored it, not after.

The tail runs in a thread of its own, started by the first client; each consumed batch is
handed to the event loop in one call and turned into one chunk of SSE text per client, so a
client costs one write per batch, not one per reading. A client that resumes first reads the
records between its position and the tail's from a consumer of its own, then joins the tail.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from pipeline.alerts import decode_event
from pipeline.kafka_config import Config, tail_config
from pipeline.reading import READING_DECODER
from pipeline.record import position as record_position
from pipeline.settings import KafkaSettings
from service import metrics

log = logging.getLogger(__name__)

Position = dict[tuple[str, int], int]  # (topic, partition) -> next offset
KEEPALIVE_S = 15.0
CLIENT_QUEUE = 1000  # batches; a client this far behind is disconnected (it can resume)
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Event:
    """One record as the stream sends it; `frame` is its SSE text."""

    sensor_id: str | None
    type: str | None
    frame: bytes


def token(position: Position, topics: tuple[str, ...]) -> str:
    """The Last-Event-ID of a position: `<topic index>:<partition>:<offset>` joined by `.`."""
    index = {t: i for i, t in enumerate(topics)}
    return ".".join(f"{index[t]}:{p}:{o}" for (t, p), o in sorted(position.items()) if t in index)


def parse_token(text: str | None, topics: tuple[str, ...]) -> Position | None:
    """A Last-Event-ID back to a position; None when absent or not one of ours (start live)."""
    if not text:
        return None
    position: Position = {}
    try:
        for part in text.strip().split("."):
            t, p, o = (int(x) for x in part.split(":"))
            if t < 0 or p < 0 or o < 0:
                return None
            position[(topics[t], p)] = o
    except (ValueError, IndexError):
        return None
    return position


def frame(msg: Message, readings_topic: str, event_id: str) -> Event | None:
    """The SSE text of a record: `reading` for the readings topic, `alert` for the alerts one."""
    topic, value = msg.topic(), msg.value()
    if value is None:
        return None
    key = msg.key()
    body: object  # a reading's envelope (dict) or the typed alert event
    try:
        if topic == readings_topic:
            # NOTE: the one reading model (pipeline/reading.py); a record it refuses is skipped.
            # `reading` lists every field, null `unit`/`location`/`seq` included (docs/contract.md).
            reading = READING_DECODER.decode(value)
            fields = {
                "sensor_id": reading.sensor_id,
                "type": reading.type,
                "timestamp": reading.timestamp,
                "value": reading.value,
                "unit": reading.unit,
                "location": reading.location,
                "seq": reading.seq,
            }
            body = {
                "topic": topic,
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": key.decode(errors="replace") if key else None,
                "record": value.decode(errors="replace"),
                "reading": fields,
            }
            sensor_id, type_, kind = reading.sensor_id, reading.type, b"reading"
        else:
            alert = decode_event(value)
            body, kind = alert, b"alert"
            sensor_id, type_ = alert.sensor_id, alert.type
    except (msgspec.DecodeError, msgspec.ValidationError, AttributeError):
        return None  # NOTE: not ours to show (the pool dead-letters such readings)
    data = _ENCODER.encode(body)
    return Event(sensor_id, type_, b"id: " + event_id.encode() + b"\nevent: " + kind + b"\ndata: " + data + b"\n\n")


@dataclass(eq=False)
class Client:
    sensor_id: str | None
    type: str | None
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))

    def wants(self, event: Event) -> bool:
        return (self.sensor_id is None or event.sensor_id == self.sensor_id) and (
            self.type is None or event.type == self.type
        )

    def offer(self, events: list[Event]) -> None:
        chunk = b"".join(e.frame for e in events if self.wants(e))
        if not chunk:
            return
        try:
            self.queue.put_nowait(chunk)
        except asyncio.QueueFull:
            log.warning("a /stream client fell %d batches behind; closing it (it resumes)", CLIENT_QUEUE)
            self.close()

    def close(self) -> None:
        """Ends the client's stream after what is queued (a full queue: at once)."""
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()


class Tail:
    """Consumes the readings and alerts topics from their end and fans out to clients."""

    def __init__(self, kafka: KafkaSettings, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.kafka = kafka
        self.topics = (kafka.topic_name, kafka.alerts_topic)
        self.loop = loop
        self.clients: set[Client] = set()
        self.position: Position = {}  # what has been dispatched (event-loop side)
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready: asyncio.Future[None] | None = None

    def _config(self, purpose: str) -> Config:
        return tail_config(self.kafka, f"sensor-api-{purpose}-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    async def start(self) -> None:
        """Starts the tail thread on first use and waits until it has its starting position."""
        if self._ready is not None and self._ready.done() and self._ready.exception() is not None:
            self._ready = None  # NOTE: Kafka was unreachable last time: try again
        if self._ready is None:
            self.loop = asyncio.get_running_loop()
            self._ready = self.loop.create_future()
            self._thread = threading.Thread(target=self._run, name="sse-tail", daemon=True)
            self._thread.start()
        await asyncio.wait_for(asyncio.shield(self._ready), 10)

    def _partitions(self, consumer: Consumer) -> list[TopicPartition]:
        metadata = consumer.list_topics(timeout=5)
        found = []
        for topic in self.topics:
            info = metadata.topics.get(topic)
            if info is not None and info.error is None:
                found += [TopicPartition(topic, p) for p in info.partitions]
        return found

    def _run(self) -> None:
        assert self.loop is not None and self._ready is not None
        try:
            consumer = Consumer(self._config("tail"), logger=log)
            assigned = self._assign_at_end(consumer, {})
        except Exception as e:  # thread boundary: hand the failure to the waiters
            self.loop.call_soon_threadsafe(_fail, self._ready, e)
            return
        self.loop.call_soon_threadsafe(self._started_at, dict(assigned))
        rescan = time.monotonic() + 5
        try:
            while not self._stop.is_set():
                batch = consumer.consume(500, 0.1)
                if batch:
                    self.loop.call_soon_threadsafe(self._dispatch, batch)
                if time.monotonic() > rescan:  # a topic created later (the alerts topic) or new partitions
                    rescan = time.monotonic() + 5
                    added = self._assign_at_end(consumer, assigned)
                    if added:
                        self.loop.call_soon_threadsafe(self.position.update, added)
        except Exception:  # thread boundary: end the clients' streams; they reconnect and resume
            log.exception("stream tail stopped")
            self.loop.call_soon_threadsafe(self._close_all)
        finally:
            consumer.close()

    def _assign_at_end(self, consumer: Consumer, assigned: Position) -> Position:
        """Assign the partitions not assigned yet at their current end; returns them."""
        new = [tp for tp in self._partitions(consumer) if (tp.topic, tp.partition) not in assigned]
        added: Position = {}
        for tp in new:
            _, high = consumer.get_watermark_offsets(tp, timeout=5)
            added[(tp.topic, tp.partition)] = high
        if added:
            consumer.incremental_assign([TopicPartition(t, p, o) for (t, p), o in added.items()])
            assigned.update(added)
        return added

    def _started_at(self, position: Position) -> None:
        self.position.update(position)
        assert self._ready is not None
        if not self._ready.done():
            self._ready.set_result(None)

    def _dispatch(self, batch: list[Message]) -> None:
        events = []
        for msg in batch:
            if msg.error() is not None:
                continue
            partition, offset = record_position(msg)
            self.position[(msg.topic() or "", partition)] = offset + 1
            if self.clients:
                event = frame(msg, self.topics[0], token(self.position, self.topics))
                if event is not None:
                    events.append(event)
        if events:
            for client in list(self.clients):
                client.offer(events)

    def _close_all(self) -> None:
        for client in list(self.clients):
            client.close()
        self.clients.clear()

    async def subscribe(
        self,
        sensor_id: str | None,
        type_: str | None,
        resume: Position | None,
        disconnected: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[bytes]:
        """SSE chunks for one client: the gap since `resume` first (if any), then live, until
        `disconnected()` returns (the client hung up: the server's send() is silent then)."""
        await self.start()
        client = Client(sensor_id, type_)
        live_from = dict(self.position)  # NOTE: the loop thread; no dispatch runs in between
        self.clients.add(client)
        metrics.STREAM_CLIENTS.inc()
        watcher = asyncio.ensure_future(_close_when(disconnected, client)) if disconnected else None
        try:
            yield b"retry: 1000\n\n"
            if resume:
                catch_up = {tp: (resume.get(tp, 0), end) for tp, end in live_from.items() if resume.get(tp, 0) < end}
                if catch_up:
                    chunk = await asyncio.to_thread(self._catch_up, catch_up, live_from, client.wants)
                    if chunk:
                        yield chunk
            while True:
                try:
                    queued = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if queued is None:
                    return
                yield queued
        finally:
            self.clients.discard(client)
            metrics.STREAM_CLIENTS.dec()
            if watcher is not None:
                watcher.cancel()

    def _catch_up(
        self, ranges: dict[tuple[str, int], tuple[int, int]], live_from: Position, wants: Callable[[Event], bool]
    ) -> bytes:
        """Records in [resume, live_from) per partition, from a consumer of its own (bounded)."""
        consumer = Consumer(self._config("resume"), logger=log)
        position = {tp: start for tp, (start, _) in ranges.items()}
        position.update({tp: o for tp, o in live_from.items() if tp not in ranges})
        frames: list[bytes] = []
        try:
            consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _) in ranges.items()])
            pending = set(ranges)
            deadline = time.monotonic() + 10
            while pending and time.monotonic() < deadline:
                for msg in consumer.consume(500, 0.2):
                    if msg.error() is not None:
                        continue
                    partition, offset = record_position(msg)
                    tp = (msg.topic() or "", partition)
                    if tp not in pending:
                        continue
                    end = ranges[tp][1]
                    if offset >= end:
                        pending.discard(tp)
                        continue
                    position[tp] = offset + 1
                    event = frame(msg, self.topics[0], token(position, self.topics))
                    if event is not None and wants(event):
                        frames.append(event.frame)
                    if offset + 1 >= end:
                        pending.discard(tp)
                for tp in list(pending):  # retention may have removed the start: begin at what is left
                    low, _ = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                    if low >= ranges[tp][1]:
                        pending.discard(tp)
            if pending:
                log.warning("resume could not read %s within 10 s; the client continues live", sorted(pending))
        except KafkaException as e:
            log.warning("resume failed (%s); the client continues live", e)
        finally:
            consumer.close()
        return b"".join(frames)

    def close(self) -> None:
        """Ends every stream (shutdown) and stops the thread."""
        self._stop.set()
        self._close_all()


async def _close_when(disconnected: Callable[[], Awaitable[None]], client: Client) -> None:
    await disconnected()
    client.close()


def _fail(future: asyncio.Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
