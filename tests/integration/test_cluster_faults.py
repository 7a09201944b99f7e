"""Cluster mode under faults, on a real redis-server: the pub/sub
connection killed mid-stream, Redis paused (kill -STOP) and killed
(kill -9) then restarted, a node killed under load. The ack audit: every
acknowledged (topic, epoch, offset, data) is in history with identical
data, or under an epoch that has since changed, which every subscriber
was told."""
import asyncio
import json
import signal
import time

from conftest import http_request
from chorus_helpers import recv_json, request
import chorus_helpers
from cluster_helpers import make_cluster, make_redis  # noqa: F401 fixtures

RUNNER = chorus_helpers.AbortingRunner(timeout=90)
run = RUNNER.run
connect = RUNNER.connect


async def subscribe(ws, topic, since=None):
    msg = {"op": "subscribe", "topic": topic, "id": "s"}
    if since is not None:
        msg["since"] = since
    r = await request(ws, msg)
    assert r["op"] == "subscribed", r
    return r


class Reader:
    """Reads one subscriber's stream in the background: messages per
    epoch, and the unsolicited `subscribed` events (epoch changes)."""

    def __init__(self, ws, topic, epoch):
        self.ws, self.topic, self.epoch = ws, topic, epoch
        self.by_epoch = {epoch: []}
        self.changes = []
        self.task = asyncio.ensure_future(self.loop())

    async def loop(self):
        while True:
            m = json.loads(await self.ws.recv())
            if m["op"] == "subscribed":
                assert "id" not in m and m["recovered"] is False, m
                self.changes.append(m)
                self.epoch = m["epoch"]
                self.by_epoch.setdefault(self.epoch, [])
            elif m["op"] == "message":
                self.by_epoch[self.epoch].append((m["offset"], m["data"]))

    def count(self):
        return sum(len(v) for v in self.by_epoch.values())

    async def wait(self, pred, timeout=20):
        deadline = time.time() + timeout
        while not pred(self):
            assert not self.task.done(), self.task.exception()
            assert time.time() < deadline, (self.changes,
                                            {e: v[-3:] for e, v in
                                             self.by_epoch.items()})
            await asyncio.sleep(0.05)

    def check_gapless(self):
        """Within each epoch: offsets strictly consecutive, no repeat."""
        for epoch, msgs in self.by_epoch.items():
            offs = [o for o, _ in msgs]
            if offs:
                assert offs == list(range(offs[0], offs[0] + len(offs))), \
                    (epoch, offs)


async def publish_stream(node, topic, n, acks, errors, pause=0.0,
                         stop=None):
    """Publishes data 0..n-1 one at a time (each waits for its answer);
    records (epoch, offset, data) per ack over HTTP, else the error."""
    loop = asyncio.get_running_loop()
    for i in range(n):
        if stop and stop.is_set():
            return
        body = json.dumps({"i": i}).encode()
        st, _, resp = await loop.run_in_executor(
            None, lambda: http_request(node, "POST", f"/api/publish/{topic}",
                                       body, timeout=10))
        if st == 200:
            r = json.loads(resp)
            acks.append((r["epoch"], r["offset"], {"i": i}))
        else:
            errors.append((st, resp))
        if pause:
            await asyncio.sleep(pause)


def history_of(node, topic):
    """The current epoch and every retained message, page by page."""
    stored, since, epoch = {}, 0, None
    deadline = time.time() + 30
    while True:
        st, _, body = http_request(
            node, "GET", f"/api/history/{topic}?since={since}&limit=1000")
        if st in (500, 503) and b"unavailable" in body and \
                time.time() < deadline:
            # the loop this request landed on may still be reconnecting to
            # Redis (each loop has its own connections); ask again
            time.sleep(0.1)
            continue
        assert st == 200, body
        h = json.loads(body)
        assert epoch in (None, h["epoch"]), "epoch changed while reading"
        epoch = h["epoch"]
        stored.update({m["offset"]: m["data"] for m in h["messages"]})
        if not h["messages"]:
            return epoch, stored
        since = h["messages"][-1]["offset"]


def audit(node, topic, acks, readers):
    """The ack audit (module docstring)."""
    epoch, stored = history_of(node, topic)
    for e, off, data in acks:
        if e == epoch:
            assert stored.get(off) == data, (e, off, data, stored.get(off))
        else:
            # a changed epoch: every subscriber was told
            for r in readers:
                assert any(c["epoch"] != e for c in r.changes), (e, r.changes)


