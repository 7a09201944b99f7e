"""Replay with `since` (PROTOCOL.md, "Replay: the guarantee"): recovery
after a disconnect, retention by count and by age, foreign epochs and
offsets, malformed `since`, re-subscribing, replay racing concurrent
publishers, a 100,000-message replay to a slow reader next to a live
subscriber, and a seeded random reconnect storm."""
import asyncio
import json
import os
import random
import struct
import threading
import time

from conftest import dumps, http_request

import chorus_helpers
from chorus_helpers import WAIT, expect_silence, recv_json, recv_messages, \
    subscribe
from chorus_helpers import connect_closing as connect
from chorus_helpers import run_closing as run
from wsraw import OP_TEXT, build_frame

FOREIGN = "0" * 32


async def publish(ws, topic, data):
    """Publishes and returns the offset of the `published` reply."""
    return (await chorus_helpers.publish(ws, topic, data))["offset"]


async def publish_many(ws, topic, datas):
    """Pipelines one publish per item (ids 0..n-1) without waiting, then
    collects every ack. Returns {offset: data}. Fails on any error."""
    n = len(datas)
    acked = {}

    async def sender():
        for i, d in enumerate(datas):
            await ws.send(dumps({"op": "publish", "id": i, "topic": topic,
                                 "data": d}))

    async def receiver():
        got = 0
        while got < n:
            r = await recv_json(ws, 20)
            assert r.get("op") == "published", r
            off = r["offset"]
            assert off not in acked, f"offset {off} acked twice"
            acked[off] = datas[r["id"]]
            got += 1

    await asyncio.gather(sender(), receiver())
    return acked


def offsets(msgs):
    return [m["offset"] for m in msgs]


# ------------------------------------------------------------ basic replay

def test_replay_after_disconnect_recovers(broker):
    async def main():
        pub = await connect(broker)
        sub = await connect(broker)
        s = await subscribe(sub, "rp.basic")
        epoch = s["epoch"]
        assert s["offset"] == 0, s
        for i in range(1, 6):
            assert await publish(pub, "rp.basic", {"n": i}) == i
        got = await recv_messages(sub, "rp.basic", 3)
        assert offsets(got) == [1, 2, 3]
        await sub.close()
        for i in range(6, 11):
            assert await publish(pub, "rp.basic", {"n": i}) == i

        sub = await connect(broker)
        s = await subscribe(sub, "rp.basic", {"epoch": epoch, "offset": 3},
                            id="again")
        assert s["epoch"] == epoch, s
        assert s["recovered"] is True, s
        assert s["offset"] == 10, s
        got = await recv_messages(sub, "rp.basic", 7)
        assert offsets(got) == list(range(4, 11))
        assert [m["data"] for m in got] == [{"n": i} for i in range(4, 11)]
        for m in got:
            assert isinstance(m["ts"], int) and m["ts"] > 1_600_000_000_000
        await expect_silence(sub)
        for i in range(11, 13):
            assert await publish(pub, "rp.basic", {"n": i}) == i
        got = await recv_messages(sub, "rp.basic", 2)
        assert offsets(got) == [11, 12]
        await expect_silence(sub)
        await pub.close()
        await sub.close()
    run(main())


def test_since_newest_offset_replays_nothing(broker):
    async def main():
        pub = await connect(broker)
        for i in range(1, 5):
            await publish(pub, "rp.newest", i)
        sub = await connect(broker)
        s = await subscribe(sub, "rp.newest")
        assert s["offset"] == 4
        await sub.close()

        sub = await connect(broker)
        s = await subscribe(sub, "rp.newest",
                            {"epoch": s["epoch"], "offset": 4})
        assert s["recovered"] is True and s["offset"] == 4, s
        await expect_silence(sub, 0.5)
        assert await publish(pub, "rp.newest", "live") == 5
        m = (await recv_messages(sub, "rp.newest", 1))[0]
        assert m["offset"] == 5 and m["data"] == "live"
        await expect_silence(sub)
    run(main())


