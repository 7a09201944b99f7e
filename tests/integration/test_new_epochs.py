"""chorusd --new-epochs (README, "Backup"). A database restored from an
older copy keeps its topics' epochs, so the offsets issued after the copy
are issued again, to other messages: a client resuming from such an
offset is told recovered: true and silently misses them. --new-epochs,
run on the stopped broker's database, gives the database and every topic
a fresh epoch, so that the same client is told recovered: false and gets
everything retained. A running broker's database is refused, unchanged."""
import json
import os
import shutil
import sqlite3
import subprocess

from chorus_helpers import expect_silence, recv_messages, subscribe
from chorus_helpers import connect_closing as connect
from chorus_helpers import run_closing as run
from conftest import CHORUSD, http_request


def new_epochs(broker):
    return subprocess.run([CHORUSD, "-c", broker.write_config(),
                           "--new-epochs"], capture_output=True, text=True,
                          timeout=30)


def restore(broker, copy):
    """The README's restore: the copy in place, no -wal or -shm left."""
    shutil.copyfile(copy, broker.db_path)
    for ext in ("-wal", "-shm"):
        if os.path.exists(broker.db_path + ext):
            os.remove(broker.db_path + ext)


def history(broker, topic):
    st, _, body = http_request(broker, "GET", f"/api/history/{topic}")
    assert st == 200, body
    return json.loads(body)


def publish_all(broker, topic, datas):
    """Publishes over HTTP, whose answer names the epoch too."""
    out = []
    for d in datas:
        st, _, body = http_request(broker, "POST", f"/api/publish/{topic}",
                                   json.dumps(d).encode())
        assert st == 200, body
        r = json.loads(body)
        out.append((r["epoch"], r["offset"]))
    return out


async def resume(broker, topic, since, replayed):
    """Subscribes with since; returns the reply and the (offset, data) of
    the replayed messages, which must be `replayed` many."""
    ws = await connect(broker)
    s = await subscribe(ws, topic, since)
    got = await recv_messages(ws, topic, replayed)
    await expect_silence(ws, 0.5)
    await ws.close()
    return s, [(m["offset"], m["data"]) for m in got]


def test_restored_copy_gets_new_epochs(make_broker, workdir):
    b = make_broker()
    copy = os.path.join(workdir, "copy.db")

    async def subscribe_once(topic):
        ws = await connect(b)
        s = await subscribe(ws, topic)
        await ws.close()
        return s

    acks = publish_all(b, "news", ["a1", "a2", "a3"])
    quiet = run(subscribe_once("quiet"))  # never published to
    epoch = acks[0][0]
    assert acks == [(epoch, 1), (epoch, 2), (epoch, 3)]
    assert quiet["offset"] == 0
    # An online backup, as sqlite3's .backup makes one.
    with sqlite3.connect(b.db_path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    assert publish_all(b, "news", ["lost4", "lost5"]) == \
        [(epoch, 4), (epoch, 5)]
    seen = {"epoch": epoch, "offset": 5}  # a client got this far

    # While the broker runs, its database is refused and left as it is.
    r = new_epochs(b)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "another process has it open" in r.stderr, r.stderr
    assert history(b, "news")["epoch"] == epoch
    assert publish_all(b, "news", ["b6"]) == [(epoch, 6)]
    b.stop()

    # Restored as it is: offsets 4 and 5 go to other messages under the
    # same epoch, and the client that saw the lost ones misses them.
    restore(b, copy)
    b.start()
    assert publish_all(b, "news", ["c4", "c5"]) == \
        [(epoch, 4), (epoch, 5)]
    s, got = run(resume(b, "news", seen, 0))
    assert s["recovered"] is True and got == [], (s, got)
    b.stop()

    # Restored, then --new-epochs: the same client learns that its
    # position is gone and gets everything retained.
    restore(b, copy)
    r = new_epochs(b)
    assert r.returncode == 0, r.stderr
    assert "the database and its 1 topic have a new epoch" in r.stdout
    b.start()
    acks = publish_all(b, "news", ["d4", "d5"])
    fresh = acks[0][0]
    assert fresh != epoch and len(fresh) == 32
    assert acks == [(fresh, 4), (fresh, 5)]
    s, got = run(resume(b, "news", seen, 5))
    assert s["recovered"] is False and s["epoch"] == fresh, s
    assert got == [(1, "a1"), (2, "a2"), (3, "a3"), (4, "d4"), (5, "d5")]
    h = history(b, "news")
    assert h["epoch"] == fresh and h["offset"] == 5
    # The database-wide epoch changed too: a topic never published to
    # reports the new one, and a position under the old one is foreign.
    s, got = run(resume(b, "quiet", {"epoch": quiet["epoch"], "offset": 0},
                       0))
    assert s["recovered"] is False and s["epoch"] == fresh, s
    assert s["epoch"] != quiet["epoch"] and got == []


def test_new_epochs_needs_an_existing_database(workdir):
    db = os.path.join(workdir, "typo.db")
    conf = os.path.join(workdir, "typo.conf")
    with open(conf, "w") as f:
        f.write(f"db_path = {db}\n")
    r = subprocess.run([CHORUSD, "-c", conf, "--new-epochs"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"{db}: No such file or directory" in r.stderr, r.stderr
    assert not os.path.exists(db)


def test_new_epochs_needs_the_sqlite_engine(workdir):
    conf = os.path.join(workdir, "redis.conf")
    with open(conf, "w") as f:
        f.write("engine = redis\nredis_url = redis://127.0.0.1:1\n")
    r = subprocess.run([CHORUSD, "-c", conf, "--new-epochs"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "engine = redis has no offline epoch change" in r.stderr


def test_new_epochs_and_check_config_exclude_each_other():
    r = subprocess.run([CHORUSD, "--new-epochs", "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage:" in r.stderr
