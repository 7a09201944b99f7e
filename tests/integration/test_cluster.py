"""Cluster mode (engine = redis): several chorusd nodes on one real
redis-server behave as one broker. Fan-out across nodes, one gapless
offset sequence per topic under concurrent publishers, resume on another
node with since, and the node's own figures."""
import asyncio

from conftest import http_request
from chorus_helpers import WAIT, recv_json, recv_messages, request
import chorus_helpers
from cluster_helpers import make_cluster, make_redis  # noqa: F401 fixtures

RUNNER = chorus_helpers.AbortingRunner(timeout=60)
run = RUNNER.run
connect = RUNNER.connect


async def subscribe(ws, topic, since=None):
    msg = {"op": "subscribe", "topic": topic, "id": 1}
    if since is not None:
        msg["since"] = since
    r = await request(ws, msg)
    assert r["op"] == "subscribed", r
    return r


async def collect(ws, topic, count, timeout=20):
    """count messages of topic, in arrival order."""
    return await recv_messages(ws, topic, count, timeout)


def test_publish_on_one_node_reaches_the_others(make_cluster):
    _, (a, b, c) = make_cluster(3)

    async def main():
        subs = []
        for node in (a, b, c):
            ws = await connect(node)
            r = await subscribe(ws, "news")
            assert r["offset"] == 0
            subs.append((ws, r["epoch"]))
        assert len({e for _, e in subs}) == 1, "one epoch on every node"
        pub = await connect(a)
        acks = []
        for i in range(20):
            acks.append(await request(pub, {"op": "publish", "topic": "news",
                                            "data": {"i": i}, "id": i}))
        assert [x["offset"] for x in acks] == list(range(1, 21))
        got = [await collect(ws, "news", 20) for ws, _ in subs]
        for msgs in got:
            assert [m["offset"] for m in msgs] == list(range(1, 21))
            assert [m["data"] for m in msgs] == [{"i": i} for i in range(20)]
        assert got[0] == got[1] == got[2]  # ts and all
        # HTTP publish on C, history read on B: one store.
        st, _, body = http_request(c, "POST", "/api/publish/news",
                                   b'{"via":"http"}')
        assert st == 200, body
        for ws, _ in subs:
            m = await recv_json(ws, WAIT)
            assert m["offset"] == 21 and m["data"] == {"via": "http"}, m
        st, _, body = http_request(b, "GET", "/api/history/news?since=19")
        assert st == 200, body
        import json
        h = json.loads(body)
        assert h["epoch"] == subs[0][1] and h["offset"] == 21
        assert [m["offset"] for m in h["messages"]] == [20, 21]
    run(main())


