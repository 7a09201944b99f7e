"""Pub/sub over /ws, checked with python3-websockets as an independent,
RFC-strict client: replies, offsets, delivery of every JSON type, fan-out,
topic isolation, unsubscribe, double subscribe, disconnect clean-up."""
import asyncio
import re
import time

from conftest import dumps

import chorus_helpers
from chorus_helpers import WAIT, connect, expect_silence, publish, recv_json, \
    request, run_simple

EPOCH_RE = re.compile(r"^[0-9a-f]{32}$")


def run(coro, timeout=50):
    return run_simple(coro, timeout)


async def subscribe(ws, topic, id=None):
    return await chorus_helpers.subscribe(ws, topic, id=id, check_id=False)


async def close_all(*conns):
    await asyncio.gather(*(asyncio.wait_for(c.close(), WAIT) for c in conns),
                         return_exceptions=True)


def now_ms():
    return int(time.time() * 1000)


def check_message(m, topic, offset, data, t0=None, t1=None):
    assert m.get("op") == "message", m
    assert m["topic"] == topic, m
    assert type(m["offset"]) is int and m["offset"] == offset, m
    assert type(m["ts"]) is int, m
    if t0 is not None:
        assert t0 - 2000 <= m["ts"] <= t1 + 2000, (m["ts"], t0, t1)
    assert m["data"] == data, m
    assert type(m["data"]) is type(data), m


# --- subscribe ------------------------------------------------------------

def test_subscribe_reply_int_id(broker):
    async def main():
        ws = await connect(broker)
        r = await subscribe(ws, "news", id=7)
        assert r["id"] == 7 and type(r["id"]) is int, r
        assert isinstance(r["epoch"], str) and EPOCH_RE.match(r["epoch"]), r
        assert r["offset"] == 0 and type(r["offset"]) is int, r
        assert isinstance(r["recovered"], bool), r
        await ws.close()
    run(main())


def test_subscribe_reply_string_and_edge_ids(broker):
    async def main():
        ws = await connect(broker)
        ids = ["7", "req-1", "", "x" * 64, "\u00e9" * 32, "a\"b\\c\n",
               0, -1, 2 ** 53 + 1]
        for i, id_ in enumerate(ids):
            r = await subscribe(ws, f"t{i}", id=id_)
            assert r["id"] == id_ and type(r["id"]) is type(id_), (id_, r)
            assert r["offset"] == 0, r
        await ws.close()
    run(main())


def test_reply_without_id_has_no_id(broker):
    async def main():
        ws = await connect(broker)
        r = await subscribe(ws, "noid")
        assert "id" not in r, r
        r = await publish(ws, "noid2", 1)
        assert "id" not in r, r
        r = await request(ws, {"op": "ping"})
        assert r == {"op": "pong"}, r
        await ws.close()
    run(main())


def test_epoch_stable_across_subscriptions(broker):
    async def main():
        a = await connect(broker)
        b = await connect(broker)
        ra = await subscribe(a, "ep")
        await publish(b, "ep", "x")
        rb = await subscribe(b, "ep")
        assert ra["epoch"] == rb["epoch"], (ra, rb)
        assert rb["offset"] == 1, rb
        await close_all(a, b)
    run(main())


# --- publish / message ----------------------------------------------------

def test_publish_offsets_and_delivery(broker):
    async def main():
        sub = await connect(broker)
        pub = await connect(broker)
        await subscribe(sub, "orders", id=1)
        t0 = now_ms()
        for i in (1, 2, 3):
            r = await publish(pub, "orders", {"n": i}, id=100 + i)
            assert r["offset"] == i and type(r["offset"]) is int, r
            assert r["id"] == 100 + i, r
            assert set(r) == {"op", "id", "topic", "offset"}, r
        t1 = now_ms()
        for i in (1, 2, 3):
            m = await recv_json(sub)
            check_message(m, "orders", i, {"n": i}, t0, t1)
        await expect_silence(sub)
        await close_all(sub, pub)
    run(main())