def test_replay_of_topic_with_no_messages(broker):
    """since offset 0 of the current epoch on an empty topic: recovered,
    nothing to replay, then live."""
    async def main():
        sub = await connect(broker)
        s = await subscribe(sub, "rp.empty")
        assert s["offset"] == 0
        await sub.close()
        sub = await connect(broker)
        s2 = await subscribe(sub, "rp.empty", {"epoch": s["epoch"],
                                               "offset": 0})
        assert s2["recovered"] is True and s2["offset"] == 0, s2
        assert s2["epoch"] == s["epoch"]
        await expect_silence(sub)
        pub = await connect(broker)
        assert await publish(pub, "rp.empty", 1) == 1
        assert offsets(await recv_messages(sub, "rp.empty", 1)) == [1]
    run(main())


# ------------------------------------------------------------- retention

def wait_history(broker, topic, pred, timeout=6.0):
    """Polls GET /api/history until pred(list of offsets) holds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        st, _, body = http_request(broker, "GET",
                                   f"/api/history/{topic}?since=0&limit=1000")
        assert st == 200, body
        last = [m["offset"] for m in json.loads(body)["messages"]]
        if pred(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"history of {topic} never settled: {last}")


def test_replay_after_trim_by_count(make_broker):
    broker = make_broker(history_size=5)

    async def main():
        pub = await connect(broker)
        for i in range(1, 21):
            assert await publish(pub, "rp.count", {"n": i}) == i
        # The trim runs on a one-second timer.
        await asyncio.to_thread(wait_history, broker, "rp.count",
                                lambda o: o == [16, 17, 18, 19, 20])
        sub = await connect(broker)
        s = await subscribe(sub, "rp.count")
        epoch = s["epoch"]
        assert s["offset"] == 20
        await sub.close()

        sub = await connect(broker)
        s = await subscribe(sub, "rp.count", {"epoch": epoch, "offset": 2})
        assert s["recovered"] is False and s["offset"] == 20, s
        got = await recv_messages(sub, "rp.count", 5)
        assert offsets(got) == [16, 17, 18, 19, 20]
        assert [m["data"]["n"] for m in got] == [16, 17, 18, 19, 20]
        await expect_silence(sub)
        await sub.close()

        # Exactly at the boundary: everything after 15 is still there.
        sub = await connect(broker)
        s = await subscribe(sub, "rp.count", {"epoch": epoch, "offset": 15})
        assert s["recovered"] is True, s
        assert offsets(await recv_messages(sub, "rp.count", 5)) == \
            [16, 17, 18, 19, 20]
        await expect_silence(sub)
        await sub.close()

        # One before the boundary: offset 15 is gone.
        sub = await connect(broker)
        s = await subscribe(sub, "rp.count", {"epoch": epoch, "offset": 14})
        assert s["recovered"] is False, s
        assert offsets(await recv_messages(sub, "rp.count", 5)) == \
            [16, 17, 18, 19, 20]
        await expect_silence(sub)
        # Live continues after the replay.
        assert await publish(pub, "rp.count", {"n": 21}) == 21
        assert offsets(await recv_messages(sub, "rp.count", 1)) == [21]
    run(main())


def test_replay_after_trim_by_age(make_broker):
    broker = make_broker(history_ttl="1s")

    async def main():
        pub = await connect(broker)
        for i in range(1, 4):
            await publish(pub, "rp.age", i)
        sub = await connect(broker)
        s = await subscribe(sub, "rp.age")
        epoch = s["epoch"]
        assert s["offset"] == 3
        await sub.close()
        await asyncio.sleep(2.5)
        await asyncio.to_thread(wait_history, broker, "rp.age",
                                lambda o: o == [])

        sub = await connect(broker)
        s = await subscribe(sub, "rp.age", {"epoch": epoch, "offset": 0})
        assert s["recovered"] is False, s
        assert s["epoch"] == epoch and s["offset"] == 3, s
        await expect_silence(sub, 0.5)
        await sub.close()

        sub = await connect(broker)
        s = await subscribe(sub, "rp.age", {"epoch": epoch, "offset": 2})
        assert s["recovered"] is False, s
        await expect_silence(sub, 0.3)
        await sub.close()

        sub = await connect(broker)
        s = await subscribe(sub, "rp.age", {"epoch": epoch, "offset": 3})
        assert s["recovered"] is True, s
        await expect_silence(sub, 0.3)
        # Offsets continue after everything was trimmed.
        assert await publish(pub, "rp.age", "new") == 4
        m = (await recv_messages(sub, "rp.age", 1))[0]
        assert m["offset"] == 4 and m["data"] == "new"
    run(main())


def test_foreign_epoch_and_future_offset(broker):
    async def main():
        pub = await connect(broker)
        for i in range(1, 8):
            await publish(pub, "rp.foreign", i)
        sub = await connect(broker)
        epoch = (await subscribe(sub, "rp.foreign"))["epoch"]
        assert epoch != FOREIGN
        await sub.close()

        for since in ({"epoch": FOREIGN, "offset": 3},
                      {"epoch": FOREIGN, "offset": 0},
                      {"epoch": FOREIGN, "offset": 7},
                      {"epoch": FOREIGN, "offset": 1000},
                      {"epoch": "f" * 32, "offset": 7},
                      {"epoch": epoch, "offset": 8},
                      {"epoch": epoch, "offset": 1_000_000}):
            sub = await connect(broker)
            s = await subscribe(sub, "rp.foreign", since)
            assert s["recovered"] is False, (since, s)
            assert s["epoch"] == epoch and s["offset"] == 7, (since, s)
            got = await recv_messages(sub, "rp.foreign", 7)
            assert offsets(got) == list(range(1, 8)), since
            assert [m["data"] for m in got] == list(range(1, 8))
            await expect_silence(sub, 0.2)
            await sub.close()
    run(main())


def test_since_wrong_types_bad_request(broker):
    async def main():
        pub = await connect(broker)
        await publish(pub, "rp.bad", 1)
        ws = await connect(broker)
        epoch = (await subscribe(ws, "rp.bad.probe"))["epoch"]
        bad = [
            {"epoch": 123, "offset": 0},
            {"epoch": None, "offset": 0},
            {"epoch": epoch, "offset": -1},
            {"epoch": epoch, "offset": "3"},
            {"epoch": epoch, "offset": 1.5},
            {"epoch": epoch, "offset": True},
            {"epoch": epoch, "offset": None},
            {"epoch": epoch},
            {"offset": 0},
            {"epoch": "abc", "offset": 0},
            {"epoch": epoch.upper(), "offset": 0},
            {"epoch": "A" * 32, "offset": 0},
            {"epoch": "0" * 31, "offset": 0},
            {"epoch": "0" * 33, "offset": 0},
            {"epoch": "g" * 32, "offset": 0},
            5,
            "x",
            [epoch, 0],
        ]
        for i, since in enumerate(bad):
            await ws.send(dumps({"op": "subscribe", "id": i,
                                 "topic": "rp.bad", "since": since}))
            r = await recv_json(ws)
            assert r.get("op") == "error" and r.get("id") == i, (since, r)
            assert r["code"] == "bad_request", (since, r)
        # The connection is still usable and was never subscribed.
        await ws.send(dumps({"op": "ping", "id": "p"}))
        assert await recv_json(ws) == {"op": "pong", "id": "p"}
        await publish(pub, "rp.bad", 2)
        await expect_silence(ws, 0.3)
        await ws.send(dumps({"op": "unsubscribe", "topic": "rp.bad"}))
        r = await recv_json(ws)
        assert r.get("op") == "error" and r["code"] == "not_subscribed", r
    run(main())


def test_resubscribe_with_since_while_subscribed(broker):
    """Subscribing again with since replays what was asked for, and no live
    message is ever delivered twice, even with publishes going on."""
    topic = "rp.resub"

    async def main():
        sub = await connect(broker)
        s = await subscribe(sub, topic)
        epoch = s["epoch"]
        pub = await connect(broker)
        for i in range(1, 6):
            await publish(pub, topic, i)
        assert offsets(await recv_messages(sub, topic, 5)) == [1, 2, 3, 4, 5]

        # Quiet resubscribe.
        s = await subscribe(sub, topic, {"epoch": epoch, "offset": 2}, id=1)
        assert s["recovered"] is True and s["offset"] == 5, s
        assert offsets(await recv_messages(sub, topic, 3)) == [3, 4, 5]
        await expect_silence(sub)
        assert await publish(pub, topic, 6) == 6
        assert offsets(await recv_messages(sub, topic, 1)) == [6]
        await expect_silence(sub)

        # Resubscribe while a publisher is busy.
        total = 400
        stop = asyncio.Event()

        async def publisher():
            datas = list(range(7, total + 1))
            acked = await publish_many(pub, topic, datas)
            assert sorted(acked) == list(range(7, total + 1))
            stop.set()

        task = asyncio.create_task(publisher())
        before = []
        while len(before) < 50:
            m = await recv_json(sub)
            assert m["op"] == "message", m
            before.append(m["offset"])
        await sub.send(dumps({"op": "subscribe", "id": 2, "topic": topic,
                              "since": {"epoch": epoch, "offset": 3}}))
        after = None
        while True:
            m = await recv_json(sub, 10)
            if after is None:
                if m["op"] == "subscribed":
                    assert m["id"] == 2 and m["recovered"] is True, m
                    after = []
                    continue
                assert m["op"] == "message", m
                before.append(m["offset"])
            else:
                assert m["op"] == "message", m
                after.append(m["offset"])
                if m["offset"] == total:
                    break
        await asyncio.wait_for(task, 20)
        assert before == list(range(7, 7 + len(before))), before
        assert after == list(range(4, total + 1)), after
        await expect_silence(sub, 0.5)
    run(main())


def test_resubscribe_during_replay(make_broker):
    """A second since while the first replay is still running: after the
    second `subscribed` comes exactly what it asked for, then live."""
    broker = make_broker(history_size=10000)
    topic = "rp.midreplay"

    async def main():
        pub = await connect(broker, max_queue=None)
        acked = await publish_many(pub, topic, [{"i": i, "pad": "p" * 200}
                                                for i in range(5000)])
        assert sorted(acked) == list(range(1, 5001))
        sub = await connect(broker)
        epoch = (await subscribe(sub, topic, {"epoch": FOREIGN,
                                              "offset": 0}))["epoch"]
        await sub.send(dumps({"op": "subscribe", "id": "b", "topic": topic,
                              "since": {"epoch": epoch, "offset": 4000}}))
        first = []
        while True:
            m = await recv_json(sub)
            if m["op"] == "subscribed":
                assert m["id"] == "b" and m["recovered"] is True, m
                break
            assert m["op"] == "message", m
            first.append(m["offset"])
        assert first == list(range(1, len(first) + 1))
        r = await publish(pub, topic, "live")
        assert r == 5001
        got = await recv_messages(sub, topic, 1001)
        assert offsets(got) == list(range(4001, 5002))
        assert got[-1]["data"] == "live"
        await expect_silence(sub, 0.5)
    run(main())


# ------------------------------------------------- concurrent publishers

def test_replay_during_concurrent_publishes(make_broker):
    broker = make_broker(history_size=100000)
    topic = "rp.race"
    per_pub = 2000

    async def main():
        first = await connect(broker)
        s = await subscribe(first, topic)
        epoch = s["epoch"]
        pubs = [await connect(broker) for _ in range(2)]
        progress = [0, 0]
        acked = {}

        async def publisher(k):
            ws = pubs[k]
            datas = [{"p": k, "i": i} for i in range(per_pub)]

            window = asyncio.Semaphore(16)   # acks pace the publisher

            async def sender():
                for i, d in enumerate(datas):
                    await window.acquire()
                    await ws.send(dumps({"op": "publish", "id": i,
                                         "topic": topic, "data": d}))

            async def receiver():
                for _ in range(per_pub):
                    r = await recv_json(ws, 20)
                    assert r.get("op") == "published", r
                    assert r["offset"] not in acked
                    acked[r["offset"]] = datas[r["id"]]
                    progress[k] += 1
                    window.release()
            await asyncio.gather(sender(), receiver())

        tasks = [asyncio.create_task(publisher(k)) for k in range(2)]
        while sum(progress) < per_pub // 2:
            await asyncio.sleep(0.005)
            assert not any(t.done() and t.exception() for t in tasks)
        # Midway: a new subscriber resumes from offset 100.
        late = await connect(broker)
        s2 = await subscribe(late, topic, {"epoch": epoch, "offset": 100})
        assert s2["recovered"] is True, s2
        mid = s2["offset"]
        await asyncio.wait_for(asyncio.gather(*tasks), 40)
        assert mid < 2 * per_pub, "subscriber did not arrive midway"
        final = 2 * per_pub
        assert sorted(acked) == list(range(1, final + 1))

        async def drain(ws, start):
            got = []
            while not got or got[-1]["offset"] < final:
                m = await recv_json(ws, 10)
                assert m.get("op") == "message", m
                got.append(m)
            assert offsets(got) == list(range(start, final + 1))
            for m in got:
                assert m["data"] == acked[m["offset"]], m
            await expect_silence(ws, 0.3)

        await drain(late, 101)
        await drain(first, 1)
    run(main())


# --------------------------------------------- slow 100k replay reader

def ws_text_frame(payload):
    """A masked client text frame with an all-zero mask key (legal, and
    the payload then goes out as is)."""
    return build_frame(OP_TEXT, payload, mask_key=b"\0\0\0\0")


class RawWS(chorus_helpers.RawWS):
    """A /ws client on a plain socket: handshake, zero-mask text frames,
    and an incremental parser of the server's frames."""

    def __init__(self, port, rcvbuf=None, timeout=15):
        super().__init__(port, timeout=timeout, rcvbuf=rcvbuf,
                         check_accept=False)

    def send_text(self, text):
        self.sock.sendall(ws_text_frame(text.encode()))

    def frames(self):
        buf = self.buf
        pos = 0
        while True:
            if len(buf) - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            assert not b1 & 0x80, "masked frame from the server"
            n = b1 & 0x7F
            hl = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n = struct.unpack_from("!H", buf, pos + 2)[0]
                hl = 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n = struct.unpack_from("!Q", buf, pos + 2)[0]
                hl = 10
            if len(buf) - pos < hl + n:
                break
            yield b0, buf[pos + hl:pos + hl + n]
            pos += hl + n
        self.buf = buf[pos:]


