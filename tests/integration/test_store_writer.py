"""One thread writes the store (issue 12).

- No event loop ever syncs a history file: subscribing to new topics,
  reading and publishing on threads = 2 leave the loops' count of syncs
  (chorus_history_syncs_total{thread="other"}) at zero.
- Reading or subscribing to topics never published to stores nothing:
  10,000 GETs and 10,000 subscribes to distinct unused topics add no topic
  row and grow the database files by less than 64 KiB (in fact by nothing).
- A subscriber of an empty topic that resumes after the first publishes
  gets `recovered: true`: an unused topic reports the database's epoch,
  which its first message is stored under.
- Fail-stop: an I/O error on COMMIT ends chorusd (SIGABRT after logging
  the cause) without telling the publisher `internal`; a full disk at
  COMMIT answers `internal` and the next publish takes the same offset.
  Both faults are injected with CHORUS_FAULT_COMMIT=<ioerr|full>:<topic>.
"""
import json
import os
import resource
import signal
import sqlite3
import time
import http.client

from chorus_helpers import RawWS, metrics_values
from conftest import Broker
from wsraw import OP_TEXT, build_frame

SYNCS_OTHER = 'chorus_history_syncs_total{thread="other"}'
SYNCS_WRITER = 'chorus_history_syncs_total{thread="writer"}'


def db_bytes(path):
    return sum(os.path.getsize(path + s) for s in ("", "-wal")
               if os.path.exists(path + s))