DATA_VALUES = [
    {"a": 1, "b": [1, 2, {"c": None, "d": "e"}], "f": {"g": {}}},
    {},
    [],
    [1, "two", 3.5, None, True, False, [], {}],
    "",
    "plain",
    "unicode: h\u00e9llo w\u00f6rld \u2603 \u4e2d\u6587 \U0001F389",
    "escapes: \"quoted\" \\ back/slash \n newline \t tab \r cr \b \f "
    "\u0001 \u001f ctrl",
    "</script><!-- & ' \u2028 \u2029",
    0,
    -17,
    123456789012345,
    -9007199254740991,
    3.25,
    -0.5,
    1e-07,
    6.02e+23,
    True,
    False,
    None,
]


def test_data_of_every_json_type(broker):
    async def main():
        sub = await connect(broker)
        pub = await connect(broker)
        await subscribe(sub, "types")
        for i, data in enumerate(DATA_VALUES, 1):
            r = await publish(pub, "types", data, id=i)
            assert r["offset"] == i, r
        for i, data in enumerate(DATA_VALUES, 1):
            m = await recv_json(sub)
            check_message(m, "types", i, data)
        await close_all(sub, pub)
    run(main())


def test_data_string_with_escaped_nul(broker):
    """"\\u0000" is valid JSON in a string; data is any JSON value."""
    async def main():
        sub = await connect(broker)
        pub = await connect(broker)
        await subscribe(sub, "nul")
        data = {"s": "a\u0000b"}
        r = await publish(pub, "nul", data)
        assert r["offset"] == 1, r
        check_message(await recv_json(sub), "nul", 1, data)
        await close_all(sub, pub)
    run(main())


def test_unknown_fields_ignored(broker):
    async def main():
        ws = await connect(broker)
        r = await request(ws, {"op": "subscribe", "topic": "uf", "id": 1,
                               "extra": {"x": [1]}, "since2": 5})
        assert r["op"] == "subscribed" and r["id"] == 1, r
        await ws.send(dumps({"op": "publish", "topic": "uf", "data": "d",
                             "id": 2, "qos": 1}))
        got = [await recv_json(ws), await recv_json(ws)]
        ops = sorted(m["op"] for m in got)
        assert ops == ["message", "published"], got
        r = await request(ws, {"op": "ping", "id": 3, "topic": "ignored"})
        assert r == {"op": "pong", "id": 3}, r
        await ws.close()
    run(main())


def test_publisher_gets_own_messages_only_if_subscribed(broker):
    async def main():
        ws = await connect(broker)
        r = await publish(ws, "self", "first", id=1)
        assert r["offset"] == 1
        await expect_silence(ws, 0.4)
        await subscribe(ws, "self", id=2)
        await ws.send(dumps({"op": "publish", "topic": "self",
                             "data": "second", "id": 3}))
        got = {}
        for _ in range(2):
            m = await recv_json(ws)
            got[m["op"]] = m
        assert set(got) == {"published", "message"}, got
        assert got["published"]["offset"] == 2 and got["published"]["id"] == 3
        check_message(got["message"], "self", 2, "second")
        await expect_silence(ws)
        await ws.close()
    run(main())


def test_subscribed_offset_counts_acked_publishes(broker):
    async def main():
        pub = await connect(broker)
        for i in range(1, 4):
            await publish(pub, "count", i)
            ws = await connect(broker)
            r = await subscribe(ws, "count")
            assert r["offset"] == i, (i, r)
            await ws.close()
        for i in range(4, 9):
            await publish(pub, "count", i)
        sub = await connect(broker)
        r = await subscribe(sub, "count")
        assert r["offset"] == 8, r
        # no since: nothing replayed; the next live message is offset 9
        await expect_silence(sub)
        await publish(pub, "count", 9)
        check_message(await recv_json(sub), "count", 9, 9)
        await close_all(sub, pub)
    run(main())


