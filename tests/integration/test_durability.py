"""Durability of the SQLite history: graceful restart, kill -9 during a
burst of pipelined publishes (with durability normal and full), refusal to
start on a bad db_path, reopening a database, and a write failure at run
time (RLIMIT_FSIZE via prlimit) that must never produce a false ack."""
import asyncio
import json
import os
import subprocess
import time

import pytest
import websockets

from conftest import CHORUSD, Broker, dumps, http_request, \
    sanitizer_report

from chorus_helpers import WAIT, expect_silence, recv_json, recv_messages, \
    request, subscribe
from chorus_helpers import connect_closing as connect
from chorus_helpers import run_closing as run


async def publish(ws, topic, data, timeout=WAIT):
    """Returns the `published` or `error` reply."""
    return await request(ws, {"op": "publish", "topic": topic, "data": data},
                         timeout)


def read_history(broker, topic, page=250):
    """Every retained message via GET /api/history, paged with since and
    limit. Returns (reply of the first page, [messages])."""
    since = 0
    msgs = []
    first = None
    while True:
        st, _, body = http_request(
            broker, "GET", f"/api/history/{topic}?since={since}&limit={page}")
        assert st == 200, (st, body)
        r = json.loads(body)
        first = first or r
        assert r["epoch"] == first["epoch"], r
        page_msgs = r["messages"]
        assert len(page_msgs) <= page
        for m in page_msgs:
            assert m["offset"] > since, (since, m)
        msgs += page_msgs
        if len(page_msgs) < page:
            return first, msgs
        since = page_msgs[-1]["offset"]


# ------------------------------------------------------- graceful restart

def test_graceful_restart_keeps_epoch_and_offsets(broker):
    topic = "du.restart"

    async def before():
        pub = await connect(broker)
        for i in range(1, 6):
            r = await publish(pub, topic, {"n": i})
            assert r["op"] == "published" and r["offset"] == i, r
        sub = await connect(broker)
        s = await subscribe(sub, topic)
        return s["epoch"]
    epoch = run(before())
    broker.restart()

    async def after():
        sub = await connect(broker)
        s = await subscribe(sub, topic, {"epoch": epoch, "offset": 2})
        assert s["epoch"] == epoch, s
        assert s["recovered"] is True and s["offset"] == 5, s
        got = await recv_messages(sub, topic, 3)
        assert [m["offset"] for m in got] == [3, 4, 5]
        assert [m["data"] for m in got] == [{"n": 3}, {"n": 4}, {"n": 5}]
        await expect_silence(sub)
        pub = await connect(broker)
        r = await publish(pub, topic, {"n": 6})
        assert r["op"] == "published" and r["offset"] == 6, r
        m = (await recv_messages(sub, topic, 1))[0]
        assert m["offset"] == 6 and m["data"] == {"n": 6}
    run(after())
    first, msgs = read_history(broker, topic)
    assert first["epoch"] == epoch and first["offset"] == 6
    assert [m["offset"] for m in msgs] == [1, 2, 3, 4, 5, 6]


def test_reopened_database_keeps_history(make_broker):
    topic = "du.reopen"
    b1 = make_broker()
    for i in range(1, 4):
        st, _, body = http_request(b1, "POST", f"/api/publish/{topic}",
                                   dumps({"v": i}).encode(),
                                   {"Content-Type": "application/json"})
        assert st == 200 and json.loads(body)["offset"] == i, body
    first1, msgs1 = read_history(b1, topic)
    assert b1.stop() == 0, b1.read_log()
    assert os.path.getsize(b1.db_path) > 0

    b2 = make_broker()   # same workdir, same db_path, new process and port
    assert b2.db_path == b1.db_path
    first2, msgs2 = read_history(b2, topic)
    assert first2["epoch"] == first1["epoch"]
    assert first2["offset"] == 3
    assert msgs2 == msgs1
    assert [m["data"] for m in msgs2] == [{"v": 1}, {"v": 2}, {"v": 3}]
    st, _, body = http_request(b2, "POST", f"/api/publish/{topic}", b"4",
                               {"Content-Type": "application/json"})
    assert st == 200 and json.loads(body)["offset"] == 4, body


# ------------------------------------------------------ kill -9 mid-burst