def raw_publish_many(port, topic, datas):
    """Publishes every item on one raw connection, all pipelined in one
    stream of frames, and returns {offset: data} from the acks."""
    ws = RawWS(port)
    blob = b"".join(
        ws_text_frame(dumps({"op": "publish", "id": i, "topic": topic,
                             "data": d}).encode())
        for i, d in enumerate(datas))
    err = []

    def send():
        try:
            ws.sock.sendall(blob)
        except Exception as e:
            err.append(e)
    t = threading.Thread(target=send, daemon=True)
    t.start()
    acked = {}
    try:
        while len(acked) < len(datas):
            chunk = ws.sock.recv(1 << 20)
            assert chunk, f"closed after {len(acked)} acks"
            ws.buf += chunk
            for b0, payload in ws.frames():
                assert b0 == 0x81, (b0, payload[:200])
                r = json.loads(payload)
                assert r.get("op") == "published", r
                assert r["offset"] not in acked, r
                acked[r["offset"]] = datas[r["id"]]
        t.join(15)
        assert not err, err
    finally:
        ws.close()
    return acked


class RawReader(RawWS, threading.Thread):
    """Subscribes with since and then reads at a limited byte rate,
    checking offsets as messages arrive."""

    def __init__(self, port, topic, since, rate, rcvbuf=32768):
        threading.Thread.__init__(self, daemon=True)
        RawWS.__init__(self, port, rcvbuf=rcvbuf)
        self.topic = topic
        self.since = since
        self.rate = rate
        self.subscribed = None
        self.offsets = []
        self.bad = None
        self.close_frame = None
        self.error = None
        self.done = threading.Event()
        self.stop_at = None

    def handle(self, b0, payload):
        op = b0 & 0x0F
        if op == 0x8:
            self.close_frame = payload
            raise EOFError
        if op == 0x9:
            self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) +
                              b"\0\0\0\0" + payload)
            return
        assert b0 & 0x80 and op == 0x1, f"unexpected frame {b0:#x}"
        m = json.loads(payload)
        if self.subscribed is None:
            assert m.get("op") == "subscribed", m
            self.subscribed = m
            return
        assert m.get("op") == "message", m
        off = m["offset"]
        expect = self.offsets[-1] + 1 if self.offsets else \
            self.since["offset"] + 1
        if off != expect and self.bad is None:
            self.bad = f"got offset {off}, expected {expect}"
        if m["data"]["i"] != off and self.bad is None:
            self.bad = f"offset {off} carries {m['data']!r}"
        self.offsets.append(off)

    def run(self):
        try:
            self.send_text(dumps({"op": "subscribe", "topic": self.topic,
                                  "since": self.since}))
            for f in self.frames():
                self.handle(*f)
            t0 = time.monotonic()
            nread = 0
            while self.stop_at is None or \
                    (not self.offsets or self.offsets[-1] < self.stop_at):
                chunk = self.sock.recv(16384)
                if not chunk:
                    raise EOFError
                nread += len(chunk)
                self.buf += chunk
                for f in self.frames():
                    self.handle(*f)
                ahead = nread / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        except EOFError:
            pass
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.done.set()