def pubsub_clients(redis):
    return sum(1 for line in redis.command("CLIENT", "LIST", "TYPE",
                                           "pubsub").splitlines() if line)


def test_pubsub_connection_killed_mid_stream(make_cluster):
    (redis,), nodes = make_cluster(3)

    async def main():
        readers = []
        for node in nodes:
            ws = await connect(node)
            r = await subscribe(ws, "kill")
            readers.append(Reader(ws, "kill", r["epoch"]))
        pub = await connect(nodes[0])
        total = 3000
        i = 0
        while i < total:
            await pub.send('{"op":"publish","topic":"kill","data":%d}' % i)
            if i in (800, 1900):
                killed = redis.command("CLIENT", "KILL", "TYPE", "pubsub")
                assert killed == 3, killed
                # publishing goes on while the nodes resubscribe
                for j in range(i + 1, i + 200):
                    await pub.send('{"op":"publish","topic":"kill",'
                                   '"data":%d}' % j)
                    await asyncio.sleep(0.002)
                while pubsub_clients(redis) < 3:
                    await asyncio.sleep(0.01)
                i += 199
            i += 1
        for _ in range(total):
            r = await recv_json(pub, 20)
            assert r["op"] == "published", r
        for rd in readers:
            await rd.wait(lambda r: r.count() >= total, 30)
            assert list(rd.by_epoch) == [rd.epoch] and not rd.changes
            msgs = rd.by_epoch[rd.epoch]
            assert [o for o, _ in msgs] == list(range(1, total + 1))
            assert [d for _, d in msgs] == list(range(total))
        # no duplicate arrives later either
        await asyncio.sleep(0.5)
        assert all(rd.count() == total for rd in readers)
    run(main())
    m = chorus_helpers.metrics_values(nodes[1])
    assert m.get("chorus_redis_reconnects_total", 0) >= 1, m


def test_redis_paused_no_false_ack(make_cluster):
    (redis,), nodes = make_cluster(3, redis_timeout="500ms",
                                   history_size=100000)
    a, b, c = nodes

    async def main():
        readers = []
        for node in nodes:
            ws = await connect(node)
            r = await subscribe(ws, "pause")
            readers.append(Reader(ws, "pause", r["epoch"]))
        acks, errors = [], []
        task = asyncio.ensure_future(publish_stream(a, "pause", 400, acks,
                                                    errors, pause=0.005))
        await asyncio.sleep(0.5)
        redis.send_signal(signal.SIGSTOP)
        t0 = time.time()
        # publishes fail within redis_timeout, and /healthz says why
        while True:
            st, _, body = http_request(b, "GET", "/healthz")
            if st == 503:
                assert b"redis unavailable" in body
                break
            assert time.time() - t0 < 5, "healthz stayed 200"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        redis.send_signal(signal.SIGCONT)
        await task
        assert errors, "some publishes were refused while Redis was paused"
        assert all(st == 500 for st, _ in errors), errors
        assert len(acks) + len(errors) == 400
        # subscribers stayed connected and caught up
        final = acks[-1][1]
        for rd in readers:
            await rd.wait(lambda r: any(o == final for o, _ in
                                        r.by_epoch[r.epoch]), 20)
            rd.check_gapless()
        audit(c, "pause", acks, readers)
        # every acked message reached every subscriber, in order
        for rd in readers:
            got = dict(rd.by_epoch[acks[0][0]])
            for e, off, data in acks:
                assert got.get(off) == data
        deadline = time.time() + 10  # the reconnect backoff is at most 5s
        while http_request(b, "GET", "/healthz")[0] != 200:
            assert time.time() < deadline, "healthz stayed 503"
            await asyncio.sleep(0.1)
    run(main())