@pytest.mark.parametrize("durability", ["normal", "full"])
def test_kill9_during_burst_loses_no_acked_message(make_broker, durability):
    broker = make_broker(durability=durability, history_size=1000000)
    topic = "du.crash"
    npub = 3

    async def burst():
        pubs = [await connect(broker) for _ in range(npub)]
        acked = {}
        killed = asyncio.Event()

        async def publisher(k):
            ws = pubs[k]
            window = asyncio.Semaphore(64)
            sent = {}

            async def sender():
                i = 0
                while not killed.is_set():
                    await window.acquire()
                    d = {"p": k, "i": i, "pad": "z" * (i % 50)}
                    sent[i] = d
                    try:
                        await ws.send(dumps({"op": "publish", "id": i,
                                             "topic": topic, "data": d}))
                    except websockets.ConnectionClosed:
                        return
                    i += 1

            async def receiver():
                while True:
                    try:
                        r = await recv_json(ws, 10)
                    except websockets.ConnectionClosed:
                        return
                    assert r.get("op") == "published", r
                    assert r["offset"] not in acked, r
                    acked[r["offset"]] = sent[r["id"]]
                    window.release()
            st = asyncio.create_task(sender())
            try:
                await receiver()
            finally:
                st.cancel()
                await asyncio.gather(st, return_exceptions=True)

        tasks = [asyncio.create_task(publisher(k)) for k in range(npub)]
        deadline = time.monotonic() + 10
        while len(acked) < 1500 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            for t in tasks:
                if t.done() and t.exception():
                    raise t.exception()
        assert len(acked) >= 200, f"only {len(acked)} acks in 10 s"
        broker.kill9()          # mid-burst: publishes are in flight
        killed.set()
        for w in pubs:
            w.transport.abort()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return dict(acked)

    acked = run(burst())
    assert broker.proc.returncode == -9
    broker.start()
    _, msgs = read_history(broker, topic)
    stored = {m["offset"]: m["data"] for m in msgs}
    offs = [m["offset"] for m in msgs]
    newest = max(offs) if offs else 0
    assert offs == list(range(1, newest + 1)), "history has gaps"
    missing = [o for o in acked if o not in stored]
    assert not missing, (f"{len(missing)} acked messages lost, e.g. "
                         f"{sorted(missing)[:10]}")
    wrong = [o for o in acked if stored[o] != acked[o]]
    assert not wrong, f"acked offsets with other data: {wrong[:10]}"
    assert newest >= max(acked)

    async def after():
        pub = await connect(broker)
        r = await publish(pub, topic, "after")
        assert r["op"] == "published" and r["offset"] == newest + 1, \
            (r, newest)
        sub = await connect(broker)
        s = await subscribe(sub, topic, {"epoch": "0" * 32, "offset": 0})
        assert s["offset"] == newest + 1
        got = await recv_messages(sub, topic, newest + 1)
        assert [m["offset"] for m in got] == list(range(1, newest + 2))
        for m in got[:-1]:
            assert m["data"] == stored[m["offset"]]
        assert got[-1]["data"] == "after"
    run(after())
    print(f"{durability}: {len(acked)} acked, {newest} stored")


# ------------------------------------------------------ startup refusal

def start_refused(workdir, db_path, name):
    """Runs chorusd on db_path and expects a quick non-zero exit with a
    message on stderr naming the file."""
    b = Broker(workdir, db_path=db_path)
    cfg = b.write_config()
    t0 = time.monotonic()
    p = subprocess.run([CHORUSD, "-c", cfg], capture_output=True, timeout=10)
    took = time.monotonic() - t0
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode != 0, f"{name}: chorusd started\n{err}"
    assert sanitizer_report(err) is None, err
    assert took < 5, f"{name}: took {took:.1f} s to fail"
    assert db_path in err, f"{name}: stderr does not name {db_path}:\n{err}"
    return err


def test_refuses_corrupt_database(workdir):
    path = os.path.join(workdir, "corrupt.db")
    with open(path, "wb") as f:
        f.write(os.urandom(64 * 1024))
    before = open(path, "rb").read()
    start_refused(workdir, path, "corrupt file")
    assert open(path, "rb").read() == before, "corrupt file was modified"


def test_refuses_directory_as_database(workdir):
    path = os.path.join(workdir, "adir")
    os.mkdir(path)
    start_refused(workdir, path, "directory")


def test_refuses_database_in_missing_directory(workdir):
    path = os.path.join(workdir, "no", "such", "dir", "chorus.db")
    start_refused(workdir, path, "missing directory")
    assert not os.path.exists(os.path.dirname(path))


def test_refuses_non_sqlite_text_file(workdir):
    path = os.path.join(workdir, "notes.txt")
    with open(path, "w") as f:
        f.write("this is not a database\n" * 200)
    start_refused(workdir, path, "text file")


# ------------------------------------------------- write failure at run time