def test_subscribe_while_publishing_no_gap(broker):
    """A subscription made while publishes stream in starts exactly after
    subscribed.offset: no gap, no duplicate, increasing offsets."""
    N = 1500

    async def main():
        pub = await connect(broker)
        subs = [await connect(broker) for _ in range(8)]
        done = asyncio.Event()

        async def publisher():
            async def acks():
                for i in range(1, N + 1):
                    r = await recv_json(pub, 20)
                    assert r["op"] == "published" and r["offset"] == i, r
            acker = asyncio.ensure_future(acks())
            for i in range(1, N + 1):
                await pub.send(dumps({"op": "publish", "topic": "race",
                                      "id": i, "data": i}))
                if i % 20 == 0:
                    await asyncio.sleep(0.005)
            await asyncio.wait_for(acker, 20)
            done.set()

        async def late_subscriber(k, ws):
            await asyncio.sleep(0.04 * k)
            r = await subscribe(ws, "race", id=k)
            start = r["offset"]
            expected = start + 1
            while expected <= N:
                m = await recv_json(ws, 20)
                assert m["op"] == "message", m
                assert m["offset"] == expected, (k, start, m["offset"])
                assert m["data"] == expected
                expected += 1
            return start
        starts = await asyncio.gather(
            publisher(), *(late_subscriber(k, s) for k, s in enumerate(subs)))
        assert done.is_set()
        for s in subs:
            await expect_silence(s, 0.2)
        await close_all(pub, *subs)
        return starts
    run(main())


# --- scale ----------------------------------------------------------------

def test_200_subscribers_one_topic(broker):
    N, M = 200, 20

    async def main():
        subs = await asyncio.gather(*(connect(broker) for _ in range(N)))
        await asyncio.gather(*(subscribe(s, "fan", id=i)
                               for i, s in enumerate(subs)))
        pub = await connect(broker)
        for i in range(1, M + 1):
            r = await publish(pub, "fan", {"i": i})
            assert r["offset"] == i, r

        async def drain(s):
            return [await recv_json(s, 15) for _ in range(M)]
        results = await asyncio.gather(*(drain(s) for s in subs))
        for got in results:
            for i, m in enumerate(got, 1):
                check_message(m, "fan", i, {"i": i})
        await close_all(pub, *subs)
    run(main())


def test_100_topics_isolated(broker):
    T = 100

    async def main():
        topics = [f"iso.{k}" for k in range(T)]
        subs = await asyncio.gather(*(connect(broker) for _ in range(T)))
        await asyncio.gather(*(subscribe(s, t) for s, t in zip(subs, topics)))
        allsub = await connect(broker)
        for t in topics:
            await subscribe(allsub, t)
        pub = await connect(broker)
        # topic k gets k % 3 + 1 messages
        for k, t in enumerate(topics):
            for j in range(1, k % 3 + 2):
                r = await publish(pub, t, {"t": t, "j": j})
                assert r["offset"] == j, r

        async def drain(s, k, t):
            for j in range(1, k % 3 + 2):
                check_message(await recv_json(s, 10), t, j, {"t": t, "j": j})
            await expect_silence(s, 0.3)
        await asyncio.gather(*(drain(s, k, t)
                               for k, (s, t) in enumerate(zip(subs, topics))))
        seen = {}
        total = sum(k % 3 + 1 for k in range(T))
        for _ in range(total):
            m = await recv_json(allsub)
            assert m["op"] == "message", m
            last = seen.get(m["topic"], 0)
            assert m["offset"] == last + 1, (m, last)
            assert m["data"] == {"t": m["topic"], "j": m["offset"]}, m
            seen[m["topic"]] = m["offset"]
        assert seen == {t: k % 3 + 1 for k, t in enumerate(topics)}
        await expect_silence(allsub)
        await close_all(pub, allsub, *subs)
    run(main())


# --- unsubscribe / double subscribe ---------------------------------------

def test_unsubscribe_stops_delivery(broker):
    async def main():
        sub = await connect(broker)
        pub = await connect(broker)
        await subscribe(sub, "u")
        await subscribe(sub, "keep")
        await publish(pub, "u", 1)
        check_message(await recv_json(sub), "u", 1, 1)
        r = await request(sub, {"op": "unsubscribe", "topic": "u", "id": "x"})
        assert r == {"op": "unsubscribed", "id": "x", "topic": "u"}, r
        for i in range(2, 5):
            await publish(pub, "u", i)
        await publish(pub, "keep", "k")
        # only the other topic still arrives
        check_message(await recv_json(sub), "keep", 1, "k")
        await expect_silence(sub, 0.4)
        # and subscribing again works, live from the current offset
        r = await subscribe(sub, "u")
        assert r["offset"] == 4, r
        await publish(pub, "u", 5)
        check_message(await recv_json(sub), "u", 5, 5)
        await close_all(sub, pub)
    run(main())