def test_redis_killed_and_restarted_changes_epoch(make_cluster, make_redis):
    # Snapshots only (Debian's default kind of setup): a SAVE, more
    # publishes, kill -9, restart from the snapshot: Redis is rolled back.
    redis = make_redis(persistence=["--save", "", "--appendonly", "no",
                                    "--dbfilename", "dump.rdb"])
    _, nodes = make_cluster(3, redis=redis)
    a, b, c = nodes

    async def main():
        readers = []
        for node in nodes:
            ws = await connect(node)
            r = await subscribe(ws, "roll")
            readers.append(Reader(ws, "roll", r["epoch"]))
        old = readers[0].epoch
        pub = await connect(a)
        acks = []
        for i in range(10):
            r = await request(pub, {"op": "publish", "topic": "roll",
                                    "data": {"i": i}})
            acks.append((old, r["offset"], {"i": i}))
            if i == 4:
                assert redis.command("SAVE") == "OK"
        for rd in readers:
            await rd.wait(lambda r: r.count() >= 10)
        redis.kill9()
        redis.start()  # loads the snapshot: offsets 1..5 of the old epoch
        # publishing again: never offset 6 under the old epoch
        deadline = time.time() + 20
        while True:
            r = await request(pub, {"op": "publish", "topic": "roll",
                                    "data": {"after": 1}})
            if r["op"] == "published":
                break
            assert r["code"] == "internal", r
            assert time.time() < deadline
            await asyncio.sleep(0.1)
        # Node b may still be reconnecting to the restarted Redis: its
        # history read answers an error until then.
        while True:
            st, _, body = http_request(b, "GET", "/api/history/roll")
            if st == 200:
                break
            assert time.time() < deadline, (st, body)
            await asyncio.sleep(0.1)
        new = json.loads(body)["epoch"]
        assert new != old
        assert r["offset"] == 1
        acks.append((new, 1, {"after": 1}))
        for rd in readers:
            await rd.wait(lambda x: x.changes and
                          x.by_epoch.get(new) == [(1, {"after": 1})])
            assert rd.changes[-1]["epoch"] == new
            rd.check_gapless()
        audit(b, "roll", acks, readers)
        # resuming with the old epoch is not a recovery
        ws = await connect(c)
        r = await subscribe(ws, "roll", {"epoch": old, "offset": 10})
        assert r["recovered"] is False and r["epoch"] == new
        m = json.loads(await ws.recv())
        assert m["offset"] == 1 and m["data"] == {"after": 1}
    run(main())
    m = chorus_helpers.metrics_values(a)
    assert m.get("chorus_redis_epoch_changes_total", 0) >= 1


def test_redis_killed_without_persistence(make_cluster):
    (redis,), nodes = make_cluster(3, history_size=100000)
    a, b, c = nodes

    async def main():
        readers = []
        for node in nodes:
            ws = await connect(node)
            r = await subscribe(ws, "gone")
            readers.append(Reader(ws, "gone", r["epoch"]))
        acks, errors = [], []
        stop = asyncio.Event()
        task = asyncio.ensure_future(publish_stream(b, "gone", 100000, acks,
                                                    errors, pause=0.002,
                                                    stop=stop))
        await asyncio.sleep(0.7)
        old = readers[0].epoch  # a reader's epoch follows the changes
        redis.kill9()
        await asyncio.sleep(0.5)
        redis.start()
        # Wait for an ack under the new epoch (the node must reconnect
        # first, slowly under a sanitizer).
        deadline = time.time() + 30
        while not acks or acks[-1][0] == old:
            assert time.time() < deadline, "no ack under a new epoch"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        stop.set()
        await task
        new = acks[-1][0]
        assert new != acks[0][0], "the epoch changed"
        for rd in readers:
            await rd.wait(lambda r: r.epoch == new and
                          r.by_epoch[new] and
                          r.by_epoch[new][-1][0] == acks[-1][1])
            rd.check_gapless()
        audit(c, "gone", acks, readers)
    run(main())


def test_node_killed_under_load_clients_resume_elsewhere(make_cluster):
    _, (a, b, c) = make_cluster(3)

    async def main():
        # subscribers on A, publisher on C
        subs = []
        for _ in range(4):
            ws = await connect(a)
            r = await subscribe(ws, "load")
            subs.append(Reader(ws, "load", r["epoch"]))
        acks, errors = [], []
        stop = asyncio.Event()
        task = asyncio.ensure_future(publish_stream(c, "load", 100000, acks,
                                                    errors, pause=0.002,
                                                    stop=stop))
        await asyncio.sleep(0.8)
        a.kill9()
        await asyncio.sleep(0.3)
        resumed = []
        for rd in subs:
            rd.task.cancel()
            msgs = rd.by_epoch[rd.epoch]
            last = msgs[-1][0] if msgs else 0
            ws = await connect(b)
            r = await subscribe(ws, "load", {"epoch": rd.epoch,
                                             "offset": last})
            assert r["recovered"] is True, r
            nr = Reader(ws, "load", r["epoch"])
            nr.by_epoch[r["epoch"]] = list(msgs)
            resumed.append(nr)
        await asyncio.sleep(0.5)
        stop.set()
        await task
        assert not errors, errors[:3]
        final = acks[-1][1]
        for rd in resumed:
            await rd.wait(lambda r: r.by_epoch[r.epoch] and
                          r.by_epoch[r.epoch][-1][0] == final)
            rd.check_gapless()
            assert [o for o, _ in rd.by_epoch[rd.epoch]] == \
                list(range(1, final + 1))
    run(main())


