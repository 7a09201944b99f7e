"""Schema migration: a version 1 history database (one row per message, as
written by brokers before record batches) is opened by the current broker,
migrated to version 2 (one row per topic per commit) and replays its old
messages with the same offsets, timestamps, data and epoch; new publishes
continue its offsets, and retention works across old and new rows."""
import json
import os
import sqlite3
import time

from conftest import http_request

import chorus_helpers
from chorus_helpers import expect_silence, recv_messages, subscribe
from chorus_helpers import connect_closing as connect
from chorus_helpers import run_closing as run

EPOCH_A = "0123456789abcdef0123456789abcdef"
EPOCH_B = "fedcba9876543210fedcba9876543210"

V1_SCHEMA = """
CREATE TABLE topics(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  epoch TEXT NOT NULL,
  last_offset INTEGER NOT NULL DEFAULT 0);
CREATE TABLE messages(
  topic_id INTEGER NOT NULL,
  "offset" INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY(topic_id, "offset")) WITHOUT ROWID;
"""

TS0 = int(time.time() * 1000) - 60000  # within the default history_ttl


def data_of(topic_id, off):
    return {"t": topic_id, "n": off, "s": "h\u00e9llo \u2603"}


def make_v1(path):
    """mig.a: offsets 1..40 were published, 1..10 trimmed (so 11..40
    remain); mig.b: 1..3; mig.c: a topic whose messages all expired."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size=8192")  # not ours: opening must keep it
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO topics VALUES(1, 'mig.a', ?, 40)", (EPOCH_A,))
    db.execute("INSERT INTO topics VALUES(2, 'mig.b', ?, 3)", (EPOCH_B,))
    db.execute("INSERT INTO topics VALUES(3, 'mig.c', ?, 7)", ("a" * 32,))
    rows = [(1, o, TS0 + o, json.dumps(data_of(1, o), ensure_ascii=False,
                                       separators=(",", ":")))
            for o in range(11, 41)]
    rows += [(2, o, TS0 + 100 + o, json.dumps(data_of(2, o)))
             for o in range(1, 4)]
    db.executemany("INSERT INTO messages VALUES(?, ?, ?, ?)", rows)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def history(broker, topic, since=0, limit=1000):
    st, _, body = http_request(broker, "GET",
                               f"/api/history/{topic}?since={since}"
                               f"&limit={limit}")
    assert st == 200, body
    return json.loads(body)


def test_v1_database_migrates_and_replays(make_broker, workdir):
    path = os.path.join(workdir, "chorus.db")
    make_v1(path)
    broker = make_broker(history_size=1000)

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    # v3: the database's epoch, drawn at the migration; old topics keep
    # their own (checked below)
    (db_epoch,) = db.execute("SELECT epoch FROM meta").fetchone()
    assert len(db_epoch) == 32 and db_epoch != EPOCH_A
    assert db.execute("SELECT count(*) FROM sqlite_master "
                      "WHERE name = 'messages'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 33
    assert db.execute("PRAGMA page_size").fetchone()[0] == 8192  # kept
    db.close()

    h = history(broker, "mig.a")
    assert h["epoch"] == EPOCH_A and h["offset"] == 40, h
    assert [(m["offset"], m["ts"], m["data"]) for m in h["messages"]] == \
        [(o, TS0 + o, data_of(1, o)) for o in range(11, 41)]
    assert [m["offset"] for m in history(broker, "mig.a", 35, 3)
            ["messages"]] == [36, 37, 38]

    async def main():
        sub = await connect(broker)
        # 10 is the last trimmed offset: everything after it is there.
        s = await subscribe(sub, "mig.a", {"epoch": EPOCH_A, "offset": 10})
        assert s["recovered"] is True and s["offset"] == 40, s
        got = await recv_messages(sub, "mig.a", 30)
        assert [(m["offset"], m["ts"], m["data"]) for m in got] == \
            [(o, TS0 + o, data_of(1, o)) for o in range(11, 41)]
        await expect_silence(sub)

        sub2 = await connect(broker)
        s = await subscribe(sub2, "mig.a", {"epoch": EPOCH_A, "offset": 9})
        assert s["recovered"] is False, s
        assert [m["offset"] for m in
                await recv_messages(sub2, "mig.a", 30)][0] == 11

        sub3 = await connect(broker)
        s = await subscribe(sub3, "mig.b", {"epoch": EPOCH_B, "offset": 1})
        assert s["recovered"] is True and s["offset"] == 3, s
        got = await recv_messages(sub3, "mig.b", 2)
        assert [(m["offset"], m["data"]) for m in got] == \
            [(2, data_of(2, 2)), (3, data_of(2, 3))]

        # A topic with no messages left keeps its epoch and offset.
        sub4 = await connect(broker)
        s = await subscribe(sub4, "mig.c", {"epoch": "a" * 32, "offset": 7})
        assert s["recovered"] is True and s["offset"] == 7, s

        # New publishes continue the old offsets and reach the replayer.
        pub = await connect(broker)
        for i in range(41, 46):
            r = await chorus_helpers.publish(pub, "mig.a", {"new": i})
            assert r["offset"] == i, r
        got = await recv_messages(sub, "mig.a", 5)
        assert [m["offset"] for m in got] == list(range(41, 46))
        r = await chorus_helpers.publish(pub, "mig.c", {"new": 8})
        assert r["offset"] == 8, r
    run(main())

    h = history(broker, "mig.a", 39)
    assert [m["offset"] for m in h["messages"]] == [40, 41, 42, 43, 44, 45]
    assert h["messages"][-1]["data"] == {"new": 45}


def test_v1_database_retention_after_migration(make_broker, workdir):
    """history_size 5 on a migrated database: old one-message rows and new
    batches are trimmed alike, and `recovered` follows the boundary."""
    path = os.path.join(workdir, "chorus.db")
    make_v1(path)
    broker = make_broker(history_size=5)

    async def main():
        pub = await connect(broker)
        for i in range(41, 44):
            assert (await chorus_helpers.publish(pub, "mig.a", {"k": i}))[
                "offset"] == i
    run(main())

    deadline = time.time() + 10
    while time.time() < deadline:
        offs = [m["offset"] for m in history(broker, "mig.a")["messages"]]
        if offs == [39, 40, 41, 42, 43]:
            break
        time.sleep(0.1)
    assert offs == [39, 40, 41, 42, 43], offs

    async def check():
        sub = await connect(broker)
        s = await subscribe(sub, "mig.a", {"epoch": EPOCH_A, "offset": 38})
        assert s["recovered"] is True, s
        assert [m["offset"] for m in await recv_messages(sub, "mig.a", 5)] \
            == [39, 40, 41, 42, 43]
        sub2 = await connect(broker)
        s = await subscribe(sub2, "mig.a", {"epoch": EPOCH_A, "offset": 37})
        assert s["recovered"] is False, s
    run(check())


def test_new_database_is_v3_with_4k_pages(broker):
    db = sqlite3.connect(broker.db_path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert db.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