def test_double_subscribe_no_duplicates(broker):
    async def main():
        sub = await connect(broker)
        pub = await connect(broker)
        r1 = await subscribe(sub, "dbl", id=1)
        await publish(pub, "dbl", "a")
        check_message(await recv_json(sub), "dbl", 1, "a")
        r2 = await subscribe(sub, "dbl", id=2)
        assert r2["id"] == 2 and r2["epoch"] == r1["epoch"], r2
        assert r2["offset"] == 1, r2
        for d in ("b", "c", "d"):
            await publish(pub, "dbl", d)
        for off, d in ((2, "b"), (3, "c"), (4, "d")):
            check_message(await recv_json(sub), "dbl", off, d)
        await expect_silence(sub, 0.4)
        # one unsubscribe removes the (single) subscription
        r = await request(sub, {"op": "unsubscribe", "topic": "dbl", "id": 3})
        assert r["op"] == "unsubscribed", r
        await publish(pub, "dbl", "e")
        await expect_silence(sub, 0.4)
        r = await request(sub, {"op": "unsubscribe", "topic": "dbl", "id": 4})
        assert r["op"] == "error" and r["code"] == "not_subscribed", r
        await close_all(sub, pub)
    run(main())


def test_unsubscribe_not_subscribed(broker):
    async def main():
        ws = await connect(broker)
        r = await request(ws, {"op": "unsubscribe", "topic": "never", "id": 5})
        assert r["op"] == "error" and r["code"] == "not_subscribed", r
        assert r["id"] == 5 and isinstance(r["message"], str), r
        await subscribe(ws, "once")
        r = await request(ws, {"op": "unsubscribe", "topic": "once", "id": 6})
        assert r == {"op": "unsubscribed", "id": 6, "topic": "once"}, r
        r = await request(ws, {"op": "unsubscribe", "topic": "once", "id": 7})
        assert r["op"] == "error" and r["code"] == "not_subscribed", r
        assert r["id"] == 7, r
        # the connection still works
        r = await request(ws, {"op": "ping", "id": 8})
        assert r == {"op": "pong", "id": 8}, r
        await ws.close()
    run(main())


# --- disconnect clean-up --------------------------------------------------

def test_abrupt_disconnect_cleanup(broker):
    async def main():
        gone = [await connect(broker) for _ in range(5)]
        stay = [await connect(broker) for _ in range(3)]
        for s in gone + stay:
            await subscribe(s, "dc")
        for s in gone:
            s.transport.abort()      # TCP reset, no close frame
        pub = await connect(broker)
        for i in range(1, 51):
            r = await publish(pub, "dc", {"i": i}, id=i)
            assert r["offset"] == i, r
        for s in stay:
            for i in range(1, 51):
                check_message(await recv_json(s), "dc", i, {"i": i})
        # a subscriber that leaves mid-stream without a close frame
        s2 = stay.pop()
        s2.transport.close()
        for i in range(51, 101):
            await publish(pub, "dc", {"i": i})
        for s in stay:
            for i in range(51, 101):
                check_message(await recv_json(s), "dc", i, {"i": i})
        fresh = await connect(broker)
        r = await subscribe(fresh, "dc")
        assert r["offset"] == 100, r
        r = await request(fresh, {"op": "ping", "id": 1})
        assert r == {"op": "pong", "id": 1}
        await close_all(pub, fresh, *stay)
    run(main())


# --- ping -----------------------------------------------------------------

def test_ping_pong(broker):
    async def main():
        ws = await connect(broker)
        assert await request(ws, {"op": "ping", "id": 10}) == \
            {"op": "pong", "id": 10}
        assert await request(ws, {"op": "ping", "id": "p-1"}) == \
            {"op": "pong", "id": "p-1"}
        assert await request(ws, {"op": "ping"}) == {"op": "pong"}
        # pipelined requests are answered in order
        for i in range(20):
            await ws.send(dumps({"op": "ping", "id": i}))
        for i in range(20):
            assert await recv_json(ws) == {"op": "pong", "id": i}
        await ws.close()
        assert ws.close_code == 1000
    run(main())