def test_cli_sub_reports_an_epoch_change_as_a_gap(make_cluster, workdir):
    """chorus sub stays connected through a Redis restart and handles the
    unsolicited `subscribed` like a resume that came back
    recovered: false: it says so and prints the new epoch's messages."""
    import os
    import subprocess
    from conftest import CHORUS_CLI, run_cli
    (redis,), (a, b) = make_cluster(2)
    out_path = os.path.join(workdir, "sub.out")
    err_path = os.path.join(workdir, "sub.err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([CHORUS_CLI, "sub", "--url", a.url,
                                 "--reconnect", "ep"], stdout=out,
                                stderr=err)

    def events():
        with open(out_path) as f:
            return [json.loads(x) for x in f.read().splitlines()]

    def wait(pred, what):
        deadline = time.time() + 20
        while not pred():
            assert time.time() < deadline, (what, events())
            time.sleep(0.05)

    def pub(*items):
        data = "".join(json.dumps(x) + "\n" for x in items).encode()
        deadline = time.time() + 20
        while True:
            r = run_cli("pub", "--url", b.url, "ep", "-", input=data)
            if r.returncode == 0:
                return
            assert time.time() < deadline, r
            time.sleep(0.2)
    try:
        wait(lambda: http_request(a, "GET", "/metrics")[2].find(
            b"chorus_subscriptions 1") >= 0, "subscribed")
        pub(1, 2, 3)
        wait(lambda: len(events()) == 3, "three messages")
        redis.kill9()
        redis.start()
        pub("x", "y")
        wait(lambda: len(events()) == 5, "the new epoch's messages")
        time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(10)
    ev = events()
    assert [(e["offset"], e["data"]) for e in ev] == \
        [(1, 1), (2, 2), (3, 3), (1, "x"), (2, "y")], ev
    with open(err_path) as f:
        err = f.read()
    assert "chorus: topic ep: history gap (recovered: false)" in err, err


def test_cut_off_past_the_grace_period_closes_clients_with_1001(make_cluster):
    """Redis gone for good: /healthz 503 'redis unavailable' at once,
    subscribers stay connected through the grace period (15 s), then are
    closed with 1001, spread over a few seconds rather than all at once."""
    (redis,), (a,) = make_cluster(1, threads=2)

    async def main():
        subs = []
        for i in range(20):
            ws = await connect(a)
            await subscribe(ws, f"cut{i % 3}")
            subs.append(ws)
        redis.kill9()
        t0 = time.time()
        while http_request(a, "GET", "/healthz")[0] != 503:
            assert time.time() - t0 < 5
            await asyncio.sleep(0.05)
        st, _, body = http_request(a, "GET", "/healthz")
        assert body == b"redis unavailable\n", body
        # a publish is refused, and nobody is closed yet
        r = await request(subs[0], {"op": "publish", "topic": "cut0",
                                    "data": 1})
        assert r["op"] == "error" and r["code"] == "internal", r
        await asyncio.sleep(8)
        assert all(ws.close_code is None for ws in subs)

        async def closed_at(ws):
            code = await chorus_helpers.wait_close_code(ws, timeout=30)
            return code, time.time()
        done = await asyncio.gather(*(closed_at(ws) for ws in subs))
        assert all(code == 1001 for code, _ in done), done
        times = sorted(t for _, t in done)
        assert times[0] - t0 >= 14, times[0] - t0
        assert times[-1] - times[0] >= 2, "closes spread over seconds"
    run(main())


def test_rediss_refused_at_start(workdir):
    import subprocess
    from cluster_helpers import cluster_node
    from conftest import CHORUSD
    b = cluster_node(workdir, "tls", ["rediss://127.0.0.1:6380"])
    r = subprocess.run([CHORUSD, "-c", b.write_config()],
                       capture_output=True, timeout=10)
    assert r.returncode == 1
    assert b"rediss:// (TLS) is not supported" in r.stderr, r.stderr