def topic_rows(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM topics").fetchone()[0]
    finally:
        db.close()


def subscribe_many(port, names, since=None):
    """Pipelines one subscribe per name on a new connection; returns the
    connection and the replies, in order."""
    ws = RawWS(port)
    frames = b"".join(
        build_frame(OP_TEXT, json.dumps(
            {"op": "subscribe", "topic": n, "id": i,
             **({"since": since} if since else {})}).encode())
        for i, n in enumerate(names))
    ws.sock.sendall(frames)
    return ws, [ws.recv_json() for _ in names]


def publish(ws, topic, data, id=1):
    ws.send_json({"op": "publish", "topic": topic, "id": id, "data": data})
    while True:
        r = ws.recv_json()
        if r.get("id") == id:
            return r


def test_no_loop_thread_syncs(make_broker):
    # durability = full: every commit syncs the WAL, so the writer's count
    # grows with each publish and a loop's would show at once.
    b = make_broker(threads=2, durability="full")
    conns = []
    for k in range(4):  # consecutive connections land on both loops
        ws, replies = subscribe_many(b.port,
                                     [f"sync.{k}.{i}" for i in range(50)])
        assert all(r["op"] == "subscribed" and r["offset"] == 0
                   for r in replies), replies[:3]
        conns.append(ws)
    pub = RawWS(b.port)
    for i in range(20):
        assert publish(pub, f"sync.{i % 4}.{i}", {"i": i}, id=i)["op"] == \
            "published"
    for i in range(20):
        st, _, body = _get(b, f"/api/history/sync.{i % 4}.{i}")
        assert st == 200 and json.loads(body)["offset"] == 1, body
    m = metrics_values(b)
    assert m[SYNCS_WRITER] >= 20, m[SYNCS_WRITER]
    assert m[SYNCS_OTHER] == 0, m[SYNCS_OTHER]
    for ws in conns + [pub]:
        ws.close()
    # only the published topics have rows
    assert topic_rows(b.db_path) == 20


def _get(b, path, conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    if conn is None:
        c.close()
    return r.status, r.headers, body


def test_unused_topics_leave_the_database_as_it_was(make_broker):
    b = make_broker()
    pub = RawWS(b.port)
    assert publish(pub, "used", {"x": 1})["op"] == "published"
    time.sleep(1.2)  # let the writer's timed checkpoint settle the files
    rows, size = topic_rows(b.db_path), db_bytes(b.db_path)

    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    for i in range(10_000):
        st, _, body = _get(b, f"/api/history/unused.get.{i}", conn)
        assert st == 200, body
        h = json.loads(body)
        assert h["offset"] == 0 and h["messages"] == [], h
    conn.close()
    for k in range(10):  # max_subscriptions_per_connection is 1000
        ws, replies = subscribe_many(
            b.port, [f"unused.sub.{k}.{i}" for i in range(1000)])
        assert all(r["op"] == "subscribed" for r in replies)
        ws.close()

    assert topic_rows(b.db_path) == rows
    grown = db_bytes(b.db_path) - size
    assert grown < 64 * 1024, grown
    pub.close()


def test_empty_topic_resumes_recovered(make_broker):
    b = make_broker()
    ws, (s,) = subscribe_many(b.port, ["empty.t"])
    assert s["op"] == "subscribed" and s["offset"] == 0, s
    epoch = s["epoch"]
    st, _, body = _get(b, "/api/history/empty.t")
    assert json.loads(body)["epoch"] == epoch  # the same, from any reader
    ws.close()

    pub = RawWS(b.port)
    for i in range(3):
        r = publish(pub, "empty.t", {"i": i}, id=i)
        assert r["op"] == "published" and r["offset"] == i + 1, r
    ws, (s,) = subscribe_many(b.port, ["empty.t"],
                              since={"epoch": epoch, "offset": 0})
    assert s["recovered"] is True and s["epoch"] == epoch, s
    assert s["offset"] == 3, s
    got = [ws.recv_json() for _ in range(3)]
    assert [m["offset"] for m in got] == [1, 2, 3], got
    ws.close()
    pub.close()

    b.restart()  # the epoch is stored: it survives a restart
    ws, (s,) = subscribe_many(b.port, ["empty.t"],
                              since={"epoch": epoch, "offset": 3})
    assert s["recovered"] is True and s["epoch"] == epoch, s
    ws.close()


def test_io_error_on_commit_stops_the_broker(workdir, monkeypatch):
    monkeypatch.setenv("CHORUS_FAULT_COMMIT", "ioerr:fs.io")
    old_core = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, old_core[1]))
    try:
        b = Broker(workdir).start()
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, old_core)
    try:
        pub = RawWS(b.port)
        assert publish(pub, "fs.ok", {"i": 0})["op"] == "published"
        pub.send_json({"op": "publish", "topic": "fs.io", "id": 7,
                       "data": {"lost": True}})
        # never `internal`: the connection ends with the process
        replies = []
        try:
            while True:
                replies.append(pub.recv_json())
        except (EOFError, OSError):
            pass
        assert all(r.get("id") != 7 for r in replies), replies
        assert b.proc.wait(10) == -signal.SIGABRT
        log = b.read_log()
        assert "COMMIT failed with an I/O error" in log, log[-2000:]
        assert "fail-stop" in log

        monkeypatch.delenv("CHORUS_FAULT_COMMIT")
        b.start()
        pub = RawWS(b.port)
        r = publish(pub, "fs.io", {"after": 1})
        # the failed batch never reached the file: its offset is free
        assert r["op"] == "published" and r["offset"] == 1, r
        assert publish(pub, "fs.ok", {"i": 1})["offset"] == 2
        pub.close()
        assert b.stop() == 0
    finally:
        b.stop()


def test_full_disk_on_commit_answers_internal(make_broker, monkeypatch):
    monkeypatch.setenv("CHORUS_FAULT_COMMIT", "full:fs.full")
    b = make_broker()
    pub = RawWS(b.port)
    r = publish(pub, "fs.full", {"i": 0}, id=1)
    assert r["op"] == "error" and r["code"] == "internal", r
    r = publish(pub, "fs.full", {"i": 1}, id=2)
    assert r["op"] == "published" and r["offset"] == 1, r
    assert b.proc.poll() is None
    st, _, body = _get(b, "/api/history/fs.full")
    assert [m["data"] for m in json.loads(body)["messages"]] == [{"i": 1}]
    pub.close()
