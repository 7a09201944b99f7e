"""threads = N: connections spread over N event loops, loop 0 commits and
hands committed blocks to the others. Every guarantee of PROTOCOL.md must
hold whatever loop a client lands on: offsets gapless and in order per
subscriber, no duplicate, subscribed.offset counting every publish acked
before the subscribe (even one acked by another loop), replay joining live
delivery without a gap."""
import asyncio
import json
import random

import pytest
import websockets

from chorus_helpers import run_simple

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


# 0 is the default: one loop per core.
@pytest.mark.parametrize("threads", [0, 1, 3])
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