def db_files_max_size(db_path):
    sizes = [0]
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            sizes.append(os.path.getsize(db_path + suffix))
        except OSError:
            pass
    return max(sizes)


def prlimit_fsize(pid, value):
    subprocess.run(["prlimit", f"--pid={pid}", f"--fsize={value}"],
                   check=True, timeout=10)


def test_write_failure_never_false_ack(make_broker):
    # warn: keeps the log (stderr to a file, also under RLIMIT_FSIZE) small.
    broker = make_broker(log_level="warn", history_size=1000000)
    topic = "du.efbig"
    pid = broker.proc.pid
    big = "B" * 200_000

    async def main():
        pub = await connect(broker)
        sub = await connect(broker)
        s = await subscribe(sub, topic)
        epoch = s["epoch"]
        acked = {}
        for i in range(3):
            r = await publish(pub, topic, {"i": i, "pad": "s"})
            assert r["op"] == "published", r
            acked[r["offset"]] = {"i": i, "pad": "s"}
        got = await recv_messages(sub, topic, 3)
        assert [m["offset"] for m in got] == [1, 2, 3]

        limit = max(db_files_max_size(broker.db_path),
                    os.path.getsize(broker.log_path)) + 1024 * 1024
        prlimit_fsize(pid, f"{limit}:unlimited")
        failed = []
        i = 3
        for _ in range(200):
            d = {"i": i, "pad": big}
            i += 1
            try:
                r = await publish(pub, topic, d, timeout=10)
            except websockets.ConnectionClosed:
                rc = broker.proc.wait(5)
                raise AssertionError(
                    f"connection lost during a write failure; chorusd "
                    f"exit {rc} (SIGXFSZ is -25)\n{broker.read_log()[-2000:]}")
            if r["op"] == "published":
                assert r["offset"] not in acked
                acked[r["offset"]] = d
                continue
            assert r["op"] == "error" and r["code"] == "internal", r
            failed.append(d)
            if len(failed) >= 3:
                break
        assert broker.proc.poll() is None, \
            f"chorusd died: {broker.proc.returncode}"
        assert failed, "no publish failed under RLIMIT_FSIZE"
        last_acked = max(acked)
        assert sorted(acked) == list(range(1, last_acked + 1))

        # The live subscriber got exactly the acked ones, nothing for the
        # failed publishes.
        got = await recv_messages(sub, topic, last_acked - 3, timeout=10)
        assert [m["offset"] for m in got] == list(range(4, last_acked + 1))
        for m in got:
            assert m["data"] == acked[m["offset"]]
        await expect_silence(sub, 0.5)

        # Replay of what was stored still works while writes fail.
        rs = await connect(broker)
        s2 = await subscribe(rs, topic, {"epoch": epoch, "offset": 0})
        assert s2["recovered"] is True and s2["offset"] == last_acked, s2
        got = await recv_messages(rs, topic, last_acked, timeout=10)
        assert [m["offset"] for m in got] == list(range(1, last_acked + 1))
        for m in got:
            assert m["data"] == acked[m["offset"]]
        await expect_silence(rs, 0.3)
        first, msgs = await asyncio.to_thread(read_history, broker, topic)
        assert first["offset"] == last_acked, first
        assert {m["offset"]: m["data"] for m in msgs} == acked

        # Writes work again once the limit is lifted; offsets go on from
        # the last acked one.
        prlimit_fsize(pid, "unlimited:unlimited")
        r = None
        for attempt in range(20):
            r = await publish(pub, topic, {"after": attempt}, timeout=10)
            if r["op"] == "published":
                break
            await asyncio.sleep(0.25)
        assert r["op"] == "published", f"publishes still fail: {r}"
        assert r["offset"] == last_acked + 1, (r, last_acked)
        assert attempt == 0, f"{attempt} publishes failed after the lift"
        acked[r["offset"]] = {"after": 0}
        m = (await recv_messages(sub, topic, 1))[0]
        assert m["offset"] == last_acked + 1, m
        r = await publish(pub, topic, {"i": "big", "pad": big}, timeout=10)
        assert r["op"] == "published" and r["offset"] == last_acked + 2, r
        acked[r["offset"]] = {"i": "big", "pad": big}
        first, msgs = await asyncio.to_thread(read_history, broker, topic)
        assert {m["offset"]: m["data"] for m in msgs} == acked
        return len(failed), last_acked
    nfail, last = run(main())
    print(f"write failure: {nfail} failed after {last} acked")
    assert broker.stop() == 0
    # Everything acked is still there after a restart.
    broker.start()
    first, msgs = read_history(broker, topic)
    assert [m["offset"] for m in msgs] == list(range(1, last + 3))