def test_slow_replay_100k_does_not_block_live(make_broker):
    broker = make_broker(history_size=0, history_ttl=0)
    topic = "rp.big"
    n = 100_000
    pad = "x" * 180   # ~250 bytes a message: 25 MB > max_outbound_bytes

    async def main():
        t0 = time.monotonic()
        for b in range(0, n, 25_000):
            datas = [{"i": i + 1, "pad": pad} for i in range(b, b + 25_000)]
            acked = await asyncio.to_thread(raw_publish_many, broker.port,
                                            topic, datas)
            assert sorted(acked) == list(range(b + 1, b + 25_001))
            assert all(acked[o]["i"] == o for o in acked), \
                "publishes from one connection stored out of order"
        live = await connect(broker)
        s = await subscribe(live, topic)
        epoch = s["epoch"]
        assert s["offset"] == n, s
        pub = await connect(broker)
        t_pub = time.monotonic() - t0

        reader = RawReader(broker.port, topic, {"epoch": epoch, "offset": 0},
                           rate=4_000_000)
        reader.start()
        # While the replay is being read slowly, live publishes must reach
        # the live subscriber promptly.
        probes = 0
        latencies = []
        for k in range(6):
            await asyncio.sleep(0.4)
            if reader.done.is_set() or len(reader.offsets) >= n:
                break
            t1 = time.monotonic()
            off = await publish(pub, topic, {"i": n + probes + 1,
                                             "probe": k})
            probes += 1
            assert off == n + probes
            m = await recv_json(live, 1.0)
            latencies.append(time.monotonic() - t1)
            assert m["op"] == "message" and m["offset"] == off, m
        assert probes >= 3, (
            f"replay finished too early to check live delivery "
            f"({len(reader.offsets)} read)")
        assert len(reader.offsets) < n, "replay was not in progress"
        final = n + probes
        reader.stop_at = final
        await asyncio.to_thread(reader.done.wait, 60)
        assert reader.done.is_set(), \
            f"slow reader stuck at {len(reader.offsets)} messages"
        assert reader.error is None, repr(reader.error)
        assert reader.close_frame is None, (
            f"reader closed by broker: {reader.close_frame!r} after "
            f"{len(reader.offsets)} messages")
        assert reader.subscribed["recovered"] is True, reader.subscribed
        assert reader.bad is None, reader.bad
        assert reader.offsets == list(range(1, final + 1))
        reader.sock.close()
        return t_pub, latencies
    t_pub, lat = run(main(), timeout=85)
    print(f"publish 100k: {t_pub:.1f}s, live latencies: "
          f"{[round(x, 3) for x in lat]}")


