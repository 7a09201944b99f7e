"""threads = N: connections spread over N event loops, loop 0 commits and
hands committed blocks to the others. Every guarantee of PROTOCOL.md must
hold whatever loop a client lands on: offsets gapless and in order per
subscriber, no duplicate, subscribed.offset counting every publish acked
before the subscribe (even one acked by another loop), replay joining live
delivery without a gap."""
import asyncio
import json
import random
import re
import socket

import pytest
import websockets

from chorus_helpers import run_simple
from conftest import http_request

N_PUB = 400


def run(coro):
    return run_simple(coro, 90)


async def open_ws(b):
    return await asyncio.wait_for(websockets.connect(b.url, max_size=None), 5)


async def call(ws, msg):
    await ws.send(json.dumps(msg))
    while True:
        r = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if r.get("op") != "message":
            return r


async def collect(ws, topic, last, got):
    """Reads message events until offset `last` of topic arrived."""
    while not got or got[-1] < last:
        m = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if m.get("op") == "message" and m["topic"] == topic:
            got.append(m["offset"])


@pytest.mark.parametrize("threads", [1, 3])
def test_fan_out_across_loops(make_broker, threads):
    b = make_broker(threads=threads)

    async def main():
        subs = [await open_ws(b) for _ in range(9)]  # land on every loop
        for s in subs:
            r = await call(s, {"op": "subscribe", "topic": "x", "id": 1})
            assert r["op"] == "subscribed" and r["offset"] == 0, r
        pubs = [await open_ws(b) for _ in range(3)]

        async def publisher(ws, k):
            acked = []
            for i in range(N_PUB // 3):
                r = await call(ws, {"op": "publish", "topic": "x",
                                    "data": [k, i], "id": i})
                assert r["op"] == "published", r
                acked.append(r["offset"])
            assert acked == sorted(acked), acked
            return acked

        acked = await asyncio.gather(*(publisher(p, k)
                                       for k, p in enumerate(pubs)))
        every = sorted(o for a in acked for o in a)
        assert every == list(range(1, len(every) + 1)), every[:10]
        for s in subs:
            got = []
            await collect(s, "x", every[-1], got)
            assert got == every, got[:20]
        for w in subs + pubs:
            await w.close()
    run(main())


@pytest.mark.parametrize("threads", [1, 3])
def test_subscribed_offset_counts_acks_from_other_loops(make_broker,
                                                         threads):
    b = make_broker(threads=threads)

    async def main():
        pub = await open_ws(b)
        for i in range(40):
            r = await call(pub, {"op": "publish", "topic": "y", "data": i})
            acked = r["offset"]
            # a fresh connection, likely on another loop than pub's
            s = await open_ws(b)
            r = await call(s, {"op": "subscribe", "topic": "y"})
            assert r["offset"] >= acked, (r, acked)
            await s.close()
        await pub.close()
    run(main())


@pytest.mark.parametrize("threads", [1, 3])
def test_resume_on_another_loop_while_publishing(make_broker, threads):
    b = make_broker(threads=threads)
    rnd = random.Random(7)

    async def main():
        pub = await open_ws(b)
        stop = asyncio.Event()
        acked = []

        async def publisher():
            i = 0
            while not stop.is_set() or i < 50:
                r = await call(pub, {"op": "publish", "topic": "z",
                                     "data": i})
                acked.append(r["offset"])
                i += 1

        task = asyncio.create_task(publisher())
        s = await open_ws(b)
        r = await call(s, {"op": "subscribe", "topic": "z"})
        epoch, start, got = r["epoch"], r["offset"], []
        for _ in range(6):
            # read a little, drop the connection, resume elsewhere
            await asyncio.sleep(rnd.uniform(0.01, 0.1))
            for _ in range(rnd.randint(5, 60)):
                try:
                    m = json.loads(await asyncio.wait_for(s.recv(), 0.05))
                except asyncio.TimeoutError:
                    break
                if m.get("op") == "message":
                    got.append(m["offset"])
            # drop it like a lost network would (a close handshake would
            # wait behind the messages it has not read)
            s.transport.abort()
            s = await open_ws(b)
            since = got[-1] if got else start
            r = await call(s, {"op": "subscribe", "topic": "z",
                               "since": {"epoch": epoch, "offset": since}})
            assert r["recovered"] is True, r
        stop.set()
        await task
        await collect(s, "z", acked[-1], got)
        assert got == list(range(start + 1, acked[-1] + 1)), got[:20]
        await s.close()
        await pub.close()
    run(main())


def read_http_responses(sock, timeout=10):
    """Reads HTTP responses until EOF: a list of (status, body)."""
    sock.settimeout(timeout)
    buf, out = b"", []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        if chunk:
            buf += chunk
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"(?i)content-length: *(\d+)",
                                   head).group(1))
            if len(rest) < length:
                break
            out.append((int(head.split()[1]), rest[:length]))
            buf = rest[length:]
        if not chunk:
            assert buf == b"", buf  # no response cut in the middle
            return out


def test_shutdown_with_pipelined_http_publishes(make_broker):
    """SIGTERM while connections on every loop have pipelined HTTP
    publishes in flight (those on loops 1 and 2 are forwarded to loop 0):
    chorusd exits 0 without leaking what it holds for a pending ack (the
    ASan pass checks leaks), every response is whole, and every 200 is in
    the history after a restart."""
    b = make_broker(threads=3)
    req = (b"POST /api/publish/pipe.%d HTTP/1.1\r\nHost: x\r\n"
           b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n42")
    socks = [socket.create_connection(("127.0.0.1", b.port), timeout=5)
             for _ in range(9)]
    for i, s in enumerate(socks):
        s.sendall((req % i) * 300)
    # the first answers are out: publishes are in flight on every loop
    socks[0].settimeout(10)
    assert socks[0].recv(12, socket.MSG_PEEK).startswith(b"HTTP/1.1")
    assert b.stop() == 0
    log = b.read_log()
    assert "LeakSanitizer" not in log, log
    acked = {}
    for i, s in enumerate(socks):
        for status, body in read_http_responses(s):
            assert status in (200, 500, 503), (status, body)
            if status == 200:
                acked.setdefault(i, []).append(json.loads(body)["offset"])
        s.close()
    assert acked, "no publish was answered"
    b.start()
    for i, offsets in acked.items():
        status, _, body = http_request(
            b, "GET", f"/api/history/pipe.{i}?since=0&limit=1000")
        assert status == 200, body
        stored = {m["offset"] for m in json.loads(body)["messages"]}
        assert set(offsets) <= stored, (i, sorted(set(offsets) - stored))