def test_concurrent_publishers_one_gapless_sequence(make_cluster):
    _, nodes = make_cluster(3, threads=2)
    n_each = 200

    async def publisher(node, k):
        ws = await connect(node)
        offs = []
        # pipelined: all sent, then all acks read
        for i in range(n_each):
            await ws.send('{"op":"publish","topic":"seq","data":%d,"id":%d}'
                          % (k * 1000 + i, i))
        for _ in range(n_each):
            r = await recv_json(ws, 20)
            assert r["op"] == "published", r
            offs.append(r["offset"])
        return offs

    async def main():
        subs = []
        for node in nodes:
            for _ in range(2):  # two per node: both loops
                ws = await connect(node)
                await subscribe(ws, "seq")
                subs.append(ws)
        acked = await asyncio.gather(*(publisher(n, k)
                                       for k, n in enumerate(nodes)))
        all_offsets = sorted(o for offs in acked for o in offs)
        total = 3 * n_each
        assert all_offsets == list(range(1, total + 1))
        seen = []
        for ws in subs:
            msgs = await collect(ws, "seq", total, timeout=30)
            assert [m["offset"] for m in msgs] == list(range(1, total + 1))
            seen.append([m["data"] for m in msgs])
        assert all(s == seen[0] for s in seen)
        # each publisher's own messages arrive in its order
        for k in range(3):
            mine = [d for d in seen[0] if d // 1000 == k]
            assert mine == [k * 1000 + i for i in range(n_each)]
    run(main())


def test_resume_on_another_node_with_since(make_cluster):
    _, (a, b, c) = make_cluster(3)

    async def main():
        sub = await connect(a)
        r = await subscribe(sub, "resume")
        epoch = r["epoch"]
        pub = await connect(c)
        for i in range(10):
            await request(pub, {"op": "publish", "topic": "resume",
                                "data": i})
        msgs = await collect(sub, "resume", 10)
        last = msgs[-1]["offset"]
        sub.transport.abort()  # cut off
        for i in range(10, 25):
            await request(pub, {"op": "publish", "topic": "resume",
                                "data": i})
        ws = await connect(b)
        r = await subscribe(ws, "resume", {"epoch": epoch, "offset": last})
        assert r["recovered"] is True and r["epoch"] == epoch, r
        assert r["offset"] == 25
        # live ones while and after replaying
        await request(pub, {"op": "publish", "topic": "resume", "data": 25})
        got = await collect(ws, "resume", 16)
        assert [m["offset"] for m in got] == list(range(11, 27))
        assert [m["data"] for m in got] == list(range(10, 26))
    run(main())


def test_healthz_and_metrics_name_redis(make_cluster):
    (redis,), (a,) = make_cluster(1)
    st, _, body = http_request(a, "GET", "/healthz")
    assert st == 200 and body == b"ok\n"
    st, _, body = http_request(a, "GET", "/metrics")
    text = body.decode()
    for name in ("chorus_redis_rtt_seconds_bucket", "chorus_redis_reconnects_total",
                 "chorus_redis_pending_requests", "chorus_redis_gap_fills_total",
                 "chorus_redis_epoch_changes_total"):
        assert name in text, name
    assert redis.command("EXISTS", "chorus:run_id") == 1


def test_two_redis_instances_spread_topics(make_cluster, make_redis):
    r1, r2 = make_redis(), make_redis()
    _, (a, b, c) = make_cluster(3, redis=[r1, r2])
    topics = [f"t{i}" for i in range(12)]

    async def main():
        subs = {}
        for t in topics:
            ws = await connect(b)
            await subscribe(ws, t)
            subs[t] = ws
        pubs = [await connect(a), await connect(c)]
        for k, t in enumerate(topics):
            for i in range(10):
                await pubs[(k + i) % 2].send(
                    '{"op":"publish","topic":"%s","data":%d}' % (t, i))
        for p in pubs:
            for _ in range(len(topics) * 10 // 2):
                r = await recv_json(p, 10)
                assert r["op"] == "published", r
        for t in topics:
            msgs = await collect(subs[t], t, 10)
            assert [m["offset"] for m in msgs] == list(range(1, 11))
            assert sorted(m["data"] for m in msgs) == list(range(10))
    run(main())
    # both instances hold topics, and each topic lives in one of them
    held = [set(), set()]
    for k, r in enumerate((r1, r2)):
        for key in r.command("KEYS", "chorus:{*}:s"):
            held[k].add(key[len("chorus:{"):-len("}:s")])
    assert held[0] and held[1], held
    assert held[0] | held[1] == set(topics) and not held[0] & held[1]


def test_reading_creates_nothing_in_redis(make_cluster):
    """Subscribes and history reads of topics never published to write no
    key: Redis holds only the fence until a message is published; the
    epoch they were told is the one the first message gets."""
    (redis,), (a, b) = make_cluster(2)

    async def main():
        ws = await connect(a)
        epochs = {}
        for i in range(50):
            r = await subscribe(ws, f"empty{i}")
            assert r["offset"] == 0
            epochs[f"empty{i}"] = r["epoch"]
        for i in range(50):
            st, _, _ = http_request(b, "GET", f"/api/history/unread{i}")
            assert st == 200
        assert redis.command("KEYS", "chorus:{*") == []
        pub = await connect(b)
        r = await request(pub, {"op": "publish", "topic": "empty7",
                                "data": 1})
        assert r["offset"] == 1
        m = await recv_json(ws)
        assert m["topic"] == "empty7" and m["offset"] == 1
        st, _, body = http_request(a, "GET", "/api/history/empty7")
        import json
        assert json.loads(body)["epoch"] == epochs["empty7"]
    run(main())