# ------------------------------------------------ random reconnect storm

def test_random_reconnects_get_every_offset_once(make_broker):
    broker = make_broker(history_size=100000)
    topic = "rp.storm"
    seed = int(os.environ.get("CHORUS_SEED", "20240917"))
    rng = random.Random(seed)

    async def main():
        acked = {}
        pubs_done = asyncio.Event()

        async def publisher(k, prng):
            ws = await connect(broker)
            deadline = time.monotonic() + 8
            i = 0
            while time.monotonic() < deadline:
                burst = prng.randint(1, 30)
                datas = [{"p": k, "i": i + j} for j in range(burst)]
                i += burst
                got = await publish_many(ws, topic, datas)
                for off, d in got.items():
                    assert off not in acked, f"offset {off} acked twice"
                    acked[off] = d
                await asyncio.sleep(prng.uniform(0, 0.05))
            await ws.close()

        async def subscriber(k, prng, ready):
            received = []     # offsets in the order processed
            datas = []
            epoch = None
            reconnects = 0
            first = True
            while True:
                ws = await connect(broker)
                if epoch is None:
                    s = await subscribe(ws, topic, id=f"s{k}")
                    epoch = s["epoch"]
                    assert s["offset"] == 0, s
                else:
                    last = received[-1] if received else 0
                    s = await subscribe(ws, topic,
                                        {"epoch": epoch, "offset": last})
                    assert s["epoch"] == epoch, s
                    assert s["recovered"] is True, (k, last, s)
                    reconnects += 1
                if first:
                    ready.set()
                    first = False
                stay = prng.uniform(0.05, 1.0)
                end = time.monotonic() + stay
                while True:
                    if pubs_done.is_set():
                        final = max(acked) if acked else 0
                        if received and received[-1] >= final:
                            await ws.close()
                            return received, datas, reconnects
                    left = end - time.monotonic()
                    if left <= 0 and not pubs_done.is_set():
                        break
                    draining = pubs_done.is_set()
                    try:
                        m = await recv_json(ws, 5 if draining
                                            else max(left, 0.05))
                    except asyncio.TimeoutError:
                        if draining:
                            raise AssertionError(
                                f"subscriber {k} stalled at "
                                f"{received[-1] if received else 0} "
                                f"of {max(acked)}")
                        continue
                    assert m.get("op") == "message", m
                    expect = received[-1] + 1 if received else 1
                    assert m["offset"] == expect, (k, m["offset"], expect)
                    received.append(m["offset"])
                    datas.append(m["data"])
                if prng.random() < 0.5:
                    ws.transport.abort()
                else:
                    await ws.close()
                await asyncio.sleep(prng.uniform(0, 0.4))

        readies = [asyncio.Event() for _ in range(5)]
        subs = [asyncio.create_task(subscriber(k, random.Random(rng.random()),
                                               readies[k]))
                for k in range(5)]
        await asyncio.wait_for(
            asyncio.gather(*(r.wait() for r in readies)), WAIT)
        await asyncio.gather(*(publisher(k, random.Random(rng.random()))
                               for k in range(3)))
        pubs_done.set()
        results = await asyncio.wait_for(asyncio.gather(*subs), 30)
        final = max(acked)
        assert sorted(acked) == list(range(1, final + 1))
        for k, (received, datas, reconnects) in enumerate(results):
            assert received == list(range(1, final + 1)), k
            assert datas == [acked[o] for o in received], k
            assert reconnects >= 2, (k, reconnects)
        return final, [r for _, _, r in results]
    final, rc = run(main(), timeout=60)
    print(f"seed {seed}: {final} messages, reconnects {rc}")
